"""The store format, Mark III (``../shared/FORMAT.md``): bytes in, bytes out, no I/O.

Keys and sealed blobs (``crypto``), Twofish-CTR backends (``cipher``), bptrs,
64 KiB pieces, partial blocks and block lists (``blocks``), directory
listings (``tree``), roots and the head (``roots``). Imports only
``fogsync.errors`` and ``fogsync.platform``.
"""
