"""What a pass does: push, pull, merge, restore, check, status.

``sync`` runs one pass for one ``share``, as named steps (``Pass``),
``first`` a share's first sync into an empty store, and ``first_pull``
its first pull into an empty folder, each a directory at a time;
``vouch`` is the pass's directory-digest shortcut (look only where the
folder moved), which ``status`` reuses to count what waits to sync, and
``remote`` its other half for a pull (look only where the head moved);
``rows`` chooses what the pass saves to the state; ``push`` seals changed files and writes listings
and roots; ``merge`` is a pure three-way merge of trees; ``pull`` makes
the folder hold a tree, placing batches through ``place``; ``prepare``
writes one entry to a verified temporary file and splits the work between
worker processes and threads; ``restore`` writes a tree into an empty
directory; ``check`` verifies what a share's history reaches;
``refusals`` stops a pass before a missing folder marker, a rolled-back
store or a mass deletion harms the share. Imports
``repo``, ``folder``, ``format``, ``store`` and ``platform``.
"""
