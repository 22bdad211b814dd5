"""Restore: a tree written into an empty directory (``fogsync restore --to``).

This layer adds the restorer beside ``pull``: nothing is in the way in an
empty directory, so each file is renamed into place as soon as its content
has verified, with no stat to compare first. Files are written the way
``pull`` writes them (``prepare``: a temporary name, the tag and sha256
checked, mtime and mode set); 2,000 or more one-block files go to worker processes, which
verify, decrypt, write and rename them from sealed bytes this process reads,
since that work is Python holding the GIL. Meanwhile a thread writes the
bigger files, whose decryption runs outside the GIL, on what cores the
workers leave idle.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Mapping

from fogsync.engine.prepare import (
    WORKERS,
    prepare,
    prepare_sealed,
    remove_quietly,
    run_all,
    set_dir_mtimes,
    split_work,
)
from fogsync.engine.progress import NO_PROGRESS, RESTORING, Progress
from fogsync.errors import FogsyncError, LocalError
from fogsync.format.blocks import Bptr
from fogsync.format.crypto import ShareKeys
from fogsync.format.tree import DIR, Entry
from fogsync.platform.processes import (
    PROCESSES_MIN,
    keep_in_worker,
    map_in_processes,
    worker_given,
)
from fogsync.repo.repository import Repo


def restore(
    repo: Repo, tree: Mapping[str, Entry], dest: str, workers: int = WORKERS, processes_min: int = PROCESSES_MIN,
    progress: Progress = NO_PROGRESS,
) -> int:
    """Write ``tree`` into ``dest`` (empty or absent). Returns the number of entries written.

    ``progress`` counts the files (and their bytes) written, not the directories.
    """
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise LocalError(f"restore target {dest} is not empty")
    dirs = sorted(p for p, e in tree.items() if e.type == DIR)
    for d in dirs:
        os.makedirs(os.path.join(dest, d), exist_ok=True)

    failed = threading.Event()

    def one(path: str) -> None:
        if failed.is_set():
            return  # the restore has failed already: the files still to come are not worth writing
        target = os.path.join(dest, path)
        progress.current = path
        _place(prepare(repo, target, tree[path]), target)
        progress.add(1, tree[path].size or 0)

    files = [p for p, e in tree.items() if e.type != DIR]
    progress.phase(RESTORING, len(files), sum(tree[p].size or 0 for p in files))
    small, groups = split_work(repo, tree, files, workers, processes_min)

    def the_rest() -> None:
        for group, threads in groups:
            run_all(one, group, threads)

    if small:
        # The bigger files, decrypted outside the GIL, meanwhile: the cores the workers leave idle.
        with ThreadPoolExecutor(1, thread_name_prefix="fogsync-restore") as side:
            rest = side.submit(the_rest)
            try:
                _restore_in_processes(repo, tree, dest, small, progress)
            except BaseException:
                failed.set()
                raise
            rest.result()
    else:
        the_rest()
    set_dir_mtimes(dest, tree, dirs)
    return len(tree)


def _place(tmp: str, target: str) -> None:
    """Rename a prepared file into place (nothing is there to check first)."""
    try:
        os.replace(tmp, target)
    except OSError as e:
        remove_quietly(tmp)
        raise LocalError(f"cannot write {target}: {e.strerror or e}") from None


def _restore_in_processes(
    repo: Repo, tree: Mapping[str, Entry], dest: str, paths: list[str], progress: Progress = NO_PROGRESS,
) -> None:
    def items() -> Iterator[tuple[str, Entry, bytes]]:
        sealed = repo.pieces_ahead(Bptr.unpack(tree[p].bptr) for p in paths)
        for p, data in zip(paths, sealed):
            yield os.path.join(dest, p), tree[p], data

    prefix = len(os.path.join(dest, ""))
    for item, result in map_in_processes(_restore_batch, items(), keep_in_worker, (repo.keys,)):
        if result is None:  # no worker answered: write it here
            result = _restore_sealed(repo.keys, *item)
        if result is not True:
            raise result
        progress.current = item[0][prefix:]  # the path in the share, as the threads show it
        progress.add(1, item[1].size or 0)


# --- in a worker process --------------------------------------------------------------

def _restore_batch(items: list[tuple[str, Entry, bytes]]) -> list[bool | FogsyncError]:
    (keys,) = worker_given()
    return [_restore_sealed(keys, *item) for item in items]


def _restore_sealed(keys: ShareKeys, target: str, entry: Entry, sealed: bytes) -> bool | FogsyncError:
    """Write one small file from its sealed blob; the error instead of raising, to hand it back."""
    try:
        _place(prepare_sealed(keys, target, entry, sealed), target)
        return True
    except FogsyncError as e:
        return e
