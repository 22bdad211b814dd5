"""A store that wraps another: the base of wrappers that add behaviour through the contract.

``Wrapper`` passes every call to the store it wraps, and takes its URL and
concurrency hints; a wrapper overrides only what it changes (as Kopia's
``blob/retrying`` and ``blob/logging`` do).
"""

from __future__ import annotations

from typing import Iterator

from fogsync.store.base import ObjectInfo, Store, Versioned

__all__ = ["Wrapper"]


class Wrapper(Store):
    """Every operation goes to ``inner`` unchanged."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.read_concurrency = inner.read_concurrency
        self.put_concurrency = inner.put_concurrency

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list_objects(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def get_versioned(self, key: str, unless_tag: str | None = None) -> Versioned | None:
        return self.inner.get_versioned(key, unless_tag)

    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        return self.inner.put_if(key, data, expected_tag)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()
