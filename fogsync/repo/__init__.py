"""One share inside a store: object names, the head, roots, trees, content.

``repository.Repo`` turns the bytes-only ``store`` into the share's format
objects: blocks uploaded on a bounded pool, read ahead and cached, the head
compared-and-swapped, the root chain walked, listings loaded into trees, a
file's content fetched and verified; ``bigblob`` seals and opens a big
uncompressed blob a 1 MiB chunk per core. Imports ``format``, ``store`` and
``platform``.
"""
