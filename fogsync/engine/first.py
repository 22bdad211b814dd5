"""First: a share's first sync into an empty store, one directory at a time.

When the state holds no base for a share and the store no head, a pass has
nothing to load, compare, merge or write into the folder: it reads, seals
and lists everything. ``FirstSync`` does so as it walks the folder
(``scan.walk``), so that it holds the directories on the walk's way and the
files being sealed, not the share: a directory's listing is written once its
files are stored and its subdirectories listed, and its entries go to the
state as staged rows (``State.stage``), which become the base only with the
pass's save (``State.save(staged=True)``), in one transaction as after any
pass. It reaches the tree, the rows and the vouched directory digests that
the whole-tree pass (``sync.Pass``) would, and does the same work; the
single-threaded part of it (walking, listing, saving rows) now runs while
worker processes seal.

Small files go to worker processes as the walk finds them; files of
``PARALLEL_MIN`` bytes or more to threads; the rest are sealed in this
thread, as ``seal_files`` does. Blobs are resolved in rounds, once the
directories ready hold ``RESOLVE_AT`` entries: a round closes the few
partial blocks still open.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

from fogsync.engine.gcrules import Rules
from fogsync.engine.progress import PUSHING
from fogsync.engine.push import (
    PARALLEL_MIN,
    PROBE,
    read_one,
    seal_in_processes,
    take_pooled,
    write_listing,
)
from fogsync.engine.share import Share
from fogsync.engine.vouch import UNSURE
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import (
    RACY_NS,
    Scanned,
    Snapshot,
    Stat,
    digest_of,
    dir_digest,
    matches_base,
    walk,
)
from fogsync.format.blocks import BlobWriter, Pending
from fogsync.format.tree import DIR, SYMLINK, Entry, parent_of
from fogsync.platform.processes import PROCESSES_MIN, worth_processes

RESOLVE_AT = 16384  # entries of ready directories before a round resolves their blobs and lists them
# Batches queued per worker process: a round keeps this thread from the workers' answers for a
# while, and they should not run dry meanwhile.
AHEAD = 16


@dataclass(slots=True)
class _Dir:
    """A directory on the walk's way: its entries so far, and how many more it waits for."""

    path: str
    mtime: int  # as its parent's listing found it
    waiting: int = 1  # files still being sealed and subdirectories still to list; 1 while it is being walked
    digest: bytes = UNSURE  # its scan's (``Snapshot.dir_digests``), while its rows match that scan
    entries: dict[str, Entry] = field(default_factory=dict)  # by path; a blob's bptr once resolved
    stats: dict[str, Stat | None] = field(default_factory=dict)  # the files', as read; None if too fresh to trust
    pending: dict[str, Pending] = field(default_factory=dict)  # blobs written, their bptrs to come


class FirstSync:
    """One share's folder walked, sealed, listed and staged into a store with no head."""

    def __init__(self, share: Share, rules: Rules, writer: BlobWriter) -> None:
        self.share, self.writer = share, writer
        self.host, self.progress = share.host, share.progress
        self.index = rules.content_index({}, {})
        self.snap = Snapshot(taken_ns=share.clock_ns())
        self.racy = self.snap.taken_ns - RACY_NS
        self.open: dict[str, _Dir] = {"": _Dir("", 0)}
        self.ready: list[_Dir] = []  # every blob in them written: to resolve and list
        self.ready_entries = 0
        self.sealing: dict[str, Scanned] = {}  # small files on their way to be sealed, as scanned
        self.threaded: deque[tuple[str, Scanned, Future]] = deque()
        self.digests: dict[str, bytes] = {}
        self.top: Pending | None = None
        self.problems: list[str] = []
        self.deferred: list[str] = []
        self.pushed = self.pushed_bytes = 0

    def run(self) -> bytes | None:
        """The top listing's ref once every row is staged; None for a folder with nothing to commit."""
        share = self.share
        share.state.drop_staged(share.name)  # a first sync's that failed
        self.progress.phase(PUSHING, 0, 0)  # the totals grow as the walk finds files
        with ThreadPoolExecutor(max(1, share.workers), thread_name_prefix="fogsync-seal") as self.pool:
            self._seal(self._walk(Ignore.for_folder(share.folder, share.exclude)))
            while self.threaded:
                self._take_threaded()
        while self.ready:
            self._resolve()
        return self.writer.resolve([self.top])[0] if self.top is not None else None

    def vouched(self) -> dict:
        """``State.save``'s keywords for the directory digests: none when part of the folder was unreadable."""
        if self.snap.unreadable:
            return {"scan_digest": None}
        return {"scan_digest": digest_of(self.digests), "scan_dirs": self.digests}

    # --- walking and sealing ------------------------------------------------------------------

    def _walk(self, ignore: Ignore) -> Iterator[str]:
        """The small files to seal, as the walk finds them; the others it seals here, or on threads."""
        share = self.share
        settled = self.snap.taken_ns - share.settle_ns if share.settle_ns else None
        for where, items in walk(share.folder, ignore, self.snap):
            d = self.open[where]
            if items is not None:
                d.digest = dir_digest(where, list(items), list(items.values()))
                for path, item in items.items():
                    if self._found(d, path, item, settled):
                        yield path
            self._done_with(d)
            self._step()

    def _found(self, d: _Dir, path: str, item: Scanned, settled: int | None) -> bool:
        """One entry of ``d`` as the walk found it, put in hand; True for a small file, for the workers."""
        if item.type == DIR:
            d.waiting += 1
            self.open[path] = _Dir(path, item.mtime_ns)
        elif item.type == SYMLINK:
            d.entries[path] = Entry(SYMLINK, item.mtime_ns, self.host, item.size, target=item.target)
        elif settled is not None and item.mtime_ns > settled:
            self.deferred.append(path)  # still being written: a later pass takes it
            d.digest = UNSURE
        else:
            d.waiting += 1
            self.progress.grow(1, item.size)
            if item.size <= PROBE:
                self.sealing[path] = item
                return True
            if item.size >= PARALLEL_MIN:
                self._on_thread(path, item)
            else:
                self._took(path, item, self._read(path))
        return False

    def _seal(self, small: Iterator[str]) -> None:
        """Seal the small files: on worker processes when there are enough of them to pay for starting them."""
        first = list(itertools.islice(small, PROCESSES_MIN))
        if not worth_processes(len(first), self.share.workers):
            for path in itertools.chain(first, small):
                self._took(path, self.sealing.pop(path), self._read(path))
                self._step()
            return
        share = self.share
        for path, result in seal_in_processes(share.folder, self.host, share.repo.keys, itertools.chain(first, small),
                                              AHEAD):
            item = self.sealing.pop(path)
            if result is None or isinstance(result, str):
                self._took(path, item, result if result is not None else self._read(path))
            else:
                d = self.open[parent_of(path)]
                take_pooled(path, result, d, self.writer, self.index, self.host, item)
                self._took(path, item, None)
            self._step()

    def _read(self, path: str):
        return read_one(self.share.folder, path, self.writer, self.share.repo.keys, self.index, self.host)

    def _on_thread(self, path: str, item: Scanned) -> None:
        if len(self.threaded) >= 2 * max(1, self.share.workers):  # a few ahead of the threads, not the whole share
            self._take_threaded()
        self.threaded.append((path, item, self.pool.submit(self._read, path)))

    def _take_threaded(self) -> None:
        path, item, future = self.threaded.popleft()
        self._took(path, item, future.result())

    def _took(self, path: str, item: Scanned, result) -> None:
        """A file sealed: ``result`` is ``read_one``'s, or None when ``take_pooled`` put it in place."""
        d = self.open[parent_of(path)]
        self.progress.current = path
        self.progress.add(1, item.size)
        if isinstance(result, str):
            self.problems.append(result)
            d.digest = UNSURE
        else:
            if result is not None:
                entry, stat, pending = result
                d.entries[path], d.stats[path] = entry, stat
                if pending is not None:
                    d.pending[path] = pending
            entry = d.entries[path]
            self.pushed += 1
            self.pushed_bytes += entry.size
            stat = d.stats[path]
            if stat.mtime_ns >= self.racy:
                stat = d.stats[path] = None  # too fresh to trust: its row keeps none, and the next pass reads it
            if not matches_base(item, entry, stat):
                d.digest = UNSURE  # the next pass's compare would not find it as scanned
        self._done_with(d)

    def _step(self) -> None:
        """Between files: take what the threads finished, and resolve a round when it is due."""
        while self.threaded and self.threaded[0][2].done():
            self._take_threaded()
        if self.ready_entries >= RESOLVE_AT:
            self._resolve()

    # --- listing and staging ------------------------------------------------------------------

    def _done_with(self, d: _Dir) -> None:
        """One more of what ``d`` waits for is done; with nothing left, it is ready to list."""
        d.waiting -= 1
        if not d.waiting:
            self.ready.append(d)
            self.ready_entries += len(d.entries)

    def _resolve(self) -> None:
        """A round: the ready directories' blobs resolved, their listings written, their rows staged."""
        dirs, self.ready, self.ready_entries = self.ready, [], 0
        refs = iter(self.writer.resolve([p for d in dirs for p in d.pending.values()]))
        rows: dict[str, tuple[Entry, Stat | None]] = {}
        for d in dirs:
            entries = d.entries
            for path in d.pending:
                entries[path] = entries[path].with_bptr(next(refs))
            for path, entry in entries.items():
                rows[path] = (entry, d.stats.get(path))
            self._list(d)
        self.share.state.stage(self.share.name, rows)

    def _list(self, d: _Dir) -> None:
        """``d``'s listing written; its entry handed to its parent, which may then be ready too."""
        del self.open[d.path]
        self.digests[d.path] = d.digest
        if not d.path and not d.entries:
            return  # nothing to commit
        size, sha, pending = write_listing(self.writer, d.path, d.entries.items())
        if not d.path:
            self.top = pending
            return
        parent = self.open[parent_of(d.path)]
        parent.entries[d.path] = Entry(DIR, d.mtime, self.host, size, None, sha)
        parent.pending[d.path] = pending
        self._done_with(parent)

