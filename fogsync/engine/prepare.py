"""Prepare: one entry of a tree written from the store under a temporary name, verified.

This layer adds the writing of one file the way every writer here does it
(``pull`` into a share folder, ``restore`` into an empty directory): under a
temporary name beside its place (``.fogsync-tmp-*``), from a blob whose tag
verifies, checked against the listing's size and sha256, given its mtime
and exec bit, and handed back ready to rename; content already in the
folder is copied locally instead of fetched. It also says how many threads
should write which files (``thread_groups``). Where the file goes, and what
must still hold when it is renamed, is the callers' business.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Container, Iterator, Mapping

from fogsync.errors import FormatError, IntegrityError, ListingMismatch, LocalError
from fogsync.folder.ignore import TEMP_FILE_PREFIX
from fogsync.format import crypto
from fogsync.format.blocks import Bptr
from fogsync.format.crypto import ShareKeys
from fogsync.format.tree import DIR, FILE, SYMLINK, Entry
from fogsync.platform.directio import DirectWriter
from fogsync.platform.processes import PROCESSES_MIN, worth_processes
from fogsync.platform.sizes import FILE_PIECE
from fogsync.repo import bigblob
from fogsync.repo.repository import Repo, by_block

_BATCH = 256
WORKERS = 4  # files written at once


# --- writing one entry ------------------------------------------------------------


_TEMP_TOKEN = secrets.token_hex(4)
_temp_serial = itertools.count()


def _temp_name(dest: str) -> str:
    """A name beside ``dest`` that no other writer uses: pid, token and serial.

    The pid is read at each call: worker processes forked from a process
    that had imported this module share its token and its serial count.
    """
    return os.path.join(os.path.dirname(dest), f"{TEMP_FILE_PREFIX}{os.getpid()}-{_TEMP_TOKEN}-{next(_temp_serial)}")


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
        _write_checked(tmp, repo.streamed(entry.bptr, dest, size=entry.size), entry)


def _write_big(repo: Repo, tmp: str, entry: Entry, dest: str) -> None:
    """A big file, decrypted a chunk per core (``bigblob``), hashed and written in order."""
    with DirectWriter(tmp, entry.size) as f:
        sha, n = repo.open_into(entry.bptr, dest, f.write, size=entry.size)
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
        raise ListingMismatch(f"content does not match its listing (size {n} vs {entry.size}, or sha256)")


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
        yield from iter(lambda: f.read(FILE_PIECE), b"")


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


# --- writing many: thread groups ---------------------------------------------------


def one_block(e: Entry) -> bool:
    """A non-empty file whose sealed blob fits in one block: a job for a worker process."""
    return e.type == FILE and e.size > 0 and Bptr.unpack(e.bptr).depth == 0


def thread_groups(
    repo: Repo, tree: Mapping[str, Entry], paths: list[str], workers: int,
) -> list[tuple[list[str], int]]:
    """``paths`` in groups, each with how many threads should write it.

    Over a network each read is a round trip: ``workers`` threads for all.
    On a local store a file of one block or none is Python holding the GIL,
    written best by one thread (more threads only fight over the GIL); a
    bigger one is decrypted outside the GIL and, from 1 MiB, written
    ``O_DIRECT``, which waits for the disk: ``workers`` threads keep the
    cores busy meanwhile.
    """
    if repo.store.read_concurrency > 2:
        return [(paths, workers)]
    big = [p for p in paths if tree[p].type == FILE and tree[p].size > 0 and not one_block(tree[p])]
    chosen = set(big)
    return [(big, workers), ([p for p in paths if p not in chosen], 1)]


def split_work(
    repo: Repo, tree: Mapping[str, Entry], files: list[str], workers: int,
    processes_min: int = PROCESSES_MIN, copied: Container[str] = (),
) -> tuple[list[str], list[tuple[list[str], int]]]:
    """``files`` split between worker processes and thread groups: (for the processes, in block
    order; the rest as ``thread_groups``).

    Many one-block files are Python holding the GIL: worker processes write
    them, when there are enough of them to pay for starting the workers.
    Content in ``copied`` (sha256s) is copied from the folder, not fetched:
    it stays with the threads.
    """
    small = [p for p in files if one_block(tree[p]) and tree[p].sha256 not in copied]
    small = by_block(tree, small) if worth_processes(len(small), workers, processes_min) else []
    chosen = set(small)
    return small, thread_groups(repo, tree, [p for p in files if p not in chosen], workers)


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
