"""Stores: where sealed objects live (see ``base`` for the contract).

``open_store(url)`` picks the backend from the URL: ``s3://bucket/prefix``
for S3 (boto3 is imported only then), ``memory://`` for tests, and
``file:///abs/path`` or a plain path for a local directory.
"""

from __future__ import annotations

from fogsync.store.base import (
    ObjectNotFound,
    Store,
    StoreError,
    SwapConflict,
    Versioned,
)

__all__ = ["open_store", "Store", "Versioned", "ObjectNotFound", "StoreError", "SwapConflict"]


def open_store(url: str, *, endpoint_url: str | None = None) -> Store:
    """Open the store named by ``url``."""
    if url.startswith("s3://"):
        from fogsync.store.s3 import S3Store

        return S3Store(url, endpoint_url=endpoint_url)
    if url.startswith("memory://"):
        from fogsync.store.memory import MemoryStore

        return MemoryStore.named(url)
    from fogsync.store.local import LocalStore

    return LocalStore(url)
