"""Pull: a tree from the store becomes files in a share folder.

``apply`` turns the share folder from the tree it was scanned as into a
target tree. Each file is written by ``prepare`` (a temporary name beside
its place, verified content, mtime and mode); 1,024 at a time they are made
durable with one ``syncfs``, then renamed into place. Right before it
replaces or deletes a path this layer checks the path still has the stat it
was scanned with, and renames into the very directory the file was
written in, opened from the folder down without following a symlink
(``folder``): a local edit the merge has not seen is never overwritten,
and nothing is written through a symlink; such paths are reported back
and the pass is retried. Many one-block files are written by worker
processes.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, NamedTuple

from fogsync.engine.place import (
    Placer,
    Prepared,
    place_batch,
    prepare_batch,
    remove_temps,
)
from fogsync.engine.prepare import (
    WORKERS,
    prepare,
    prepare_sealed,
    remove_quietly,
    set_dir_mtimes,
    split_work,
)
from fogsync.engine.progress import NO_PROGRESS, PULLING, Progress
from fogsync.errors import FogsyncError, ListingMismatch, LocalError
from fogsync.folder.guarded import (
    Dirs,
    present,
    real_parent,
    rename_new,
    stat_id,
    unchanged,
)
from fogsync.folder.scan import Scanned, Stat
from fogsync.folder.state import stat_of
from fogsync.format.blocks import Bptr
from fogsync.format.crypto import ShareKeys
from fogsync.format.tree import DIR, FILE, Entry, name_of, parent_of
from fogsync.platform.fsync import sync_filesystem
from fogsync.platform.processes import (
    PROCESSES_MIN,
    keep_in_worker,
    map_in_processes,
    worker_given,
)
from fogsync.repo.repository import Repo

# Files written to temporary names, then made durable with one syncfs, then renamed into place:
# an fsync per file waits for the disk once per file, and was most of a big first pull.
DURABLE_BATCH = 1024
_FSYNC_EACH_MAX = 16  # a batch this small is fsynced file by file instead


@dataclass
class Applied:
    stats: dict[str, Stat] = field(default_factory=dict)  # what was written, as it is now
    skipped: list[str] = field(default_factory=list)  # changed under us: retry the pass
    left_alone: set[str] = field(default_factory=set)  # in the way, content unknown: not touched
    written: int = 0
    removed: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # path -> why its entry was not written (left alone)

    def refuse(self, path: str, why: FogsyncError) -> None:
        """An entry whose content is not what it declares: not written, and the folder's path left alone."""
        self.refused[path] = str(why)
        self.left_alone.add(path)


# --- the worker processes' side ------------------------------------------------------

# Many small files are Python-bound work (open, verify, decrypt, write): worker processes
# write them to temporary names from sealed bytes this process reads; this process renames them.

_Written = tuple[str, tuple[int, int, int]]  # a temporary file, and its (size, mtime_ns, inode)


def prepare_batch_sealed(items: list[tuple[str, str, Entry, bytes]]) -> list[_Written | FogsyncError]:
    (keys,) = worker_given()
    return [_prepared_or_error(keys, full, entry, sealed) for _, full, entry, sealed in items]


def _prepared_or_error(keys: ShareKeys, target: str, entry: Entry, sealed: bytes) -> _Written | FogsyncError:
    try:
        return _with_stat(prepare_sealed(keys, target, entry, sealed), target)
    except FogsyncError as e:
        return e


def _with_stat(tmp: str, target: str) -> _Written:
    """A prepared file with the stat it keeps once renamed. Taken before the rename, it is what
    this pass wrote even if the person saves at that path right after: the next scan sees that."""
    try:
        s = os.lstat(tmp)
    except OSError as e:
        remove_quietly(tmp)
        raise LocalError(f"cannot write {target}: {e.strerror or e}") from None
    return tmp, (s.st_size, s.st_mtime_ns, s.st_ino)


# --- applying a merged tree to the share folder ---------------------------------------


def apply(
    repo: Repo, folder: str, last_seen: Mapping[str, Scanned], folder_tree: Mapping[str, Entry],
    target: Mapping[str, Entry], workers: int = WORKERS, processes_min: int = PROCESSES_MIN,
    batch: int = DURABLE_BATCH, durable: Callable[[str, list[str]], None] | None = None,
    progress: Progress = NO_PROGRESS, growing: bool = False,
) -> Applied:
    """Make the folder hold ``target`` where it now holds ``folder_tree`` (the folder as entries).

    ``last_seen`` maps each path whose content ``folder_tree`` describes to
    how it looked (as ``Scanned``) when that content was learnt: a file's
    stat when it was read or last synced. Only such paths are replaced or
    removed, and only while they still look so.
    Anything else found in the way is left alone and reported in ``left_alone``.
    Files are placed ``batch`` at a time, each batch first made durable by
    ``durable(folder, temporary files)`` (``make_durable`` unless given).
    ``progress`` counts the files (and bytes) written, as each is prepared,
    in a PULLING phase this call begins; ``growing``: in the phase under
    way, whose totals grow by this call's (a pull that applies a tree a part
    at a time).
    """
    out = Applied()
    if target is folder_tree:  # nobody else committed: the folder holds the target already
        return out
    removals = [p for p, item in last_seen.items() if p not in target or target[p].type != item.type]
    writes = [p for p, e in target.items() if p not in last_seen or not _same(e, folder_tree.get(p))]
    in_the_way = present(folder, [p for p in writes if p not in last_seen])
    out.left_alone.update(
        p for p in in_the_way if target[p].type != DIR or not os.path.isdir(os.path.join(folder, p)))
    writes = [p for p in writes if p not in out.left_alone]
    sources = _local_sources(folder, last_seen, folder_tree) if writes else {}
    blocked = _blocked(writes, last_seen)
    first = [p for p in writes if p not in blocked and p not in last_seen]
    later = [p for p in writes if p in blocked or p in last_seen]
    _pull_phase(progress, target, writes, growing)
    writing = _Writing(workers, processes_min, batch, durable or make_durable, progress)
    _Writer(repo, folder, last_seen, target, sources, out, writing).write(first)
    gone = _remove_all(folder, last_seen, removals, out)
    now = {p: item for p, item in last_seen.items() if p not in gone}  # what was removed is expected absent
    _Writer(repo, folder, now, target, sources, out, writing).write(later)
    set_dir_mtimes(folder, target, {parent_of(p) for p in writes + removals} | {
        p for p in writes if target[p].type == DIR})
    return out


def _pull_phase(progress: Progress, target: Mapping[str, Entry], writes: list[str], growing: bool) -> None:
    files = [target[p] for p in writes if target[p].type == FILE]
    count, size = len(files), sum(e.size for e in files)
    if growing:
        progress.grow(count, size)
    else:
        progress.phase(PULLING, count, size)


def _same(e: Entry, in_folder: Entry | None) -> bool:
    return e is in_folder or e.same_content(in_folder)  # mostly the very same object: nothing to write


def _local_sources(folder: str, last_seen: Mapping[str, Scanned], folder_tree: Mapping[str, Entry]) -> dict[str, str]:
    """sha256 -> a file in the folder that holds that content now."""
    out = {}
    for path, e in folder_tree.items():
        if e.type == FILE and e.size and path in last_seen:
            out.setdefault(e.sha256, os.path.join(folder, path))
    return out


def _blocked(writes: list[str], last_seen: Mapping[str, Scanned]) -> set[str]:
    """New paths that cannot be made before removals: some ancestor is, locally, not a directory."""
    out = set()
    for p in writes:
        parent = parent_of(p)
        while parent:
            item = last_seen.get(parent)
            if item is not None and item.type != DIR:
                out.add(p)
                break
            parent = parent_of(parent)
    return out


class _Writing(NamedTuple):
    """How an ``apply`` writes: threads, when worker processes pay, the batch, how it is made durable."""

    workers: int
    processes_min: int
    batch: int
    durable: Callable[[str, list[str]], None]
    progress: Progress


class _Writer:
    """Writes paths of ``target`` into the folder: their directories first, then their files, a
    batch at a time (``DURABLE_BATCH``), each batch made durable and renamed into place.

    One-block files go to worker processes when there are many
    (``split_work``); the rest are written here on thread groups.
    """

    def __init__(
        self, repo: Repo, folder: str, last_seen: Mapping[str, Scanned], target: Mapping[str, Entry],
        sources: Mapping[str, str], out: Applied, writing: _Writing,
    ) -> None:
        self.repo, self.folder, self.last_seen, self.target = repo, folder, last_seen, target
        self.sources, self.out, self.writing = sources, out, writing
        # parent dir -> its (st_dev, st_ino) if it is made and the folder's own, else None: checked
        # once a batch; each file carries the id its check found
        self.parents: dict[str, tuple[int, int] | None] = {}

    def write(self, paths: list[str]) -> None:
        target, out = self.target, self.out
        self.make_dirs(sorted(p for p in paths if target[p].type == DIR))
        before = len(out.stats)
        self.write_files([p for p in paths if target[p].type != DIR])
        out.written += len(out.stats) - before  # counted here: writer threads share ``out``

    def make_dirs(self, dirs: list[str]) -> None:
        folder, out = self.folder, self.out
        for d in dirs:
            full = os.path.join(folder, d)
            if os.path.islink(full) or not os.path.isdir(full):
                try:
                    if not real_parent(folder, d):
                        raise FileExistsError  # a parent was replaced by a symlink: never write through it
                    os.makedirs(full)
                    out.written += 1
                except (FileExistsError, NotADirectoryError):
                    out.skipped.append(d)  # something else is in the way now: the next attempt sees what
                except OSError as e:
                    raise LocalError(f"cannot create directory {full}: {e.strerror or e}") from None

    def write_files(self, files: list[str]) -> None:
        target, writing = self.target, self.writing
        for_processes, groups = split_work(self.repo, target, files, writing.workers, writing.processes_min, self.sources)
        # closing: if a batch fails, the worker processes' files in flight are removed right away
        with (
            contextlib.closing(
                _prepared_in_processes(
                    self.repo, target, for_processes, self.checked, self.parents.clear, writing.batch,
                    self.out.refuse, writing.progress)
            ) as by_workers,
            Placer(self.place_batch) as placer,
        ):
            here = (self.prepared_here(group, threads) for group, threads in groups)
            for prepared in itertools.chain(by_workers, *here):
                placer.put(prepared)

    def parent_id(self, path: str, full: str) -> tuple[int, int] | None:
        parents, parent = self.parents, parent_of(path)
        if parent not in parents:
            try:
                os.makedirs(os.path.dirname(full), exist_ok=True)
                found = stat_id(os.path.dirname(full))  # before the check: a swap after it shows
                parents[parent] = found if real_parent(self.folder, path) else None
            except (FileExistsError, NotADirectoryError, FileNotFoundError):
                parents[parent] = None  # a parent is no longer a directory
        return parents[parent]

    def checked(self, path: str) -> tuple[str, tuple[int, int]] | None:
        """Where to write ``path``, and its parent's id; None if it is left alone or its parent
        is not the folder's own."""
        full = os.path.join(self.folder, path)
        if path in self.out.left_alone:
            return None  # _remove_all found it holding what the merge has not seen (ignored files)
        found = self.parent_id(path, full)
        if found is None:
            self.out.skipped.append(path)
            return None
        return full, found

    def prepare_one(self, path: str) -> Prepared | None:
        where = self.checked(path)
        if where is None:
            return None
        full, written_in = where
        entry = self.target[path]
        source = self.sources.get(entry.sha256) if entry.type == FILE else None
        progress = self.writing.progress
        progress.current = path
        try:
            tmp, written = _with_stat(prepare(self.repo, full, entry, source), full)
        except ListingMismatch as e:
            self.out.refuse(path, e)
            return None
        if entry.type == FILE:
            progress.add(1, entry.size)
        return Prepared(path, full, tmp, written_in, written)

    def prepared_here(self, paths: list[str], threads: int) -> Iterator[list[Prepared]]:
        batch = self.writing.batch
        for start in range(0, len(paths), batch):
            self.parents.clear()
            yield prepare_batch(self.prepare_one, paths[start : start + batch], threads)

    def place_batch(self, prepared: list[Prepared]) -> None:
        place_batch(self.folder, self.target, prepared, self.place, self.writing.durable)

    def place(self, prepared: Prepared, dirs: Dirs) -> None:
        path, full, tmp, written_in, written = prepared
        item = self.last_seen.get(path)
        name, tmp_name = name_of(path), os.path.basename(tmp)
        try:
            fd = dirs.fd(parent_of(path), written_in)
            if fd is None:
                raise FileExistsError  # a directory on the way was swapped: the next attempt sees what
            if item is None:
                rename_new(fd, tmp_name, name, written_in[0])
            elif unchanged(name, item, fd):
                os.replace(tmp_name, name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                raise FileExistsError  # something else is in the way now: the next attempt sees what
        except (FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError):
            remove_quietly(tmp)
            self.out.skipped.append(path)
            return
        except OSError as e:
            remove_quietly(tmp)
            raise LocalError(f"cannot write {full}: {e.strerror or e}") from None
        self.out.stats[path] = stat_of(self.target[path], *written)


def _prepared_in_processes(
    repo: Repo, target: Mapping[str, Entry], paths: list[str],
    checked: Callable[[str], tuple[str, tuple[int, int]] | None],
    new_batch: Callable[[], None], batch_size: int, refuse: Callable[[str, FogsyncError], None],
    progress: Progress = NO_PROGRESS,
) -> Iterator[list[Prepared]]:
    """Batches of prepared one-block files, written by worker processes.

    This process reads each sealed blob from the store; a worker verifies,
    decrypts and writes it, as ``restore`` does. After a failure nothing
    more is sent, the files in flight are waited for and removed, and the
    failure is raised. If the caller stops early (``close``), the files in
    flight are removed too.
    """
    failure: list[FogsyncError] = []

    wanted: deque[tuple[str, str]] = deque()  # (path, full path) whose blob is being read, in order
    written_in: dict[str, tuple[int, int]] = {}  # path in flight -> its parent's id, as its check found

    def bptrs() -> Iterator[Bptr]:
        for i, path in enumerate(paths):
            if failure:
                return
            if i % batch_size == 0:
                new_batch()
            where = checked(path)
            if where is not None:
                wanted.append((path, where[0]))
                written_in[path] = where[1]
                yield Bptr.unpack(target[path].bptr)

    def items() -> Iterator[tuple[str, str, Entry, bytes]]:
        try:
            for sealed in repo.pieces_ahead(bptrs()):
                path, full = wanted.popleft()
                yield path, full, target[path], sealed
        except FogsyncError as e:  # raised here, it would cut off the answers for what is in flight
            failure.append(type(e)(f"{wanted[0][1]}: {e}") if wanted else e)  # blocks come in wanted's order

    results = map_in_processes(prepare_batch_sealed, items(), keep_in_worker, (repo.keys,))
    batch: list[Prepared] = []
    try:
        for (path, full, entry, sealed), done in results:
            parent = written_in.pop(path)
            if done is None:  # no worker answered: written here
                done = _prepared_or_error(repo.keys, full, entry, sealed)
            if isinstance(done, ListingMismatch):
                refuse(path, done)
            elif isinstance(done, FogsyncError):
                failure.append(done)
            elif failure:
                remove_quietly(done[0])
            else:
                progress.current = path
                progress.add(1, entry.size)
                batch.append(Prepared(path, full, done[0], parent, done[1]))
                if len(batch) == batch_size:
                    yield batch
                    batch = []
    except GeneratorExit:  # the caller failed on a batch: what is still in flight is not wanted
        failure.append(LocalError("stopped"))
        for _, done in results:
            if isinstance(done, tuple):
                remove_quietly(done[0])
        raise
    if failure:
        remove_temps(batch)
        raise failure[0]
    if batch:
        yield batch


def make_durable(folder: str, temps: list[str]) -> None:
    """The batch's content is on disk before any of it replaces anything.

    A few files are fsynced one by one: one syncfs would also wait for
    whatever else is being written to the same file system.
    """
    if len(temps) > _FSYNC_EACH_MAX:
        sync_filesystem(folder)
        return
    for tmp in temps:
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue  # its directory was moved or replaced under us: its rename is skipped too
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_all(folder: str, last_seen: Mapping[str, Scanned], paths: list[str], out: Applied) -> set[str]:
    """Remove what still looks as it was scanned; returns the paths now gone."""
    gone = set()
    for path in sorted(paths, key=lambda p: (-p.count("/"), p)):
        full = os.path.join(folder, path)
        item = last_seen[path]
        if not unchanged(full, item):
            out.skipped.append(path)
            continue
        try:
            if item.type == DIR:
                os.rmdir(full)
            else:
                os.unlink(full)
            out.removed += 1
            gone.add(path)
        except FileNotFoundError:
            gone.add(path)
        except OSError as e:
            if e.errno != errno.ENOTEMPTY:
                raise LocalError(f"cannot remove {full}: {e.strerror or e}") from None
            # Still holds ignored files or something new: it stays, and keeps its base until it can go.
            out.left_alone.add(path)
    return gone
