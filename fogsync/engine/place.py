"""Place: batches of prepared files made durable, then renamed into place.

This module adds what ``pull`` does with files ``prepare`` wrote under
temporary names: a batch is prepared on threads with nothing left behind
if one fails (``prepare_batch``), made durable at once and renamed in one
by one (``place_batch``), on a thread of its own while the next batch is
written (``Placer``). What must still hold at each rename is the caller's
``place``.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Mapping, NamedTuple

from fogsync.engine.prepare import remove_quietly, run_all
from fogsync.errors import LocalError
from fogsync.folder.guarded import Dirs
from fogsync.format.tree import FILE, Entry


class Prepared(NamedTuple):
    """A file ready to rename into place."""

    path: str
    full: str
    tmp: str
    parent: tuple[int, int]  # (st_dev, st_ino) of the directory it was written in, as its check found
    stat: tuple[int, int, int]  # its (size, mtime_ns, inode), which the rename keeps


class Placer:
    """Batches made durable and renamed into place on a thread of their own, in order.

    A batch's ``syncfs`` waits for the disk: meanwhile the caller goes on
    collecting the next batch, and the worker processes go on writing it.
    An error in placing is raised at the caller's next ``put``, or on
    leaving; from then on, and once the caller fails, batches still queued
    are not placed, and their temporary files are removed.
    """

    def __init__(self, place_batch: Callable[[list[Prepared]], None]) -> None:
        self._place_batch = place_batch
        self._queue: queue.Queue[list[Prepared] | None] = queue.Queue(maxsize=1)  # one batch waits at most
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fogsync-place", daemon=True)

    def __enter__(self) -> "Placer":
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stopping = exc_type is not None
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error

    def put(self, prepared: list[Prepared]) -> None:
        if self._error is not None:
            remove_temps(prepared)
            raise self._error
        self._queue.put(prepared)

    def _run(self) -> None:
        while (prepared := self._queue.get()) is not None:
            if self._error is not None or self._stopping:
                remove_temps(prepared)
                continue
            try:
                self._place_batch(prepared)
            except BaseException as e:  # raised in the caller's thread
                self._error = e


def remove_temps(prepared: list[Prepared]) -> None:
    for p in prepared:
        remove_quietly(p.tmp)


def place_batch(
    folder: str, target: Mapping[str, Entry], prepared: list[Prepared], place: Callable, durable: Callable,
) -> None:
    """Make a batch durable, then rename it in, one by one (threads would only fight over the GIL).

    If that fails part way, no temporary file of the batch is left behind.
    """
    done = 0
    try:
        try:
            durable(folder, [p.tmp for p in prepared if target[p.path].type == FILE])
        except OSError as e:
            raise LocalError(f"cannot write to {folder}: {e.strerror or e}") from None
        with Dirs(folder) as dirs:
            for item in prepared:
                place(item, dirs)
                done += 1
    except BaseException:
        remove_temps(prepared[done:])
        raise


def prepare_batch(prepare_one, paths: list[str], workers: int) -> list[Prepared]:
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
        remove_temps(prepared)
        raise failures[0]
    return prepared
