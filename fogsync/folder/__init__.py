"""A share folder on this host: what is in it, what was synced, and safe writes into it.

``scan`` (the folder as stats, and what changed against the base),
``ignore`` (gitignore-style rules), ``state`` (the SQLite database of the
base tree, stats and content), ``guarded`` (renames and removals that
check first that nothing changed under them), ``marker`` (the file that
says a folder is the one added). Imports ``format`` and
``platform``; never a store.
"""
