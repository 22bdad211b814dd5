"""FogSync: an encrypted folder-sync client (store format "Mark III").

Layers, bottom up (see docs/architecture.md):

- format: ``crypto`` (keys, sealed blobs), ``blocks`` (bptrs, pieces, partial
  blocks, block lists), ``tree`` (listings), ``roots`` (roots and head);
- storage: ``store`` (bytes-only backends), ``repo`` (one share in a store);
- engine: ``state`` (SQLite), ``scan``, ``push``, ``pull``, ``merge``, ``sync``;
- daemon: ``watch``, ``daemon``;
- faces: ``config``, ``cli``.
"""

__version__ = "0.1.0"
