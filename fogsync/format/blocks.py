"""Blocks and bptrs: how a sealed blob becomes 64 KiB objects (FORMAT.md 3-4).

This layer adds:

- ``Bptr``: the 48-byte block pointer (hash, [start, end), depth);
- ``BlobWriter``: cuts sealed blobs into full pieces (one block each) and
  packs their tails into shared partial blocks, then builds block lists of
  any depth; the hash of a partial block is known only once it is closed, so
  references come back as ``Pending`` and are resolved in ``resolve``;
- ``read_pieces``/``iter_blob``: the way back, from a reference to the
  sealed blob's bytes.

It does no I/O itself: blocks leave through a ``put_block(hash, data)``
callable and arrive through ``get_block(hash)``.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from fogsync.errors import FormatError
from fogsync.format import crypto
from fogsync.platform.threads import SharedPool

BLOCK_SIZE = 65536
BPTR_LEN = 48
_BPTR = struct.Struct(">32sIIII")

PutBlock = Callable[[bytes, bytes], None]
GetBlock = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Bptr:
    """A byte range [start, end) of the block named ``hash``, at indirection ``depth``."""

    hash: bytes
    start: int
    end: int
    depth: int = 0

    def pack(self) -> bytes:
        return _BPTR.pack(self.hash, self.start, self.end, self.depth, 0)

    @classmethod
    def unpack(cls, raw: bytes) -> "Bptr":
        if len(raw) != BPTR_LEN:
            raise FormatError(f"bptr must be {BPTR_LEN} bytes, got {len(raw)}")
        h, start, end, depth, reserved = _BPTR.unpack(raw)
        if reserved:
            raise FormatError(f"bptr has reserved field {reserved}, must be 0")
        if not start < end <= BLOCK_SIZE:
            raise FormatError(f"bptr range [{start}, {end}) is not inside a block")
        return cls(h, start, end, depth)

    @property
    def length(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return self.pack().hex()


def pack_bptrs(bptrs: Iterable[Bptr]) -> bytes:
    return b"".join(b.pack() for b in bptrs)


def unpack_bptrs(data: bytes) -> list[Bptr]:
    if len(data) % BPTR_LEN:
        raise FormatError(f"block list of {len(data)} bytes is not a whole number of bptrs")
    return [Bptr.unpack(data[i : i + BPTR_LEN]) for i in range(0, len(data), BPTR_LEN)]


def block_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- writing ------------------------------------------------------------------


class _Partial:
    """A partial block being filled with tails; immutable once ``hash`` is set."""

    __slots__ = ("buf", "hash", "closing")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.hash: bytes | None = None
        self.closing: Future | None = None  # hashing and storing, once closed

    @property
    def free(self) -> int:
        return BLOCK_SIZE - len(self.buf)


@dataclass(slots=True)
class Pending:
    """A blob's pieces as written; block hashes may still be computing, the tail's still unknown.

    One per file pushed is alive until the commit resolves them: kept small
    (slots; no list for no pieces; the tail's end not kept, as the length
    gives it: a tuple and an int less per file).
    """

    depth: int
    full: Sequence[Bptr | Future]
    tail: _Partial | None  # the partial block holding the blob's last piece, from ``start``
    start: int
    length: int

    def pieces(self) -> list[Bptr]:
        full = [p.result() if isinstance(p, Future) else p for p in self.full]
        if self.tail is None:
            return full
        return full + [Bptr(self._tail_hash(), self.start, self._tail_end(), self.depth)]

    def packed_tail(self) -> bytes:
        """The reference of a blob that is nothing but its tail, packed (a small file: the common case)."""
        return _BPTR.pack(self._tail_hash(), self.start, self._tail_end(), self.depth, 0)

    def _tail_end(self) -> int:
        return self.start + self.length - len(self.full) * BLOCK_SIZE

    def _tail_hash(self) -> bytes:
        part = self.tail
        if part.closing is not None:
            part.closing.result()
        if part.hash is None:
            raise RuntimeError("tail block not flushed yet")
        return part.hash


_HASHING_AHEAD = 32  # full pieces (2 MiB) hashed and stored behind the sealing thread at most
_hashing_pool = SharedPool(2, "fogsync-hash")


class BlobWriter:
    """Writes sealed blobs as blocks for one commit.

    Thread-safe: several workers may ``write`` at once. Tails go into shared
    partial blocks (first fit among a few open ones); ``flush`` closes them.
    ``resolve`` turns pendings into final references, writing block lists
    (depth + 1 per level) for blobs of more than one piece.
    """

    def __init__(self, keys: crypto.ShareKeys, put_block: PutBlock, max_open: int = 8) -> None:
        self.keys = keys
        self._put = put_block
        self._max_open = max_open
        self._open: list[_Partial] = []
        self._closed: list[_Partial] = []  # closed since the last flush, maybe still being stored
        self._lock = threading.Lock()
        self._ahead = threading.BoundedSemaphore(_HASHING_AHEAD)
        self.blocks_written = 0
        self.bytes_written = 0

    def write(self, sealed: Iterable[bytes], depth: int = 0) -> Pending:
        """Cut a sealed blob (given as chunks, in order) into pieces."""
        full: list[Bptr] = []
        buf = bytearray()
        length = 0
        for chunk in sealed:
            length += len(chunk)
            buf += chunk
            while len(buf) >= BLOCK_SIZE:
                full.append(self._put_full(bytes(buf[:BLOCK_SIZE]), depth))
                del buf[:BLOCK_SIZE]
        tail, start = self._add_tail(bytes(buf)) if buf else (None, 0)
        return Pending(depth, full, tail, start, length)

    def write_bytes(self, sealed: bytes, depth: int = 0) -> Pending:
        if len(sealed) < BLOCK_SIZE:  # the common small blob: a tail and nothing else, no copies
            tail, start = self._add_tail(sealed) if sealed else (None, 0)
            return Pending(depth, (), tail, start, len(sealed))
        return self.write((sealed,), depth)

    def store_blocks(self, data: bytes | bytearray | memoryview, depth: int = 0) -> list[Bptr]:
        """Hash and store ``data``, a whole number of blocks of a blob, in the calling thread.

        For callers that already cut a blob on several threads (``bigblob``);
        ``write_after`` then finishes the blob.
        """
        view = memoryview(data).cast("B")
        if len(view) % BLOCK_SIZE:
            raise ValueError(f"store_blocks takes whole {BLOCK_SIZE}-byte blocks, not {len(view)} bytes")
        return [self._stored(bytes(view[i : i + BLOCK_SIZE]), depth) for i in range(0, len(view), BLOCK_SIZE)]

    def write_after(self, stored: list[Bptr], rest: bytes, depth: int = 0) -> Pending:
        """A blob whose first pieces are ``stored`` (by ``store_blocks``) and whose remaining bytes are ``rest``."""
        after = self.write((rest,), depth) if rest else Pending(depth, (), None, 0, 0)
        return Pending(depth, [*stored, *after.full], after.tail, after.start, len(stored) * BLOCK_SIZE + after.length)

    def flush(self) -> None:
        """Close every open partial block, so each pending tail has a hash."""
        with self._lock:
            closing, self._open = self._open, []
        for part in closing:
            self._close(part)
        with self._lock:
            closed, self._closed = self._closed, []
        for part in closed:
            part.closing.result()

    def resolve(self, pendings: Sequence[Pending]) -> list[bytes]:
        """The packed 48-byte reference of each pending blob, block lists written as needed."""
        self.flush()
        refs: list[bytes | None] = [None] * len(pendings)
        todo: Iterable[tuple[int, Pending]] = enumerate(pendings)  # not a list: 50,000 pairs on a first sync
        while True:
            deeper = []
            for i, pending in todo:
                if not pending.full and pending.tail is not None:
                    refs[i] = pending.packed_tail()
                    continue
                pieces = pending.pieces()
                if len(pieces) == 1:
                    refs[i] = pieces[0].pack()
                else:
                    listing = crypto.seal(self.keys, pack_bptrs(pieces), compress=False)
                    deeper.append((i, self.write_bytes(listing, pending.depth + 1)))
            self.flush()
            if not deeper:
                return refs  # type: ignore[return-value]
            todo = deeper

    def _put_full(self, piece: bytes, depth: int) -> Future:
        """Hash and store a full piece on the hashing pool, so sealing goes on meanwhile."""
        self._ahead.acquire()
        return _hashing_pool().submit(self._hash_and_store, piece, depth)

    def _hash_and_store(self, piece: bytes, depth: int) -> Bptr:
        try:
            return self._stored(piece, depth)
        finally:
            self._ahead.release()

    def _stored(self, piece: bytes, depth: int) -> Bptr:
        """Hash and store one full piece in this thread."""
        h = block_hash(piece)
        self._store(h, piece)
        return Bptr(h, 0, BLOCK_SIZE, depth)

    def _add_tail(self, tail: bytes) -> tuple[_Partial, int]:
        room_needed = BLOCK_SIZE - len(tail)
        with self._lock:
            for part in self._open:
                if len(part.buf) <= room_needed:
                    break
            else:
                part = _Partial()
                self._open.append(part)
            start = len(part.buf)
            part.buf += tail
            to_close = self._pick_to_close(part)
        for p in to_close:
            self._close(p)
        return part, start

    def _pick_to_close(self, just_used: _Partial) -> list[_Partial]:
        """Under the lock: retire blocks that are nearly full, and the fullest when too many are open.

        Only ``just_used`` changed since the last call, so only it can have become nearly full.
        """
        done = [just_used] if just_used.free < 256 else []
        if len(self._open) - len(done) > self._max_open:
            rest = sorted((p for p in self._open if p not in done), key=lambda p: p.free)
            done.append(rest[0])
        for p in done:
            self._open.remove(p)
        return done

    def _close(self, part: _Partial) -> None:
        """Hash and store a partial block on the hashing pool; ``flush`` waits for it."""
        self._ahead.acquire()
        part.closing = _hashing_pool().submit(self._close_now, part)
        with self._lock:
            self._closed.append(part)

    def _close_now(self, part: _Partial) -> None:
        try:
            data = bytes(part.buf)
            part.buf = bytearray()  # closed for good: the bytes live on only until stored
            part.hash = block_hash(data)
            self._store(part.hash, data)
        finally:
            self._ahead.release()

    def _store(self, h: bytes, data: bytes) -> None:
        self._put(h, data)
        with self._lock:
            self.blocks_written += 1
            self.bytes_written += len(data)


# --- reading ------------------------------------------------------------------


def read_pieces(keys: crypto.ShareKeys, ref: Bptr, get_block: GetBlock) -> list[Bptr]:
    """The depth-0 pieces of the blob ``ref`` points to, opening block lists on the way."""
    pieces = [ref]
    while pieces[0].depth > 0:
        depth = pieces[0].depth
        if any(p.depth != depth for p in pieces):
            raise FormatError("block list mixes indirection depths")
        listing = crypto.open_blob(keys, b"".join(iter_blob(pieces, get_block)))
        pieces = unpack_bptrs(listing)
        if not pieces or any(p.depth != depth - 1 for p in pieces):
            raise FormatError(f"block list at depth {depth} has pieces of the wrong depth")
    return pieces


def piece_bytes(p: Bptr, get_block: GetBlock) -> bytes:
    """The bytes one bptr points to."""
    block = get_block(p.hash)
    if len(block) < p.end:
        raise FormatError(f"block {p.hash.hex()} is {len(block)} bytes, shorter than its bptr says")
    return block if (p.start == 0 and p.end == len(block)) else block[p.start : p.end]


def iter_blob(pieces: Iterable[Bptr], get_block: GetBlock) -> Iterator[bytes]:
    """The sealed blob's bytes, piece by piece."""
    for p in pieces:
        yield piece_bytes(p, get_block)
