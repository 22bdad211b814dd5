"""Push: changed files become sealed blobs; a tree becomes listings and a root.

``seal_files`` reads each changed file once, hashing, compressing (when it
pays) and sealing it in one pass, on a pool of workers; content that the
store already holds (a move, a copy, a file changed back) reuses its bptr
instead of being uploaded again. A file that changes while it is read is
read again, never stored torn. ``write_listings`` writes a listing for each
directory that differs from the tree being built upon — unchanged subtrees
keep their bptrs — and ``write_root`` seals the commit.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat as st
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

from fogsync.engine.progress import NO_PROGRESS, PUSHING, Progress
from fogsync.folder.scan import Scanned, Stat
from fogsync.format import crypto
from fogsync.format.blocks import BlobWriter, Pending
from fogsync.format.roots import Root, format_date, inherited
from fogsync.format.tree import (
    DIR,
    FILE,
    Entry,
    children_by_dir,
    encode_listing,
    name_of,
    parent_of,
    touched,
)
from fogsync.platform.processes import (
    AHEAD_PER_WORKER,
    PROCESSES_MIN,
    keep_in_worker,
    map_in_processes,
    worker_given,
    worth_processes,
)
from fogsync.platform.sizes import FILE_PIECE, MIB
from fogsync.repo import bigblob

PROBE = 1 << 16
PARALLEL_MIN = MIB  # smaller files are sealed in the calling thread or worker processes
READ_ATTEMPTS = 3
# O_NONBLOCK: a path that became a FIFO since the scan would otherwise block the open until a
# writer comes; for a regular file it changes nothing.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
# Formats that are compressed already: gzip would only spend time.
COMPRESSED_EXT = frozenset(
    "jpg jpeg png gif webp heic avif mp3 mp4 m4a m4v mov mkv avi webm ogg opus flac "
    "zip gz tgz bz2 xz zst 7z rar jar apk docx xlsx pptx odt ods odp epub pdf woff woff2".split()
)


@dataclass
class ContentIndex:
    """sha256 -> bptr of content the store already holds, with a quick size filter.

    The trees added are held here; the rest (content that left the tree:
    the state's content table) is asked for by hash. A file is hashed
    before it is sealed only if some stored content has its size. The
    table's sizes cost a scan of a table that only grows with history,
    so they are read only for a file bigger than
    ``GUESS_MAX`` or after ``guesses`` small ones: until then a small file
    is looked up by hash, which costs a second read of at most 64 KiB.
    """

    lookup_db: Callable[[str], bytes | None] = lambda sha: None
    db_sizes: Callable[[], set[int]] = set
    guesses: int = 1000  # small files looked up by hash before the table's sizes are read
    known: dict[str, bytes] = field(default_factory=dict)
    sizes: set[int] = field(default_factory=set)  # of the content in the trees added
    _sizes_in_db: set[int] | None = None
    _guessed: int = 0

    GUESS_MAX: ClassVar[int] = PROBE

    def add_tree(self, tree: Mapping[str, Entry]) -> None:
        for e in tree.values():
            if e.type == FILE and e.bptr is not None:
                self.known[e.sha256] = e.bptr
                self.sizes.add(e.size)

    def add_contents(self, contents: Iterable[tuple[str, int, bytes]]) -> None:
        """Stored content as (sha256, size, bptr), such as ``State.contents_of_sizes`` finds."""
        for sha, size, bptr in contents:
            self.known[sha] = bptr
            self.sizes.add(size)

    def might_hold(self, size: int) -> bool:
        """Whether stored content may have this size; if not, content of this size is new."""
        if size in self.sizes:
            return True
        if self._sizes_in_db is None:
            if size <= self.GUESS_MAX and self._guessed < self.guesses:
                self._guessed += 1  # threads may race here: the count only needs to be about right
                return True
            self._sizes_in_db = self.db_sizes()
        return size in self._sizes_in_db

    def get(self, sha: str) -> bytes | None:
        return self.known.get(sha) or self.lookup_db(sha)


@dataclass
class Sealed:
    """Files read in this pass: their entries (bptrs filled once resolved) and stats."""

    entries: dict[str, Entry] = field(default_factory=dict)
    stats: dict[str, Stat] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class _Changing(Exception):
    """The file changed while it was read."""


def seal_files(
    folder: str, paths: list[str], writer: BlobWriter, keys: crypto.ShareKeys,
    index: ContentIndex, host: str, workers: int = 3, sizes: Mapping[str, int] | None = None,
    processes_min: int = PROCESSES_MIN, progress: Progress = NO_PROGRESS, scanned: Mapping[str, Scanned] | None = None,
) -> Sealed:
    """Read and seal ``paths``; call ``resolve_sealed`` once every tail may be flushed.

    Files of at least ``PARALLEL_MIN`` bytes (by ``sizes`` as scanned) are
    sealed on ``workers`` threads, which spend their time in C with the GIL
    released. For smaller ones the Python overhead dominates and threads
    would only fight over the GIL: they are sealed in this thread, except
    that many files of at most ``PROBE`` bytes (``processes_min`` or more)
    go to worker processes (``processes``). ``progress`` counts each file
    done with its size as scanned, so the counts reach the phase's totals.
    ``scanned`` (``Snapshot.items``) stands in for ``sizes`` without a dict
    of its own, and a file a worker read with the stat it was scanned with
    shares the scan's int objects: on a first sync, one of each per file.
    """
    out = Sealed()
    size_of = _scanned_size(scanned) if scanned is not None else (sizes or {}).get
    progress.phase(PUSHING, len(paths), sum(size_of(p, 0) for p in paths))

    def one(path: str) -> None:
        progress.current = path
        result = read_one(folder, path, writer, keys, index, host)
        progress.add(1, size_of(path, 0))
        if isinstance(result, str):
            out.problems.append(result)
            return
        entry, stat, pending = result
        out.entries[path] = entry
        out.stats[path] = stat
        if pending is not None:
            out.pending[path] = pending

    def take(path: str, result: _PoolResult) -> None:
        if result is None:
            one(path)  # the worker could not: it grew large, or the pool broke
            return
        if isinstance(result, str):
            out.problems.append(result)
        else:
            take_pooled(path, result, out, writer, index, host, scanned.get(path) if scanned is not None else None)
        progress.current = path
        progress.add(1, size_of(path, 0))

    big, tiny, rest = _by_size(paths, size_of)
    if workers <= 1 or len(big) < 2:
        big, rest = [], big + rest
    if not worth_processes(len(tiny), workers, processes_min):
        tiny, rest = [], tiny + rest
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="fogsync-seal") as pool:
        done = [pool.submit(one, p) for p in big]
        if tiny:
            for path, result in seal_in_processes(folder, host, keys, tiny):
                take(path, result)
        for p in rest:
            one(p)
        for f in done:
            f.result()
    return out


def _scanned_size(scanned: Mapping[str, Scanned]) -> Callable[[str, int], int]:
    def size_of(path: str, default: int) -> int:
        item = scanned.get(path)
        return default if item is None else item.size
    return size_of


def _by_size(paths: list[str], size_of: Callable[[str, int], int]) -> tuple[list[str], list[str], list[str]]:
    """``paths`` as (big: ``PARALLEL_MIN`` or more, or of unknown size; tiny: ``PROBE`` or less; the rest)."""
    big: list[str] = []
    tiny: list[str] = []
    rest: list[str] = []
    for p in paths:
        n = size_of(p, PARALLEL_MIN)
        (big if n >= PARALLEL_MIN else tiny if n <= PROBE else rest).append(p)
    return big, tiny, rest


def take_pooled(
    path: str, result: tuple, out: Sealed, writer: BlobWriter, index: ContentIndex, host: str, item: Scanned | None,
) -> None:
    """A file a worker process read and sealed (``seal_in_processes``): reuse known content, else pack
    its sealed bytes. ``out`` is anything with a ``Sealed``'s ``entries``, ``stats`` and ``pending``.

    Read with the stat it was scanned with (``item``), its entry and stat
    take the scan's int objects rather than the unpickled copies.
    """
    sha, executable, size, mtime_ns, ino, sealed = result
    if item is not None and item[1:4] == (size, mtime_ns, ino):
        size, mtime_ns, ino = item[1:4]
    entry = Entry(FILE, mtime_ns, host, size, None, sha, executable)
    if sealed is not None:
        ref = index.get(sha) if index.might_hold(size) else None
        if ref is not None:
            entry = entry.with_bptr(ref)
        else:
            out.pending[path] = writer.write_bytes(sealed)
    out.entries[path] = entry
    out.stats[path] = Stat(size, mtime_ns, ino)


# --- sealing in worker processes ----------------------------------------------------

# What a worker sends back per file: (sha256, exec, size, mtime_ns, ino, sealed bytes or None when
# empty), a plain tuple (it unpickles in C, a NamedTuple in Python); or a problem; or None: "seal it yourself".
_PoolResult = tuple[str | None, bool, int, int, int, bytes | None] | str | None

class _GrewLarge(Exception):
    """The file is no longer small: the calling process seals it, streaming (or a chunk per thread)."""


class _Capture:
    """Stands in for a BlobWriter in a worker: hands the sealed bytes back instead of storing them."""

    def write_bytes(self, sealed: bytes, depth: int = 0) -> bytes:
        return sealed

    def write(self, sealed, depth: int = 0):
        raise _GrewLarge()


def seal_in_processes(
    folder: str, host: str, keys: crypto.ShareKeys, paths: Iterable[str], ahead: int = AHEAD_PER_WORKER,
) -> Iterator[tuple[str, _PoolResult]]:
    """``(path, result)`` for each of ``paths`` (taken lazily), read and sealed by worker processes, in
    order: for ``take_pooled``; a problem; or None, where the caller is to seal it itself (``read_one``).
    ``ahead``: batches a worker has queued (``map_in_processes``)."""
    return map_in_processes(functools.partial(_seal_batch, folder, host), paths, keep_in_worker, (keys,), ahead=ahead)


def _seal_batch(folder: str, host: str, paths: list[str]) -> list[_PoolResult]:
    (keys,) = worker_given()
    no_index = ContentIndex(guesses=0)  # reuse is decided by the caller, which knows the store
    capture = _Capture()
    out: list[_PoolResult] = []
    for path in paths:
        try:
            result = read_one(folder, path, capture, keys, no_index, host, small_only=True)
        except _GrewLarge:
            result = None
        if isinstance(result, tuple):
            entry, stat, sealed = result
            result = entry.sha256, entry.exec, *stat, sealed
        out.append(result)
    return out


def resolve_sealed(sealed: Sealed, writer: BlobWriter) -> list[str]:
    """Fill in the bptrs of newly written files; returns their paths (their content is new to the store)."""
    paths = list(sealed.pending)
    refs = writer.resolve(list(sealed.pending.values()))
    sealed.pending.clear()
    entries = sealed.entries
    for path, ref in zip(paths, refs):
        entries[path] = entries[path].with_bptr(ref)
    return paths


def read_one(
    folder: str, path: str, writer: BlobWriter, keys: crypto.ShareKeys, index: ContentIndex, host: str,
    small_only: bool = False,
) -> tuple[Entry, Stat, Pending | None] | str:
    """(entry, stat as read, Pending or None) of one file read and sealed, or a problem; a file that
    changes while it is read is read again. ``small_only``: one of more than ``PROBE`` bytes raises
    ``_GrewLarge`` (a worker process's ``writer`` only captures small blobs)."""
    full = os.path.join(folder, path)
    for _ in range(READ_ATTEMPTS):
        try:
            return _read_stable(full, writer, keys, index, host, small_only)
        except _Changing:
            continue
        except OSError as e:
            return f"cannot read {path!r}: {e.strerror or e}"
    return f"skipped {path!r} for now: it kept changing while it was read"


def _read_stable(full: str, writer: BlobWriter, keys, index: ContentIndex, host: str, small_only: bool = False):
    fd = os.open(full, _OPEN_FLAGS)
    try:
        before = os.fstat(fd)
        if not st.S_ISREG(before.st_mode):
            raise _Changing()
        small = before.st_size <= PROBE
        if not small and small_only:
            raise _GrewLarge()
        if small:
            data = _read_small(fd, before.st_size)
            length = len(data)
        else:
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
                sha, ref, pending, length = _content(f, full, before.st_size, writer, keys, index)
    finally:
        os.close(fd)
    # Still the same inode at that path, with the size and mtime it had before the read.
    now = os.lstat(full)
    if length != before.st_size or _identity(now) != _identity(before):
        raise _Changing()
    if small:
        sha, ref, pending = _small_content(data, full, writer, keys, index)
    entry = Entry(  # the size and mtime int objects shared with the Stat: one copy of each per file
        FILE, before.st_mtime_ns, host, before.st_size, ref, sha,
        exec=bool(before.st_mode & st.S_IXUSR),
    )
    return entry, Stat(before.st_size, before.st_mtime_ns, before.st_ino), pending


def _read_small(fd: int, size: int) -> bytes:
    """A small file's bytes: up to ``size + 1``, so a file grown since its fstat reads long.

    One read mostly: a short one happens only at the end of a file (the
    identity check after it catches a file cut short) or on some network
    filesystems, which get more reads. No FileIO wrapper, and no read to
    confirm the end: for a file of a few KiB those are a good part of the work.
    """
    data = os.read(fd, size + 1)
    while len(data) < size:
        more = os.read(fd, size + 1 - len(data))
        if not more:
            break
        data += more
    return data


def _identity(s: os.stat_result) -> tuple[int, int, int, int]:
    return s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns


def _content(f, full, size, writer, keys, index):
    """(sha256, known bptr or None, Pending or None, bytes read) for an open file of more than ``PROBE`` bytes."""
    if index.might_hold(size):
        sha, length = _hash(f)
        ref = index.get(sha)
        if ref is not None:
            return sha, ref, None, length
        f.seek(0)
    first = f.read(PROBE)
    compress = _worth_compressing(full, first)
    if not compress and size >= bigblob.MIN_SIZE:
        try:
            sha, pending = bigblob.seal_file(keys, f.fileno(), size, writer)
        except bigblob.ShortRead:
            raise _Changing() from None
        return sha, None, pending, size
    h = hashlib.sha256()
    counter = [0]
    chunks = _tapped(_chunks(f, first), h, counter)
    pending = writer.write(crypto.seal_stream(keys, chunks, compress=compress))
    return h.hexdigest(), None, pending, counter[0]


def _small_content(data: bytes, full: str, writer: BlobWriter, keys, index: ContentIndex):
    """(sha256, known bptr or None, Pending or None) for a file read whole: gzipped at most once, sealed in one piece."""
    if not data:
        return None, None, None
    sha = hashlib.sha256(data).hexdigest()
    if index.might_hold(len(data)):
        ref = index.get(sha)
        if ref is not None:
            return sha, ref, None
    sealed = crypto.seal_small(keys, data, try_gzip=_extension_compresses(full))
    return sha, None, writer.write_bytes(sealed)


def _hash(f) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for chunk in iter(lambda: f.read(FILE_PIECE), b""):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def _chunks(f, first: bytes) -> Iterator[bytes]:
    if first:
        yield first
    yield from iter(lambda: f.read(FILE_PIECE), b"")


def _tapped(chunks: Iterator[bytes], h: Any, counter: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        h.update(chunk)
        counter[0] += len(chunk)
        yield chunk


def _extension_compresses(path: str) -> bool:
    name = name_of(path)
    return "." not in name or name.rsplit(".", 1)[-1].lower() not in COMPRESSED_EXT


def _worth_compressing(path: str, sample: bytes) -> bool:
    return _extension_compresses(path) and crypto.probe_compressible(sample)


# --- listings and roots ---------------------------------------------------------


def dirty_dirs(tree: Mapping[str, Entry], previous: Mapping[str, Entry]) -> set[str]:
    """Directories whose listing must be written: they, or something below them, changed."""
    dirty: set[str] = set()

    def mark(path: str) -> None:
        while path not in dirty:
            dirty.add(path)
            if not path:
                return
            path = parent_of(path)

    # Once per path on a first sync (50,000): the parent inline, and no call for a marked one.
    for path in touched(tree, previous):
        e = tree[path]
        old = previous.get(path)
        if old is None or old != e:
            d = path if e.type == DIR else path.rpartition("/")[0]
            if d not in dirty:
                mark(d)
    for path in previous.keys() - tree.keys():
        parent = parent_of(path)
        while parent and (parent not in tree or tree[parent].type != DIR):
            parent = parent_of(parent)  # gone with it, or no longer a directory
        mark(parent)
    return dirty


def write_listings(
    writer: BlobWriter, tree: Mapping[str, Entry], previous: Mapping[str, Entry], host: str,
    mtimes: Mapping[str, int] | None = None,
) -> tuple[bytes, dict[str, Entry]]:
    """Write the listings that changed, deepest first; returns the top listing's ref and the finished tree.

    A rewritten directory takes its mtime from ``mtimes`` (the folder as scanned) where known.
    """
    mtimes = mtimes or {}
    out = dict(tree)
    dirty = dirty_dirs(tree, previous) | {""}
    kids = children_by_dir(tree, only=dirty)
    by_depth: dict[int, list[str]] = {}
    for d in dirty:
        by_depth.setdefault(d.count("/") + 1 if d else 0, []).append(d)
    top_ref = b""
    for depth in sorted(by_depth, reverse=True):
        level = sorted(by_depth[depth])
        # Each listing's JSON goes once sealed, only its size and sha256 kept: a level's JSON held
        # until its refs were resolved was the peak memory of a first sync.
        made = [write_listing(writer, d, ((c, out[c]) for c in kids.get(d, ()))) for d in level]
        for d, (size, sha, _), ref in zip(level, made, writer.resolve([m[2] for m in made])):
            if not d:
                top_ref = ref
                continue
            out[d] = Entry(DIR, mtimes.get(d, out[d].mtime), host, size, ref, sha)
    return top_ref, out


def write_listing(writer: BlobWriter, where: str, children: Iterable[tuple[str, Entry]]) -> tuple[int, str, Pending]:
    """The listing of directory ``where`` from its children's (path, entry), sealed and written:
    (its JSON's size, its JSON's sha256, the Pending of its blob)."""
    cut = len(where) + 1 if where else 0  # a child's name: its path after the directory's
    blob = encode_listing((path[cut:], entry) for path, entry in children)
    return len(blob), hashlib.sha256(blob).hexdigest(), writer.write_bytes(crypto.seal(writer.keys, blob, compress=True))


def write_root(
    writer: BlobWriter, top: bytes, prev: tuple[bytes, Root] | None, host: str, now: datetime,
    merged: tuple[bytes, ...] = (), extra: tuple = (), keys: Mapping[str, Any] | None = None,
) -> tuple[bytes, Root]:
    """Seal a root naming ``top`` on top of ``prev``; returns its ref and the Root.

    ``keys`` are the section-8 keys it carries (``requires``, ``gc``: ``gcrules.commit_keys``);
    without them it copies its prev's (``roots.inherited``).
    """
    root = Root(
        version=prev[1].version + 1 if prev else 1,
        prev=prev[0] if prev else None,
        date=format_date(now),
        host=host,
        root=top,
        merged=merged,
        extra=extra,
        **(keys if keys is not None else inherited(prev[1] if prev else None)),
    )
    sealed = crypto.seal(writer.keys, root.encode(), compress=False)
    (ref,) = writer.resolve([writer.write_bytes(sealed)])
    return ref, root
