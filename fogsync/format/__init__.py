"""The store format, Mark III (``../shared/FORMAT.md``): bytes in, bytes out, no I/O.

Sealed blobs (``crypto``, the front of ``keys``, ``layout`` and
``streaming``), Twofish-CTR (``cipher``, the front of ``cipher_gcrypt`` and
``cipher_python`` over ``cipher_base``), bptrs,
64 KiB pieces, partial blocks and block lists (``blocks``), directory
listings (``tree``), roots and the head (``roots``). Imports only
``fogsync.errors`` and ``fogsync.platform``.
"""
