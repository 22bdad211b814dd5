"""Local-directory store: one file per object under a root directory.

Adds to the contract, for a USB disk, NAS mount or plain folder:

- ``put`` writes ``.tmp-<random>`` in the target directory and renames it
  over the key (atomic, never a torn object). It does not fsync: ``flush``
  makes every put so far durable with one ``syncfs(2)`` of the store's file
  system, which the engine calls before swapping the head. Every
  ``FLUSH_AHEAD`` bytes put, a syncfs starts in the background, so the disk
  writes while the caller seals and ``flush`` waits only for the rest. Parent
  directories are created lazily and remembered, to avoid a makedirs per
  block.
- ``put_if`` serialises writers (threads and processes, also on other hosts
  where the file system supports it) with an exclusive ``flock`` on
  ``<key>.lock``, compares tags, then writes, fsyncs, renames and fsyncs the
  directory. Tags are the hex SHA-256 of the object's bytes.
- Names starting with ``.tmp-`` or ending in ``.lock`` are reserved: they are
  never listed and cannot be used as keys.
- OSErrors become StoreError naming the path ("store is full: <path>",
  "permission denied: <path>", ...); an interrupted or would-block call
  (EINTR, EAGAIN, as a network file system may return) or a timed-out one
  becomes a TransientStoreError, which ``RetryingStore`` retries.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import threading
from datetime import datetime, timezone
from typing import Callable, Iterator
from urllib.parse import unquote, urlparse

from fogsync.errors import ConfigError, TransientStoreError
from fogsync.platform import fsync
from fogsync.store.base import (
    ObjectInfo,
    ObjectNotFound,
    Store,
    StoreError,
    SwapConflict,
    Versioned,
)

__all__ = ["LocalStore"]

TEMP_PREFIX = ".tmp-"
LOCK_SUFFIX = ".lock"
_ABSENT = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
# Once this much has been put since, a syncfs runs in the background: the kernel would otherwise
# hold it all (up to a tenth of memory) for flush to write while the caller waits.
FLUSH_AHEAD = 512 << 20


class LocalStore(Store):
    """Objects as files under ``root``; key ``a/b/c`` is the file ``root/a/b/c``."""

    # A put is one small file's creation: handing it to an upload thread costs more than doing it
    # in the thread that made the block (docs/performance.md).
    put_concurrency = 0

    def __init__(
        self, url: str, *, write: Callable[[int, bytes], None] | None = None,
        sync_filesystem: Callable[[str], None] | None = None, flush_ahead: int = FLUSH_AHEAD,
    ) -> None:
        """``write`` (fd, bytes) and ``sync_filesystem`` (a directory) replace the disk's own
        (``fsync.write_all``, ``fsync.sync_filesystem``): a test makes a full or failing disk with them."""
        self.url = url
        self.root = _root_of(url)
        self._write = write
        self._sync_filesystem = sync_filesystem
        self._flush_ahead_at = flush_ahead
        self._dirs: set[str] = set()
        self._unflushed = 0  # bytes put since the last syncfs began
        self._ahead_lock = threading.Lock()
        self._ahead: threading.Thread | None = None
        self._ahead_error: OSError | None = None

    def get(self, key: str) -> bytes:
        path = self._path(key)
        data = _read_or_none(path)
        if data is None:
            raise ObjectNotFound(f"{key}: not found in {self.root}")
        return data

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self._replace(path, data, durable=False)
        except OSError as exc:
            raise _store_error(exc, path, "write") from exc
        self._count_unflushed(len(data))

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return stat.S_ISREG(os.stat(path).st_mode)
        except _ABSENT:
            return False
        except OSError as exc:
            raise _store_error(exc, path, "read") from exc

    def list(self, prefix: str) -> Iterator[str]:
        base = prefix.rpartition("/")[0]
        start = self._path(base) if base else self.root
        return self._walk(start, base + "/" if base else "", prefix)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """The same walk as ``list``, with one stat per object (its mtime is when it was written)."""
        base = prefix.rpartition("/")[0]
        start = self._path(base) if base else self.root
        for key in self._walk(start, base + "/" if base else "", prefix):
            path = os.path.join(self.root, *key.split("/"))
            try:
                st = os.stat(path)
            except _ABSENT:
                continue  # deleted since the walk saw it
            except OSError as exc:
                raise _store_error(exc, path, "list") from exc
            yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _store_error(exc, path, "delete") from exc

    def get_versioned(self, key: str, unless_tag: str | None = None) -> Versioned | None:
        data = self.get(key)
        tag = _tag(data)
        if unless_tag is not None and unless_tag == tag:
            return None
        return Versioned(data, tag)

    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        path = self._path(key)
        try:
            with self._locked(path + LOCK_SUFFIX):
                current = _read_or_none(path)
                if (None if current is None else _tag(current)) != expected_tag:
                    raise SwapConflict(f"{key} changed in {self.root} since it was read")
                self._replace(path, data, durable=True)
        except OSError as exc:
            raise _store_error(exc, path, "write") from exc
        return _tag(data)

    def flush(self) -> None:
        """Make every put so far durable: one syncfs(2) of the root's file system."""
        with self._ahead_lock:
            ahead, self._unflushed = self._ahead, 0
        if ahead is not None:
            ahead.join()
        error, self._ahead_error = self._ahead_error, None
        try:
            if error is not None:
                raise error  # reported once: a later syncfs's descriptor would not see it
            self._sync()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _store_error(exc, self.root, "flush") from exc

    def _count_unflushed(self, n: int) -> None:
        """Start writing what was put in the background, every ``flush_ahead`` bytes, one syncfs at a
        time: the disk works while the caller seals, and ``flush`` is left with the rest."""
        with self._ahead_lock:
            self._unflushed += n
            if self._unflushed < self._flush_ahead_at or (self._ahead is not None and self._ahead.is_alive()):
                return
            self._unflushed = 0
            self._ahead = threading.Thread(target=self._flush_ahead, name="fogsync-flush-ahead", daemon=True)
            self._ahead.start()

    def _flush_ahead(self) -> None:
        try:
            self._sync()
        except OSError as exc:
            self._ahead_error = exc

    def _sync(self) -> None:
        (self._sync_filesystem or fsync.sync_filesystem)(self.root)

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if any(p in ("", ".", "..") or "\0" in p for p in parts) or _reserved(parts[-1]):
            raise StoreError(f"invalid object key {key!r} for {self.root}")
        return os.path.join(self.root, *parts)

    def _ensure_dir(self, directory: str) -> None:
        if directory not in self._dirs:
            os.makedirs(directory, exist_ok=True)
            self._dirs.add(directory)

    def _open_temp(self, directory: str) -> tuple[int, str]:
        self._ensure_dir(directory)
        temp = os.path.join(directory, TEMP_PREFIX + secrets.token_hex(8))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            return os.open(temp, flags, 0o666), temp
        except FileNotFoundError:
            self._dirs.discard(directory)
            self._ensure_dir(directory)
            return os.open(temp, flags, 0o666), temp

    def _replace(self, path: str, data: bytes, durable: bool) -> None:
        directory = os.path.dirname(path)
        fd, temp = self._open_temp(directory)
        try:
            try:
                (self._write or fsync.write_all)(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        if durable:
            fsync.fsync_dir(directory)

    @contextlib.contextmanager
    def _locked(self, lock_path: str) -> Iterator[None]:
        self._ensure_dir(os.path.dirname(lock_path))
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _walk(self, directory: str, rel: str, prefix: str) -> Iterator[str]:
        try:
            with os.scandir(directory) as entries:
                found = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        except _ABSENT:
            return
        except OSError as exc:
            raise _store_error(exc, directory, "list") from exc
        for name, is_dir in found:
            key = rel + name
            if is_dir:
                sub = key + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    yield from self._walk(os.path.join(directory, name), sub, prefix)
            elif key.startswith(prefix) and not _reserved(name):
                yield key


def _root_of(url: str) -> str:
    if url.startswith("file:"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URL must name a local path (file:///abs/path): {url}")
        path = unquote(parsed.path)
    else:
        path = url
    if not path:
        raise ConfigError(f"empty store path: {url!r}")
    return os.path.abspath(os.path.expanduser(path))


_READ_SIZE = 1 << 17  # more than a block: one read and one to see the end


def _reserved(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) or name.endswith(LOCK_SUFFIX)


def _tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_or_none(path: str) -> bytes | None:
    # os.open and os.read, not open(): a file object per 64 KiB block costs a noticeable share of the read
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except _ABSENT:
        return None
    except OSError as exc:
        raise _store_error(exc, path, "read") from exc
    try:
        chunks = []
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except _ABSENT:  # a directory opens, and fails only when read
        return None
    except OSError as exc:
        raise _store_error(exc, path, "read") from exc
    finally:
        os.close(fd)


_TRANSIENT_ERRNOS = (errno.EINTR, errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT)


def _store_error(exc: OSError, path: str, op: str) -> StoreError:
    if exc.errno in _TRANSIENT_ERRNOS:
        return TransientStoreError(f"cannot {op} {path}: {exc.strerror or exc} (it may pass)")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"store is full: {path}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(f"permission denied: {path}")
    if exc.errno == errno.EROFS:
        return StoreError(f"store is read-only: {path}")
    return StoreError(f"cannot {op} {path}: {exc.strerror or exc}")
