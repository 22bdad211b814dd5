"""In-memory store for tests: a dict behind a lock.

Adds to the contract ``MemoryStore.named(url)``: one process-wide
instance per ``memory://name`` URL, so two "hosts" simulated in one test
process share a store; and an injectable clock (``now``) that dates each
write, so a test sets the age ``list_objects`` reports. Tags are the hex SHA-256 of the bytes, like the local
backend and S3's ETags (MD5), so tests meet the same semantics: rewriting
identical bytes yields the same tag.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timezone
from typing import Callable, ClassVar, Iterator

from fogsync.store.base import (
    ObjectInfo,
    ObjectNotFound,
    Store,
    SwapConflict,
    Versioned,
)

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Objects in a dict; thread-safe; nothing survives the process."""

    _registry: ClassVar[dict[str, "MemoryStore"]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str = "memory://", now: Callable[[], datetime] | None = None) -> None:
        self.url = url
        self.now = now or (lambda: datetime.now(timezone.utc))
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._written: dict[str, datetime] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, url: str) -> "MemoryStore":
        """The process-wide store for ``url`` (created on first use)."""
        with cls._registry_lock:
            store = cls._registry.get(url)
            if store is None:
                store = cls._registry[url] = cls(url)
            return store

    def _missing(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(f"{key}: not found in {self.url}")

    def get(self, key: str) -> bytes:
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise self._missing(key)
        return entry[0]

    def put(self, key: str, data: bytes) -> None:
        data = bytes(data)
        with self._lock:
            self._objects[key] = (data, _tag(data))
            self._written[key] = self.now()

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._objects

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = [key for key in self._objects if key.startswith(prefix)]
        return iter(keys)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._lock:
            found = [ObjectInfo(key, len(data), self._written[key])
                     for key, (data, _) in self._objects.items() if key.startswith(prefix)]
        return iter(found)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)
            self._written.pop(key, None)

    def get_versioned(self, key: str, unless_tag: str | None = None) -> Versioned | None:
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise self._missing(key)
        data, tag = entry
        if unless_tag is not None and unless_tag == tag:
            return None
        return Versioned(data, tag)

    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        data = bytes(data)
        with self._lock:
            entry = self._objects.get(key)
            current = entry[1] if entry else None
            if current != expected_tag:
                raise SwapConflict(f"{key} changed in {self.url} since it was read")
            tag = _tag(data)
            self._objects[key] = (data, tag)
            self._written[key] = self.now()
            return tag


def _tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
