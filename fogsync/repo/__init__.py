"""One share inside a store: object names, the head, roots, trees, content.

``repository.Repo`` turns the bytes-only ``store`` into the share's format
objects: the head compared-and-swapped, the history walked (FORMAT.md 8),
listings loaded into trees, a file's content fetched and verified;
``transfer`` moves the blocks (a bounded upload pool, a cache of partial
blocks, reads fetched ahead); ``bigblob`` seals and opens a big
uncompressed blob a 1 MiB chunk per core. Imports ``format``, ``store`` and
``platform``.
"""
