"""What a pass does: push, pull, merge, restore, check.

``sync`` runs one pass for one share; ``push`` seals changed files and
writes listings and roots; ``merge`` is a pure three-way merge of trees;
``pull`` makes the folder hold a tree; ``prepare`` writes one entry to a
verified temporary file; ``restore`` writes a tree into an empty
directory; ``check`` verifies what a share's history reaches. Imports
``repo``, ``folder``, ``format``, ``store`` and ``platform``.
"""
