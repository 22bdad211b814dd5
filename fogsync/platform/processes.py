"""Work spread over worker processes, for Python-bound work on many small items.

Sealing a file of a few KiB, or writing one back, is mostly Python bytecode
(open, stat, read, hash, gzip, seal; or verify, decrypt, write, rename),
which holds the GIL: threads cannot spread it over the cores, processes can.
``map_in_processes`` sends items in batches to a pool of workers and hands
back each item's result in the order given, keeping only a few batches in
flight so memory stays bounded.

Workers start with ``forkserver`` where it exists (never plain ``fork``: the
caller has threads, and a forked child could inherit a lock held by one of
them) and are prepared once by ``initializer``. If the pool cannot start or
breaks, the items not yet answered come back with ``None``: the caller does
them itself, so nothing is lost and nothing is done twice.

A pass that will need workers can ``start_early``: the server they fork from
starts at once and imports what they run while the caller scans, so each
worker starts as a fork of a ready process rather than importing FogSync
itself once the pool is needed.
"""

from __future__ import annotations

import importlib.machinery
import itertools
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BATCH = 256  # items per message to a worker
PROCESSES_MIN = 2000  # this many small items are worth starting worker processes for
AHEAD_PER_WORKER = 2  # batches queued per worker, so none waits for the next


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _start_worker(initializer: Callable[..., None], initargs: tuple, fogsync_file: str) -> None:
    # Ctrl-C and a service stop reach the whole process group; the caller
    # decides what happens (it finishes its pass), so workers do not die mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _fogsync_file() != fogsync_file:
        # Forked from a server that imported another copy of FogSync than the caller runs: this
        # worker must not run it. The pool breaks, and the caller does the work itself.
        raise RuntimeError(f"worker runs FogSync from {_fogsync_file()}, the caller from {fogsync_file}")
    initializer(*initargs)


_TOP = __name__.partition(".")[0]  # the package a forkserver imports: fogsync


def _fogsync_file() -> str:
    return os.path.realpath(sys.modules[_TOP].__file__ or "")


def start_early(modules: Iterable[str]) -> None:
    """Start the server that workers fork from now, importing ``modules`` in it (on a core the
    caller leaves idle while it scans), so that the first pool does not wait for those imports.

    Only where the server, a ``python -c`` in this directory, would import the
    same copy of FogSync as this process; ``_start_worker`` checks it again.
    Nothing happens where the server runs already or workers do not fork from one.
    """
    if _context().get_start_method() != "forkserver" or not _server_imports_ours():
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(modules))
    try:
        multiprocessing.forkserver.ensure_running()
    except OSError:
        pass  # it starts again, without the imports, when a pool needs it; or the pool cannot start


def _server_imports_ours() -> bool:
    """Whether ``import fogsync`` in the server finds this process's copy.

    The server's path is this one's with the current directory first in
    place of this one's first entry (a script's directory, or the directory
    of ``-m``); the import asks the same finders in the same order (an
    editable install's comes after the path).
    """
    try:
        path = [os.getcwd(), *sys.path[1:]]
        for finder in sys.meta_path:
            if finder is importlib.machinery.PathFinder:
                spec = importlib.machinery.PathFinder.find_spec(_TOP, path)
            elif hasattr(finder, "find_spec"):
                spec = finder.find_spec(_TOP, None)
            else:
                continue
            if spec is not None:
                return spec.origin is not None and os.path.realpath(spec.origin) == _fogsync_file()
    except Exception:  # a removed current directory, a finder that fails: only a head start is lost
        return False
    return False


_given: list[tuple] = []  # in a worker: what ``keep_in_worker`` was handed


def keep_in_worker(*values: Any) -> None:
    """An ``initializer`` for ``map_in_processes`` that keeps ``values`` for the worker's ``fn``
    (``worker_given``): a share's keys, sent once a worker rather than once a batch."""
    _given[:] = [values]


def worker_given() -> tuple:
    """In a worker process: the values ``keep_in_worker`` kept."""
    return _given[0]


def worth_processes(count: int, workers: int, processes_min: int = PROCESSES_MIN) -> bool:
    """Whether ``count`` small items are worth starting worker processes for, on this machine."""
    return workers > 1 and count >= processes_min and (os.cpu_count() or 1) >= 2


def map_in_processes(
    fn: Callable[[list[T]], list[R]], items: Iterable[T], initializer: Callable[..., None],
    initargs: tuple = (), workers: int | None = None, batch: int = BATCH, ahead: int = AHEAD_PER_WORKER,
) -> Iterator[tuple[T, R | None]]:
    """``(item, fn's result for it)`` for every item, in order; ``None`` where no worker answered.

    ``items`` is consumed lazily, ``ahead`` batches per worker ahead of the
    answers: more for a caller that does long stretches of its own work
    between answers, so that the workers do not wait for it; what ``items``
    raises is raised here. ``fn`` takes a list of items and returns one result per item; it and
    ``initializer`` must be importable module-level functions.
    """
    try:
        yield from _answered(fn, _batches(items, batch), initializer, initargs, workers or os.cpu_count() or 1, ahead)
    except _ItemsFailed as e:
        raise e.__cause__ from None


def _answered(
    fn: Callable, batches: Iterator[list[T]], initializer: Callable[..., None], initargs: tuple, workers: int,
    ahead: int,
) -> Iterator[tuple[T, R | None]]:
    sent: deque[tuple[list[T], Future | None]] = deque()  # in order, oldest first
    try:
        with ProcessPoolExecutor(
            workers, mp_context=_context(), initializer=_start_worker,
            initargs=(initializer, initargs, _fogsync_file()),
        ) as pool:
            try:
                for b in itertools.islice(batches, workers * ahead):
                    _send(pool, fn, b, sent)
                while sent:
                    results = sent[0][1].result()
                    b, _ = sent.popleft()
                    nxt = next(batches, None)
                    try:
                        if nxt is not None:
                            _send(pool, fn, nxt, sent)
                    except (BrokenProcessPool, OSError):
                        yield from zip(b, results)  # answered before the pool broke: not lost with it
                        raise
                    yield from zip(b, results)
            finally:
                for _, future in sent:  # the caller stopped early: do not wait for work nobody takes
                    if future is not None:
                        future.cancel()
    except (BrokenProcessPool, OSError):
        pass  # the pool broke or could not start: what is left comes back unanswered
    for b in itertools.chain((b for b, _ in sent), batches):
        for item in b:
            yield item, None


def _send(pool: ProcessPoolExecutor, fn: Callable, b: list, sent: deque) -> None:
    sent.append((b, None))  # in the queue before submit can fail, so it is handed back then
    sent[-1] = (b, pool.submit(fn, b))


class _ItemsFailed(Exception):
    """The caller's items raised (their ``__cause__``): not to be taken for the pool breaking, which
    an OSError would be, and the items after it handed back unanswered."""


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while True:
        try:
            b = list(itertools.islice(it, size))
        except Exception as e:
            raise _ItemsFailed() from e
        if not b:
            return
        yield b
