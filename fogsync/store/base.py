"""The store interface: a small, bytes-only key/value contract.

A store knows nothing of shares, keys or formats: it keeps opaque objects
under slash-separated keys (``<share_id>/blocks/ab/ab12...``,
``<share_id>/head``). Two kinds of write exist:

- ``put``: an immutable object (a block). Atomic: a reader sees the whole
  object or none of it. Writing a key that exists replaces it with the same
  bytes (blocks are content-named), so callers may retry freely.
- ``put_if``: the one mutable object per share (``head``), replaced only by
  compare-and-swap against the version tag returned by ``get_versioned``.

Every backend passes the same contract suite (tests/test_store_contract.py)
and translates its own failures into ``StoreError`` / ``ObjectNotFound`` /
``SwapConflict`` at this boundary.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from fogsync.errors import ObjectNotFound, StoreError, SwapConflict

__all__ = ["Store", "Versioned", "ObjectInfo", "ObjectNotFound", "StoreError", "SwapConflict"]


@dataclass(frozen=True)
class Versioned:
    """An object's bytes with the opaque tag that names this version."""

    data: bytes
    tag: str


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing shows it: its key, its size in bytes and when it was last written (UTC)."""

    key: str
    size: int
    modified: datetime


class Store(abc.ABC):
    """A place that keeps objects. Thread-safe: one instance serves a pool."""

    #: the URL the store was opened from, for messages
    url: str = ""
    #: reads worth having in flight at once for one reader: many where each
    #: is a network round trip, few where a thread hand-off costs more than the read
    read_concurrency: int = 2
    #: puts worth having in flight at once (threads of the upload pool); 0: each
    #: put runs in the thread that made the block, where a put is a local write
    put_concurrency: int = 16

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound if absent."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store an immutable object atomically (replacing is allowed)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the object is present."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Every key that starts with ``prefix`` (a folder, ending in '/'), any order."""

    @abc.abstractmethod
    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Like ``list``, with each object's size and time of writing, in the same one listing
        (a paginated LIST on S3, one directory walk locally): what prune needs to know its age."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; absent is not an error. Used by tests and repair only."""

    @abc.abstractmethod
    def get_versioned(self, key: str, unless_tag: str | None = None) -> Versioned | None:
        """The object and its version tag.

        Returns None when ``unless_tag`` is given and still names the current
        version (a cheap "not modified" poll). Raises ObjectNotFound if absent.
        """

    @abc.abstractmethod
    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        """Compare-and-swap: replace the object only if its tag is still ``expected_tag``.

        ``expected_tag=None`` means the object must not exist yet. Returns the
        new version's tag. Raises SwapConflict if another writer got there first.

        Tags may be derived from the content (SHA-256 locally and in memory,
        the ETag on S3), so a swap back to bytes identical to an earlier
        version is indistinguishable from no change (ABA). Callers must write
        unique bytes; the head is a sealed blob with a fresh nonce, so it is.
        """

    def flush(self) -> None:
        """Make every ``put`` so far durable before a following ``put_if``.

        Backends whose puts are durable on return need not override this.
        """

    def close(self) -> None:
        """Release connections and threads."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
