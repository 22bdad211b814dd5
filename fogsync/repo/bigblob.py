"""Big uncompressed blobs, sealed and opened a chunk per thread.

Twofish-CTR is seekable: keystream block i is ``Twofish(Kc, counter0 + i)``,
so any 1 MiB of a blob can be encrypted or decrypted on its own, and only
the two running hashes (the plaintext's SHA-256 for the listing, the HMAC
over the sealed bytes) must see the chunks in order. This layer adds that
split: worker threads read (or receive), encrypt or decrypt, and on the way
in also hash and store the chunk's blocks; the calling thread feeds the two
hashes in order (and, on the way out, writes the plaintext). ctypes and
hashlib release the GIL for big buffers, so on two cores every core is busy
with Twofish or a hash. Chunks in flight are bounded across all blobs
together, so memory stays flat however many files are written side by side.

The bytes are exactly those of ``crypto.seal_stream`` / ``crypto.open_stream``
for the same nonce; the contract is the same too: ``open_into`` hands out
plaintext before the tag is known and raises IntegrityError after the last
piece if the tag does not verify, so callers write to a temporary file.
A compressed blob is sequential by nature (gzip), and is left to
``crypto.open_stream``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections import deque
from concurrent.futures import Future, wait
from typing import Callable, Iterable, Iterator, TypeVar

from fogsync.errors import FormatError
from fogsync.format import crypto
from fogsync.format.blocks import BlobWriter, Bptr, Pending
from fogsync.format.cipher import xor_at
from fogsync.format.crypto import PREFIX_LEN, TAG_LEN, ShareKeys
from fogsync.platform.threads import SharedPool

CHUNK = 1 << 20  # a whole number of blocks: every chunk but the last is whole blocks
MIN_SIZE = 2 * CHUNK  # smaller files gain nothing from the split
_AHEAD = 2  # chunks in flight per blob beyond one per worker

T = TypeVar("T")
R = TypeVar("R")


class ShortRead(Exception):
    """The file held fewer bytes than its size said: it changed while it was read."""


_workers = SharedPool(max(2, os.cpu_count() or 2), "fogsync-chunk")  # a thread per core, for every big blob


_slots_lock = threading.Lock()
_slots: list[threading.BoundedSemaphore] = []


def _chunk_slots() -> threading.BoundedSemaphore:
    """Chunks in flight across every blob at once (restore writes four files side by side)."""
    with _slots_lock:
        if not _slots:
            _slots.append(threading.BoundedSemaphore(2 * (os.cpu_count() or 2) + _AHEAD))
        return _slots[0]


os.register_at_fork(after_in_child=_slots.clear)


def _in_order(job: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``job(item)`` for each item on the worker pool, results in order, a few ahead.

    A blob with jobs running takes another slot only if one is free, else it
    first takes its oldest result; only a blob with none running waits for a
    slot, which blobs that do have jobs running give back: so memory stays
    bounded and no blob waits on another forever. Returns only once no job
    of its own is running, also on an error or an early stop: jobs may read
    from a file the caller closes next.
    """
    pool, slots = _workers(), _chunk_slots()
    per_blob = (os.cpu_count() or 2) + _AHEAD
    running: deque[Future[R]] = deque()

    def oldest() -> R:
        try:
            return running.popleft().result()
        finally:
            slots.release()

    try:
        for item in items:
            while running and (len(running) >= per_blob or not slots.acquire(blocking=False)):
                yield oldest()
            if not running:
                slots.acquire()
            running.append(pool.submit(job, item))
        while running:
            yield oldest()
    finally:
        for future in running:
            future.cancel()
        wait(running)
        for _ in running:
            slots.release()


# --- sealing a file -------------------------------------------------------------------


def seal_file(keys: ShareKeys, fd: int, size: int, writer: BlobWriter, nonce: bytes | None = None
              ) -> tuple[str, Pending]:
    """Seal the first ``size`` bytes of the open file ``fd``, uncompressed, as one blob.

    Returns the plaintext's hex SHA-256 and the blob's pending reference.
    Raises ShortRead if the file ends early (it is being changed).
    """
    prefix = crypto.blob_prefix(crypto.COMP_NONE, nonce)
    ctr0 = crypto.counter0(prefix)
    whole = (PREFIX_LEN + size) // CHUNK  # chunks before the one the tag ends up in
    chunks = -(-(PREFIX_LEN + size) // CHUNK)

    def job(i: int) -> tuple[bytes, bytearray, list[Bptr] | None]:
        lo, hi = max(0, i * CHUNK - PREFIX_LEN), min(size, (i + 1) * CHUNK - PREFIX_LEN)
        plain = _pread_exact(fd, hi - lo, lo)
        sealed = bytearray(prefix if i == 0 else b"")
        sealed += plain
        xor_at(keys.cipher, ctr0, lo, memoryview(sealed)[PREFIX_LEN if i == 0 else 0 :])
        return plain, sealed, writer.store_blocks(sealed) if i < whole else None

    sha = hashlib.sha256()
    mac = keys.new_mac()
    stored: list[Bptr] = []
    rest = b""
    for plain, sealed, bptrs in _in_order(job, range(chunks)):
        sha.update(plain)
        mac.update(sealed)
        if bptrs is None:
            rest = bytes(sealed)
        else:
            stored += bptrs
    return sha.hexdigest(), writer.write_after(stored, rest + mac.digest())


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    while len(data) < n:
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            raise ShortRead()
        data += more
    return data


# --- opening a blob -------------------------------------------------------------------


def open_into(keys: ShareKeys, chunks: Iterator[bytes], length: int, write: Callable[[bytes], None]
              ) -> tuple[str, int]:
    """Decrypt a sealed blob of ``length`` bytes, arriving in CHUNK-sized pieces, into ``write``.

    ``write(plaintext)`` is called in order, from the calling thread (two
    threads writing one file contend for its inode lock, which is slower).
    Returns the plaintext's hex SHA-256 and length once the tag has
    verified; raises IntegrityError after the last write if it does not.
    Every piece but the last must be exactly CHUNK bytes; a writable piece
    (``Repo.sealed_chunks`` hands out fresh bytearrays) is decrypted in
    place, so the caller must not use it afterwards. A compressed blob
    (or one with a header this version does not know) is decrypted in order
    by ``crypto.open_stream``, which reports it the same way.
    """
    first = next(chunks, b"")
    if len(first) < min(CHUNK, length) or length < crypto.MIN_BLOB_LEN or not crypto.is_uncompressed(first):
        return _stream_into(keys, itertools.chain((first,), chunks), write)
    ctr0 = crypto.counter0(first)
    body_end = length - TAG_LEN  # the tag follows the ciphertext
    mac = keys.new_mac()
    tag = bytearray()
    read = [0]

    def numbered() -> Iterator[tuple[int, memoryview]]:
        """The pieces with their offsets, MACed in order as the workers take them."""
        for i, chunk in enumerate(itertools.chain((first,), chunks)):
            view = memoryview(chunk).cast("B")
            start = i * CHUNK
            if len(view) != min(CHUNK, length - start):
                raise FormatError(f"sealed blob of {length} bytes arrived in pieces that are not whole blocks")
            mac.update(view[: max(0, body_end - start)])
            tag.extend(view[max(0, body_end - start) :])
            read[0] = start + len(view)
            yield start, view

    def job(item: tuple[int, memoryview]) -> memoryview:
        """The piece's plaintext: decrypted in place, as the piece was MACed before it came here."""
        start, view = item
        lo, hi = max(start, PREFIX_LEN), min(start + len(view), body_end)
        plain = view[lo - start : hi - start] if hi > lo else view[:0]
        if plain.readonly:  # bytes someone else may hold too (a cached block): decrypt a copy
            plain = memoryview(bytearray(plain))
        if plain:
            xor_at(keys.cipher, ctr0, lo - PREFIX_LEN, plain)
        return plain

    sha = hashlib.sha256()
    n = 0
    for plain in _in_order(job, numbered()):
        sha.update(plain)
        write(plain)
        n += len(plain)
    if read[0] != length:
        raise FormatError(f"sealed blob is {read[0]} bytes, not the {length} its pieces say")
    crypto.check_tag(mac, bytes(tag))
    return sha.hexdigest(), n


def _stream_into(keys: ShareKeys, chunks: Iterable[bytes], write: Callable[[bytes], None]) -> tuple[str, int]:
    sha = hashlib.sha256()
    n = 0
    for piece in crypto.open_stream(keys, chunks):
        sha.update(piece)
        write(piece)
        n += len(piece)
    return sha.hexdigest(), n
