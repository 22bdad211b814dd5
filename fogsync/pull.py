"""Pull: a tree from the store becomes files in a folder.

Every file is written under a temporary name (``.fogsync-tmp-*``) beside
its place, from a blob whose tag has verified, checked against the listing's
sha256, given its mtime and exec bit, and only then renamed into place.
Content already present in the folder (a rename, a conflict copy) is copied
locally instead of fetched.

``apply`` turns the share folder from the tree it was scanned as into a
target tree. Right before it replaces or deletes a path it checks the path
still has the stat it was scanned with: a local edit the merge has not seen
is never overwritten; such paths are reported back and the pass is retried.
The writing of one entry, the thread rule and the worker-process side here
are shared with ``restore``, which writes a tree into an empty directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import secrets
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from . import bigblob, crypto
from .blocks import Bptr
from .crypto import ShareKeys
from .directio import DirectWriter
from .errors import FogsyncError, FormatError, IntegrityError, LocalError
from .ignore import TEMP_PREFIX
from .processes import map_in_processes, worth_processes
from .repo import Repo, by_block
from .scan import Local
from .state import Stat, stat_of
from .store.local import sync_filesystem
from .tree import DIR, FILE, SYMLINK, Entry, parent_of

CHUNK = 1 << 20
_BATCH = 256
WORKERS = 4  # files written at once
PROCESSES_MIN = 2000  # this many one-block files are worth starting worker processes for
# Files written to temporary names, then made durable with one syncfs, then renamed into place:
# an fsync per file cost 13 s of a 50,000-file first pull.
_DURABLE_BATCH = 1024
_FSYNC_EACH_MAX = 16  # a batch this small is fsynced file by file instead


@dataclass
class Applied:
    stats: dict[str, Stat] = field(default_factory=dict)  # what was written, as it is now
    skipped: list[str] = field(default_factory=list)  # changed under us: retry the pass
    left_alone: set[str] = field(default_factory=set)  # in the way, content unknown: not touched
    written: int = 0
    removed: int = 0


# --- writing one entry ------------------------------------------------------------


_TEMP_TOKEN = secrets.token_hex(4)
_temp_serial = itertools.count()


def _temp_name(dest: str) -> str:
    """A name beside ``dest`` that no other writer uses: pid, token and serial.

    The pid is read at each call: worker processes forked from a process
    that had imported this module share its token and its serial count.
    """
    return os.path.join(os.path.dirname(dest), f"{TEMP_PREFIX}tmp-{os.getpid()}-{_TEMP_TOKEN}-{next(_temp_serial)}")


def prepare(repo: Repo, dest: str, entry: Entry, source: str | None = None) -> str:
    """Write ``entry`` to a temporary file beside ``dest``; returns its name, ready to rename.

    Not fsynced: callers that replace files make a whole batch durable at once (``sync_filesystem``).
    """
    return _prepared(dest, entry, lambda tmp: _write_content(repo, tmp, entry, source, dest))


def _prepared(dest: str, entry: Entry, write_content: Callable[[str], None]) -> str:
    tmp = _temp_name(dest)
    try:
        if entry.type == SYMLINK:
            os.symlink(entry.target, tmp)
        else:
            write_content(tmp)
            if entry.exec:  # created 0o666 & ~umask, which is right for the rest
                os.chmod(tmp, 0o777 & ~_UMASK)
        os.utime(tmp, ns=(entry.mtime, entry.mtime), follow_symlinks=False)
        return tmp
    except BaseException as e:
        remove_quietly(tmp)
        if isinstance(e, OSError):
            raise LocalError(f"cannot write {dest}: {e.strerror or e}") from None
        raise


def _write_content(repo: Repo, tmp: str, entry: Entry, source: str | None, dest: str) -> None:
    if source is not None:
        try:
            _write_checked(tmp, _local_chunks(source), entry)
            return
        except (OSError, IntegrityError):
            pass  # the local copy changed or vanished: fetch from the store instead
    if entry.size == 0:
        _write_checked(tmp, iter(()), entry)
    elif entry.size >= bigblob.MIN_SIZE:
        _write_big(repo, tmp, entry, dest)
    else:
        _write_checked(tmp, repo.streamed(entry.bptr, dest), entry)


def _write_big(repo: Repo, tmp: str, entry: Entry, dest: str) -> None:
    """A big file, decrypted a chunk per core (``bigblob``), hashed and written in order."""
    with DirectWriter(tmp, entry.size) as f:
        sha, n = repo.open_into(entry.bptr, dest, f.write)
    _check_content(sha, n, entry)


def _write_checked(tmp: str, chunks: Iterator[bytes], entry: Entry) -> None:
    h = hashlib.sha256()
    n = 0
    with DirectWriter(tmp, entry.size) as f:
        for chunk in chunks:
            h.update(chunk)
            f.write(chunk)
            n += len(chunk)
    _check_content(h.hexdigest(), n, entry)


def _check_content(sha: str, n: int, entry: Entry) -> None:
    if n != entry.size or (n and sha != entry.sha256):
        raise IntegrityError(f"content does not match its listing (size {n} vs {entry.size}, or sha256)")


def prepare_sealed(keys: ShareKeys, target: str, entry: Entry, sealed: bytes) -> str:
    """A temporary file beside ``target`` holding a one-block blob's verified plaintext."""
    def write(tmp: str) -> None:
        try:
            plain = crypto.open_blob(keys, sealed)
        except (IntegrityError, FormatError) as e:
            raise type(e)(f"{target}: {e}") from None
        _write_checked(tmp, iter((plain,)), entry)

    return _prepared(target, entry, write)


def _local_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: setting it is a process-wide race with other threads


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def set_dir_mtimes(folder: str, tree: Mapping[str, Entry], paths) -> None:
    """Directories' mtimes, deepest first (writing inside a directory moves its mtime)."""
    for path in sorted(paths, key=lambda p: -p.count("/")):
        e = tree.get(path)
        if e is not None and e.type == DIR:
            try:
                os.utime(os.path.join(folder, path), ns=(e.mtime, e.mtime), follow_symlinks=False)
            except OSError:
                pass


# --- writing many: thread groups, worker processes ------------------------------------


def one_block(e: Entry) -> bool:
    """A non-empty file whose sealed blob fits in one block: a job for a worker process."""
    return e.type == FILE and e.size > 0 and Bptr.unpack(e.bptr).depth == 0


def thread_groups(
    repo: Repo, tree: Mapping[str, Entry], paths: list[str], workers: int,
) -> list[tuple[list[str], int]]:
    """``paths`` in groups, each with how many threads should write it.

    Over a network each read is a round trip: ``workers`` threads for all.
    On a local store a file of one block or none is Python holding the GIL,
    written best by one thread (a 50,000-file first pull: 7.8 s on 1, 16.4 s
    on 2); a bigger one is decrypted outside the GIL and, from 1 MiB, written
    ``O_DIRECT``, which waits for the disk: ``workers`` threads keep the
    cores busy meanwhile (the mixed corpus's 200 files of 0.4-4 MiB restored
    in 1.90 s on 4, 2.11 s on 2; through the page cache on 2, 2.24-2.31 s).
    """
    if repo.store.read_concurrency > 2:
        return [(paths, workers)]
    big = [p for p in paths if tree[p].type == FILE and tree[p].size > 0 and not one_block(tree[p])]
    chosen = set(big)
    return [(big, workers), ([p for p in paths if p not in chosen], 1)]


# Many small files are Python-bound work (open, verify, decrypt, write): worker processes
# write them to temporary names from sealed bytes this process reads; this process renames them.

_worker_keys: list[ShareKeys] = []


def _init_worker(keys: ShareKeys) -> None:
    _worker_keys[:] = [keys]


def _prepare_batch_sealed(items: list[tuple[str, str, Entry, bytes]]) -> list[str | FogsyncError]:
    return [_prepared_or_error(_worker_keys[0], full, entry, sealed) for _, full, entry, sealed in items]


def _prepared_or_error(keys: ShareKeys, target: str, entry: Entry, sealed: bytes) -> str | FogsyncError:
    try:
        return prepare_sealed(keys, target, entry, sealed)
    except FogsyncError as e:
        return e


def run_all(fn, items, workers: int) -> None:
    """``fn`` over ``items`` on ``workers`` threads; returns when every call has returned."""
    if workers <= 1 or len(items) < 2:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="fogsync-write") as pool:
        for start in range(0, len(items), _BATCH):  # not 50,000 futures alive at once
            for _ in pool.map(fn, items[start : start + _BATCH]):
                pass


# --- applying a merged tree to the share folder ---------------------------------------


def apply(
    repo: Repo, folder: str, known: Mapping[str, Local], local: Mapping[str, Entry],
    target: Mapping[str, Entry], workers: int = WORKERS, processes_min: int = PROCESSES_MIN,
) -> Applied:
    """Make the folder hold ``target`` where it now holds ``local``.

    ``known`` maps each path whose content ``local`` describes to what it
    looked like then (a file's stat when it was read or last synced); only
    such paths are replaced or removed, and only while they still look so.
    Anything else found in the way is left alone and reported in ``left_alone``.
    """
    out = Applied()
    if target is local:  # nobody else committed: the folder holds the target already
        return out
    removals = [p for p, item in known.items() if p not in target or target[p].type != item.type]
    writes = [p for p, e in target.items() if p not in known or not _same(e, local.get(p))]
    present = [p for p in writes if p not in known and os.path.lexists(os.path.join(folder, p))]
    out.left_alone.update(p for p in present if target[p].type != DIR or not os.path.isdir(os.path.join(folder, p)))
    writes = [p for p in writes if p not in out.left_alone]
    sources = _local_sources(folder, known, local) if writes else {}
    blocked = _blocked(writes, known)
    first = [p for p in writes if p not in blocked and p not in known]
    later = [p for p in writes if p in blocked or p in known]
    _write_all(repo, folder, known, target, first, sources, out, workers, processes_min)
    gone = _remove_all(folder, known, removals, out)
    now = {p: item for p, item in known.items() if p not in gone}  # what was removed is expected absent
    _write_all(repo, folder, now, target, later, sources, out, workers, processes_min)
    set_dir_mtimes(folder, target, {parent_of(p) for p in writes + removals} | {
        p for p in writes if target[p].type == DIR})
    return out


def _same(e: Entry, local: Entry | None) -> bool:
    return e is local or e.same_content(local)  # mostly the very same object: nothing to write


def _local_sources(folder: str, known: Mapping[str, Local], local: Mapping[str, Entry]) -> dict[str, str]:
    """sha256 -> a file in the folder that holds that content now."""
    out = {}
    for path, e in local.items():
        if e.type == FILE and e.size and path in known:
            out.setdefault(e.sha256, os.path.join(folder, path))
    return out


def _blocked(writes: list[str], known: Mapping[str, Local]) -> set[str]:
    """New paths that cannot be made before removals: some ancestor is, locally, not a directory."""
    out = set()
    for p in writes:
        parent = parent_of(p)
        while parent:
            item = known.get(parent)
            if item is not None and item.type != DIR:
                out.add(p)
                break
            parent = parent_of(parent)
    return out


def _unchanged(full: str, item: Local | None) -> bool:
    """Whether the path still is what the scan saw (absent if it saw nothing)."""
    try:
        s = os.lstat(full)
    except FileNotFoundError:
        return item is None
    if item is None:
        return False
    if item.type == DIR:
        return os.path.isdir(full) and not os.path.islink(full)
    return Stat(s.st_size, s.st_mtime_ns, s.st_ino) == item.stat


def _real_parent(real_folder: str, full: str, path: str) -> bool:
    """Whether ``path``'s parent is the directory it names in the folder, not reached through a symlink."""
    return os.path.realpath(os.path.dirname(full)) == os.path.normpath(os.path.join(real_folder, parent_of(path)))


def _dir_chain(folder: str, parent: str) -> tuple[tuple[str, int, int], ...]:
    """The folder and each directory down to ``parent``, with the (st_dev, st_ino) lstat finds."""
    paths = [folder]
    for name in parent.split("/") if parent else ():
        paths.append(os.path.join(paths[-1], name))
    return tuple((p, *_lstat_id(p)) for p in paths)


def _same_chain(chain: tuple[tuple[str, int, int], ...]) -> bool:
    """Whether each directory of a ``_dir_chain`` is still there: any symlink or other directory
    put in one's place has another inode. A few lstats, where realpath per file took a fifth of
    a first pull of 50,000 files."""
    try:
        return all(_lstat_id(p) == (dev, ino) for p, dev, ino in chain)
    except OSError:
        return False


def _lstat_id(path: str) -> tuple[int, int]:
    s = os.lstat(path)
    return s.st_dev, s.st_ino


def _write_all(repo, folder, known, target, paths, sources, out: Applied, workers: int, processes_min: int) -> None:
    real_folder = os.path.realpath(folder)
    dirs = sorted(p for p in paths if target[p].type == DIR)
    for d in dirs:
        full = os.path.join(folder, d)
        if os.path.islink(full) or not os.path.isdir(full):
            try:
                if not _real_parent(real_folder, full, d):
                    raise FileExistsError  # a parent was replaced by a symlink: never write through it
                os.makedirs(full)
                out.written += 1
            except (FileExistsError, NotADirectoryError):
                out.skipped.append(d)  # something else is in the way now: the next attempt sees what
            except OSError as e:
                raise LocalError(f"cannot create directory {full}: {e.strerror or e}") from None

    parents: dict[str, bool] = {}  # parent dir -> made and inside the folder (checked once a batch)
    chains: dict[str, tuple] = {}  # parent dir -> the directories that check found (``_dir_chain``)

    def parent_ok(path: str, full: str) -> bool:
        parent = parent_of(path)
        if parent not in parents:
            try:
                os.makedirs(os.path.dirname(full), exist_ok=True)
                chains[parent] = _dir_chain(folder, parent)  # before the check: a swap after it shows
                parents[parent] = _real_parent(real_folder, full, path)
            except (FileExistsError, NotADirectoryError, FileNotFoundError):
                parents[parent] = False  # a parent is no longer a directory
        return parents[parent]

    def checked(path: str) -> str | None:
        """Where to write ``path``; None if it is left alone or its parent is not the folder's own."""
        full = os.path.join(folder, path)
        if path in out.left_alone:
            return None  # _remove_all found it holding what the merge has not seen (ignored files)
        if not parent_ok(path, full):
            out.skipped.append(path)
            return None
        return full

    def prepare_one(path: str) -> tuple[str, str, str] | None:
        full = checked(path)
        if full is None:
            return None
        entry = target[path]
        source = sources.get(entry.sha256) if entry.type == FILE else None
        return path, full, prepare(repo, full, entry, source)

    def prepared_here(paths: list[str], threads: int) -> Iterator[list[tuple[str, str, str]]]:
        for start in range(0, len(paths), _DURABLE_BATCH):
            parents.clear()
            yield _prepare_batch(prepare_one, paths[start : start + _DURABLE_BATCH], threads)

    def place(prepared: tuple[str, str, str]) -> None:
        path, full, tmp = prepared
        try:
            if not _same_chain(chains[parent_of(path)]) or not _unchanged(full, known.get(path)):
                raise FileExistsError  # something else is in the way now: the next attempt sees what
            os.replace(tmp, full)
        except (FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError):
            remove_quietly(tmp)
            out.skipped.append(path)
            return
        except OSError as e:
            remove_quietly(tmp)
            raise LocalError(f"cannot write {full}: {e.strerror or e}") from None
        s = os.lstat(full)
        out.stats[path] = stat_of(target[path], s.st_size, s.st_mtime_ns, s.st_ino)

    before = len(out.stats)
    files = [p for p in paths if target[p].type != DIR]
    sealed = [p for p in files if one_block(target[p]) and target[p].sha256 not in sources]
    sealed = by_block(target, sealed) if worth_processes(len(sealed), workers, processes_min) else []
    chosen = set(sealed)
    rest = [p for p in files if p not in chosen]
    # closing: if a batch fails, the worker processes' files in flight are removed right away
    with contextlib.closing(_prepared_in_processes(repo, target, sealed, checked, parents.clear)) as by_workers:
        here = (prepared_here(group, threads) for group, threads in thread_groups(repo, target, rest, workers))
        for prepared in itertools.chain(by_workers, *here):
            _place_batch(folder, target, prepared, place)
    out.written += len(out.stats) - before  # counted here: writer threads share ``out``


def _place_batch(folder: str, target: Mapping[str, Entry], prepared: list[tuple[str, str, str]], place: Callable) -> None:
    """Make a batch durable, then rename it in, one by one (threads would only fight over the GIL).

    If that fails part way, no temporary file of the batch is left behind.
    """
    done = 0
    try:
        try:
            _make_durable(folder, [tmp for path, _, tmp in prepared if target[path].type == FILE])
        except OSError as e:
            raise LocalError(f"cannot write to {folder}: {e.strerror or e}") from None
        for item in prepared:
            place(item)
            done += 1
    except BaseException:
        for _, _, tmp in prepared[done:]:
            remove_quietly(tmp)
        raise


def _prepared_in_processes(
    repo: Repo, target: Mapping[str, Entry], paths: list[str], checked: Callable[[str], str | None],
    new_batch: Callable[[], None],
) -> Iterator[list[tuple[str, str, str]]]:
    """Batches of (path, full path, temporary file) for one-block files, written by worker processes.

    This process reads each sealed blob from the store; a worker verifies,
    decrypts and writes it, as ``restore`` does. After a failure nothing
    more is sent, the files in flight are waited for and removed, and the
    failure is raised. If the caller stops early (``close``), the files in
    flight are removed too.
    """
    failure: list[FogsyncError] = []

    wanted: deque[tuple[str, str]] = deque()  # (path, full path) whose blob is being read, in order

    def bptrs() -> Iterator[Bptr]:
        for i, path in enumerate(paths):
            if failure:
                return
            if i % _DURABLE_BATCH == 0:
                new_batch()
            full = checked(path)
            if full is not None:
                wanted.append((path, full))
                yield Bptr.unpack(target[path].bptr)

    def items() -> Iterator[tuple[str, str, Entry, bytes]]:
        try:
            for sealed in repo.pieces_ahead(bptrs()):
                path, full = wanted.popleft()
                yield path, full, target[path], sealed
        except FogsyncError as e:  # raised here, it would cut off the answers for what is in flight
            failure.append(e)

    results = map_in_processes(_prepare_batch_sealed, items(), _init_worker, (repo.keys,))
    batch: list[tuple[str, str, str]] = []
    try:
        for (path, full, entry, sealed), tmp in results:
            if tmp is None:  # no worker answered: written here
                tmp = _prepared_or_error(repo.keys, full, entry, sealed)
            if isinstance(tmp, FogsyncError):
                failure.append(tmp)
            elif failure:
                remove_quietly(tmp)
            else:
                batch.append((path, full, tmp))
                if len(batch) == _DURABLE_BATCH:
                    yield batch
                    batch = []
    except GeneratorExit:  # the caller failed on a batch: what is still in flight is not wanted
        failure.append(LocalError("stopped"))
        for _, tmp in results:
            if isinstance(tmp, str):
                remove_quietly(tmp)
        raise
    if failure:
        for _, _, tmp in batch:
            remove_quietly(tmp)
        raise failure[0]
    if batch:
        yield batch


def _make_durable(folder: str, temps: list[str]) -> None:
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


def _prepare_batch(prepare_one, paths: list[str], workers: int) -> list[tuple[str, str, str]]:
    """Temporary files for ``paths`` (None results dropped); if one fails, none is left behind."""
    results: list = []
    failures: list[BaseException] = []

    def guarded(path: str) -> None:
        try:
            results.append(prepare_one(path))
        except BaseException as e:  # handed to the caller once every other temp file is accounted for
            failures.append(e)

    run_all(guarded, paths, workers)
    prepared = [r for r in results if r is not None]
    if failures:
        for _, _, tmp in prepared:
            remove_quietly(tmp)
        raise failures[0]
    return prepared


def _remove_all(folder: str, known: Mapping[str, Local], paths: list[str], out: Applied) -> set[str]:
    """Remove what still looks as it was scanned; returns the paths now gone."""
    gone = set()
    for path in sorted(paths, key=lambda p: (-p.count("/"), p)):
        full = os.path.join(folder, path)
        item = known[path]
        if not _unchanged(full, item):
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
