"""Repository: one share inside a store.

This layer binds a bytes-only ``Store`` to a share's keys and adds the
object layout (``<share_id>/blocks/xx/<hash>``, ``<share_id>/head``), a
bounded pool of concurrent block uploads, a small cache of recently read
blocks (tails of many files share one partial block), a big blob's blocks
fetched ahead on a pool in 1 MiB chunks, and typed reads:
listings, roots, the head, the history (FORMAT.md 8), whole trees, and file contents
verified before a single byte of plaintext is handed out.

Every block read is checked against its name (its SHA-256), so a store
that hands back another valid blob's bytes is caught at that block, and a
file's content is read no further than the size its entry declares.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Iterator, Mapping

from fogsync.errors import (
    FogsyncError,
    FormatError,
    IntegrityError,
    ListingMismatch,
    ObjectNotFound,
)
from fogsync.format import crypto
from fogsync.format.blocks import BLOCK_SIZE, BlobWriter, Bptr, piece_bytes, read_pieces
from fogsync.format.roots import (
    Root,
    decode_bptrs,
    decode_head,
    decode_kept,
    parse_date,
)
from fogsync.format.tree import DIR, Entry, decode_listing, join, parent_of
from fogsync.platform.private import private_dir
from fogsync.repo import bigblob
from fogsync.repo.transfer import BlockCache, Uploads, fetched_ahead
from fogsync.store.base import Store

IN_MEMORY_LIMIT = 8 * 1024 * 1024  # blobs up to this size are verified in memory, larger ones spooled
READ_CHUNK = bigblob.CHUNK  # a many-block blob is handed on in chunks of this (decrypted a chunk per core)


@dataclass(frozen=True)
class Head:
    """The share's newest root (None for a new share) and the head object's version tag."""

    root: bytes | None
    tag: str | None


@dataclass(frozen=True)
class HistoryItem:
    """One root of the history: what ``log`` shows; ``root`` is None when it came from a kept list."""

    ref: bytes
    version: int
    date: str
    host: str
    root: Root | None


@dataclass
class Walked:
    """What ``Repo.walk_changed`` found under a top listing."""

    tree: dict[str, Entry]  # the entries of each listing fetched, by path
    fetched: list[str]  # the directories whose listings were fetched, the top ('') first
    same: set[str]  # the directories not fetched: their bptr is the known one (so is all below them)

    def with_known(self, known: Mapping[str, Entry]) -> dict[str, Entry]:
        """``tree`` (in place) with each entry of ``known`` that lies in a directory at or below one of
        ``same``: the whole tree under the top, as far as ``known`` holds it. A known directory
        reached through a fetched one but not through ``same`` is not under the top any more."""
        fetched = set(self.fetched)
        held: dict[str, bool] = {}
        for path, entry in known.items():
            where = parent_of(path)
            if where not in fetched and self._held(where, fetched, held):
                self.tree[path] = entry
        return self.tree

    def _held(self, where: str, fetched: set[str], held: dict[str, bool]) -> bool:
        chain, d = [], where
        while d not in held:
            if d in self.same:
                held[d] = True
            elif d in fetched:  # reached through a fetched directory alone: gone from the top's tree
                held[d] = False
            else:
                chain.append(d)
                d = parent_of(d)
        for c in chain:
            held[c] = held[d]
        return held[where]


def _block_of(p: Bptr) -> bytes:
    return p.hash


def by_block(tree: Mapping[str, Entry], paths: Iterable[str]) -> list[str]:
    """One-block files in the order of their bptrs: files that share a partial block come together.

    Tails are packed in the order files were sealed, which is not the
    order a tree lists them in (``pieces_ahead`` then reads each block once).
    """
    return sorted(paths, key=lambda p: tree[p].bptr)


class Repo:
    """A share's objects in a store, opened with the share's key."""

    def __init__(self, store: Store, keys: crypto.ShareKeys, name: str, spool_dir: str | None = None) -> None:
        self.store = store
        self.keys = keys
        self.name = name
        self.share_id = keys.share_id(name)
        self.spool_dir = spool_dir
        self._cache = BlockCache()
        self._fetching: dict[bytes, threading.Event] = {}  # blocks some thread is fetching now
        self._fetching_lock = threading.Lock()
        self._uploads: Uploads | None = None

    # --- object names -------------------------------------------------------

    def block_key(self, h: bytes) -> str:
        x = h.hex()
        return f"{self.share_id}/blocks/{x[:2]}/{x}"

    @property
    def head_key(self) -> str:
        return f"{self.share_id}/head"

    def where(self) -> str:
        return f"share {self.name!r} in {self.store.url}"

    # --- writing ------------------------------------------------------------

    def writer(self) -> BlobWriter:
        """A BlobWriter whose blocks go to the store through the upload pool."""
        if self._uploads is None:
            self._uploads = Uploads(self.store, workers=self.store.put_concurrency)
        uploads = self._uploads
        return BlobWriter(self.keys, lambda h, data: uploads.put(self.block_key(h), data))

    def wait_uploads(self) -> None:
        """Every block handed to a writer is in the store, durably (before a head swap)."""
        if self._uploads is not None:
            self._uploads.wait()
        self.store.flush()

    def swap_head(self, root: bytes, expected_tag: str | None) -> str:
        """Point the head at ``root`` if nobody moved it since ``expected_tag``; SwapConflict otherwise."""
        sealed = crypto.seal(self.keys, root, compress=False)
        return self.store.put_if(self.head_key, sealed, expected_tag)

    def close(self) -> None:
        if self._uploads is not None:
            self._uploads.close()
            self._uploads = None

    # --- reading ------------------------------------------------------------

    def get_block(self, h: bytes, shared: bool = False) -> bytes:
        """A block by hash; a partial block, or one ``shared`` by several pieces, is kept in the cache.

        Threads after the same block wait for the one fetching it (files
        written side by side often share a partial block): one GET each.
        """
        data = self._cache.get(h)
        if data is not None:
            return data
        with self._fetching_lock:
            fetching = self._fetching.get(h)
            if fetching is None:
                self._fetching[h] = threading.Event()
        if fetching is not None:
            fetching.wait()
            return self._cache.get(h) or self._fetch(h, shared)  # not cached: a whole block, or it failed
        try:
            return self._fetch(h, shared)
        finally:
            with self._fetching_lock:
                self._fetching.pop(h).set()

    def _fetch(self, h: bytes, shared: bool) -> bytes:
        data = self._read_block(h)
        if shared or len(data) < BLOCK_SIZE:
            self._cache.add(h, data)
        return data

    def _read_block(self, h: bytes) -> bytes:
        try:
            data = self.store.get(self.block_key(h))
        except ObjectNotFound:
            raise ObjectNotFound(f"block {h.hex()} of {self.where()} is missing") from None
        if hashlib.sha256(data).digest() != h:
            raise IntegrityError(f"block {h.hex()} of {self.where()} is corrupt (its hash does not match its name)")
        return data

    def piece(self, p: Bptr) -> bytes:
        """The bytes one bptr points to.

        A whole block is one blob's alone and is never cached, so it is just
        read: ``get_block``'s cache lookup and wait for another thread's
        fetch of it would buy nothing and cost a good part of what the read
        itself does. A piece short of a whole block shares it with other
        pieces (tails fill partial blocks, sometimes to the last byte), so
        that block is fetched once and cached.
        """
        if p.start == 0 and p.end == BLOCK_SIZE:
            return piece_bytes(p, self._read_block)
        return piece_bytes(p, self._get_shared_block)

    def _get_shared_block(self, h: bytes) -> bytes:
        return self.get_block(h, shared=True)

    def pieces(self, ref: bytes) -> list[Bptr]:
        return read_pieces(self.keys, Bptr.unpack(ref), self.get_block)

    def read_small(self, ref: bytes, what: str) -> bytes:
        """Open a small blob (listing, root, block list) in memory."""
        try:
            return crypto.open_blob(self.keys, b"".join(self.sealed_chunks(self.pieces(ref))))
        except IntegrityError as e:
            raise type(e)(f"{what} of {self.where()}: {e}") from None

    def read_head(self, unless_tag: str | None = None) -> Head | None:
        """The head; None if ``unless_tag`` still names it."""
        try:
            v = self.store.get_versioned(self.head_key, unless_tag)
        except ObjectNotFound:
            return Head(None, None)
        if v is None:
            return None
        try:
            plain = crypto.open_blob(self.keys, v.data)
        except IntegrityError as e:
            raise IntegrityError(
                f"head of {self.where()} failed verification ({e}): wrong key, or the store was tampered with"
            ) from None
        return Head(decode_head(plain), v.tag)

    def read_root(self, ref: bytes) -> Root:
        return Root.decode(self.read_small(ref, f"root {ref.hex()[:16]}"))

    def read_listing(self, ref: bytes) -> list[tuple[str, Entry]]:
        return decode_listing(self.read_small(ref, f"listing {ref.hex()[:16]}"))

    def history_items(self, start: bytes | None) -> Iterator[HistoryItem]:
        """The history of FORMAT.md 8, newest first: the chain from ``start`` up to and including the
        first root with ``kept``, then the roots that list names, without following their ``prev``.

        Kept roots come from the list alone (``root`` is None): no read each. Versions must
        strictly decrease, or the walk stops with an IntegrityError (a cycle, a forged ``prev``).
        """
        ref, floor = start, None
        while ref is not None:
            root = self.read_root(ref)
            floor = self._below(floor, root.version, ref)
            yield HistoryItem(ref, root.version, root.date, root.host, root)
            if root.kept is not None:
                for k in decode_kept(self.read_small(root.kept, f"kept list of root {ref.hex()[:16]}")):
                    floor = self._below(floor, k.version, k.ref)
                    yield HistoryItem(k.ref, k.version, k.date, k.host, None)
                return
            ref = root.prev

    def _below(self, floor: int | None, version: int, ref: bytes) -> int:
        if floor is not None and version >= floor:
            raise IntegrityError(
                f"the history of {self.where()} is broken: root {ref.hex()[:16]} has version {version} "
                f"after version {floor} (a cycle or a forged prev); run 'fogsync check'"
            )
        return version

    def history(self, start: bytes | None) -> Iterator[tuple[bytes, Root]]:
        """Each root of the history (``history_items``), read, newest first."""
        for item in self.history_items(start):
            root = item.root or self.read_root(item.ref)
            if root.version != item.version:
                raise IntegrityError(
                    f"root {item.ref.hex()[:16]} of {self.where()} has version {root.version}, "
                    f"but the kept list says {item.version}"
                )
            yield item.ref, root

    def descends(self, head: bytes | None, ref: bytes, version: int) -> bool:
        """Whether ``head`` descends from the root ``ref`` of ``version`` (FORMAT.md 8, "Descent"): the
        history meets ``ref``, or a forget root whose ``forgot`` names it, before versions fall below."""
        for item in self.history_items(head):
            if item.version < version:
                return False
            if item.ref == ref:
                return True
            root = item.root or self.read_root(item.ref)
            if root.forgot is not None and ref in self.forgotten(item.ref, root):
                return True
        return False

    def forgotten(self, ref: bytes, root: Root) -> list[bytes]:
        """The roots a forget root forgot (none for another root)."""
        if root.forgot is None:
            return []
        return decode_bptrs(self.read_small(root.forgot, f"forgotten roots of root {ref.hex()[:16]}"))

    def find_root(self, head: bytes | None, prefix: str | None = None, at: datetime | None = None) -> bytes:
        """The root of the history named by a unique id prefix, or the newest one at or before ``at``."""
        if head is None:
            raise FogsyncError(f"{self.where()} has no commits yet (or the key is wrong)")
        if prefix is None and at is None:
            return head
        if at is not None:
            for item in self.history_items(head):
                if parse_date(item.date) <= at:
                    return item.ref
            raise FogsyncError(f"{self.where()} has no root at or before {at.isoformat()}")
        prefix = prefix.lower()
        hits = [item.ref for item in self.history_items(head) if item.ref.hex().startswith(prefix)]
        if len(hits) != 1:
            why = "no root" if not hits else f"{len(hits)} roots"
            raise FogsyncError(f"{why} of {self.where()} match id {prefix!r}")
        return hits[0]

    def load_tree(
        self, listing: bytes, known: Mapping[str, Entry] | None = None,
        inspect: Callable[[str, Entry | None, bytes, list[tuple[str, Entry]]], None] | None = None,
    ) -> dict[str, Entry]:
        """The flat tree under a top listing.

        A directory whose bptr equals the one at the same path in ``known``
        is not fetched: its entries are copied from ``known``. ``inspect``
        sees each listing fetched (``walk_changed``).
        """
        known = known or {}
        return self.walk_changed(listing, lambda _: known, inspect).with_known(known)

    def walk_changed(
        self, listing: bytes, known_in: Callable[[str], Mapping[str, Entry]],
        inspect: Callable[[str, Entry | None, bytes, list[tuple[str, Entry]]], None] | None = None,
    ) -> "Walked":
        """The listings under a top listing that differ from known ones, fetched; the others named.

        ``known_in(path)``, asked once a directory's listing is fetched, gives
        the known entries directly in it (by full path). A subdirectory whose
        bptr equals the known entry's is not fetched, nor anything below it
        (``Walked.same``). ``inspect`` sees each listing fetched: its path, the
        entry that named it (None for the top), its JSON and its entries.
        """
        walked = Walked({}, [], set())
        stack: list[tuple[str, bytes, Entry | None]] = [("", listing, None)]
        while stack:
            path, ref, named_by = stack.pop()
            data = self.read_small(ref, f"listing {ref.hex()[:16]}")
            entries = decode_listing(data)
            if inspect is not None:
                inspect(path, named_by, data, entries)
            walked.fetched.append(path)
            known = known_in(path)
            for name, entry in entries:
                child = join(path, name)
                walked.tree[child] = entry
                if entry.type == DIR and entry.bptr is not None:
                    old = known.get(child)
                    if old is not None and old.type == DIR and old.bptr == entry.bptr:
                        walked.same.add(child)
                    else:
                        stack.append((child, entry.bptr, entry))
        return walked

    def sealed_chunks(self, pieces: list[Bptr]) -> Iterator[bytes | bytearray]:
        """A sealed blob's bytes in READ_CHUNK chunks, each fetched by one task.

        As many chunks are fetched ahead as the store has reads worth having
        in flight. A task per chunk, not per block: a local block reads in
        less time than a hand-off between threads costs.
        """
        if len(pieces) == 1:
            yield self.piece(pieces[0])
            return
        per_chunk = max(1, READ_CHUNK // BLOCK_SIZE)
        groups = (pieces[i : i + per_chunk] for i in range(0, len(pieces), per_chunk))
        yield from fetched_ahead(self._joined, groups, self.store.read_concurrency)

    def _joined(self, pieces: list[Bptr]) -> bytearray:
        """One chunk's pieces in a fresh buffer of its own, which ``bigblob`` decrypts in place."""
        return bytearray().join([self.piece(p) for p in pieces])

    def pieces_ahead(self, bptrs: Iterable[Bptr]) -> Iterator[bytes]:
        """Each bptr's bytes, in order: one-block blobs of many files, read for worker processes.

        Bptrs side by side that point into one block cost one read of it
        (callers sort them with ``by_block``), and that block is not kept in
        the cache: a big restore would otherwise keep every partial block
        it read there until the end. Where a read is a round trip (S3),
        ``read_concurrency`` blocks are fetched ahead; a local block reads
        faster than a hand-off between threads.
        """
        runs = (list(run) for _, run in itertools.groupby(bptrs, key=_block_of))
        if self.store.read_concurrency <= 2:
            blocks = map(self._pieces_of, runs)
        else:
            blocks = fetched_ahead(self._pieces_of, runs, self.store.read_concurrency)
        return itertools.chain.from_iterable(blocks)

    def _pieces_of(self, run: list[Bptr]) -> list[bytes]:
        """The bytes of bptrs that all point into one block, which is read once."""
        block = self._cache.get(run[0].hash) or self._read_block(run[0].hash)
        return [piece_bytes(p, lambda _: block) for p in run]

    def streamed(self, ref: bytes, what: str, *, size: int) -> Iterator[bytes]:
        """The plaintext of a content blob in one pass, raising at the end if its tag fails.

        For writing to a temporary file that is renamed into place only when
        this iterator ends cleanly; use ``verified`` where output cannot be
        taken back (standard output). ``size`` is what the file's entry
        declares: no more than that comes out (IntegrityError instead).
        """
        with _naming(what):
            pieces = self.pieces(ref)
            self._check_sealed_length(pieces, size)
            if len(pieces) == 1:  # a small blob: verified whole before any plaintext exists
                yield from _at_most(size, iter((crypto.open_blob(self.keys, self.piece(pieces[0])),)))
            else:
                yield from _at_most(size, crypto.open_stream(self.keys, self.sealed_chunks(pieces)))

    def open_into(self, ref: bytes, what: str, write: Callable[[bytes], None], *, size: int) -> tuple[str, int]:
        """Decrypt a content blob into ``write(data)``, in order, a chunk per core (``bigblob``).

        Returns the plaintext's hex SHA-256 and length once the tag verified.
        Worth it for big files (``bigblob.MIN_SIZE``); as with ``streamed``,
        the output is for a temporary file, and no more than ``size`` bytes
        are written.
        """
        pieces = self.pieces(ref)
        length = sum(p.length for p in pieces)
        with _naming(what):
            self._check_sealed_length(pieces, size)
            return bigblob.open_into(self.keys, self.sealed_chunks(pieces), length, _writing_at_most(size, write))

    @contextmanager
    def verified(self, ref: bytes, what: str, *, size: int) -> Iterator[Iterator[bytes]]:
        """The plaintext of a content blob, available only once its tag has verified.

        Small blobs are held in memory; larger ones are spooled, still sealed,
        to a temporary file in ``spool_dir`` so memory stays flat. No more
        than ``size`` bytes (what the entry declares) come out.
        """
        pieces = self.pieces(ref)
        total = sum(p.length for p in pieces)
        with _naming(what):
            self._check_sealed_length(pieces, size)
            if total <= IN_MEMORY_LIMIT:
                chunks = list(self.sealed_chunks(pieces))
                crypto.verify_blob(self.keys, chunks)
                yield _at_most(size, crypto.decrypt_blob(self.keys, chunks))
                return
            with tempfile.TemporaryFile(dir=self.spool_dir, prefix="fogsync-spool-") as spool:
                crypto.verify_blob(self.keys, _tee(self.sealed_chunks(pieces), spool))
                spool.seek(0)
                yield _at_most(size, crypto.decrypt_blob(self.keys, iter(lambda: spool.read(READ_CHUNK), b"")))

    def _check_sealed_length(self, pieces: list[Bptr], size: int) -> None:
        """Refuse, before reading the rest, an uncompressed blob longer than its entry's ``size`` allows.

        An uncompressed blob is its plaintext plus MIN_BLOB_LEN bytes; a
        longer one is only worth a look at its header (its first block) to
        tell a gzipped blob, whose length says nothing, from a lie.
        """
        if sum(p.length for p in pieces) <= size + crypto.MIN_BLOB_LEN:
            return
        if crypto.is_uncompressed(self.piece(pieces[0])[: crypto.PREFIX_LEN]):
            raise _too_long(size)


def _too_long(size: int) -> IntegrityError:
    return ListingMismatch(f"content is longer than the {size} bytes its listing declares")


def _at_most(size: int, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, raising IntegrityError instead of handing out more than ``size`` bytes in all."""
    n = 0
    for chunk in chunks:
        n += len(chunk)
        if n > size:
            raise _too_long(size)
        yield chunk


def _writing_at_most(size: int, write: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``write``, raising IntegrityError instead of writing more than ``size`` bytes in all."""
    written = [0]

    def bounded(data: bytes) -> None:
        written[0] += len(data)
        if written[0] > size:
            raise _too_long(size)
        write(data)

    return bounded


@contextmanager
def _naming(what: str) -> Iterator[None]:
    """A content blob that fails to verify or decode names the file it was for."""
    try:
        yield
    except IntegrityError as e:
        raise type(e)(f"{what}: {e}") from None
    except FormatError as e:
        raise FormatError(f"{what}: {e}") from None


def _tee(chunks: Iterator[bytes], spool) -> Iterator[bytes]:
    for chunk in chunks:
        spool.write(chunk)
        yield chunk


def spool_dir_for(state_dir: str) -> str:
    private_dir(state_dir)
    return private_dir(os.path.join(state_dir, "spool"))
