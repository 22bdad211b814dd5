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
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BATCH = 256  # items per message to a worker
_AHEAD_PER_WORKER = 2  # batches queued per worker, so none waits for the next


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _start_worker(initializer: Callable[..., None], initargs: tuple) -> None:
    # Ctrl-C and a service stop reach the whole process group; the caller
    # decides what happens (it finishes its pass), so workers do not die mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    initializer(*initargs)


def worth_processes(count: int, workers: int, processes_min: int) -> bool:
    """Whether ``count`` small items are worth starting worker processes for, on this machine."""
    return workers > 1 and count >= processes_min and (os.cpu_count() or 1) >= 2


def map_in_processes(
    fn: Callable[[list[T]], list[R]], items: Iterable[T], initializer: Callable[..., None],
    initargs: tuple = (), workers: int | None = None, batch: int = BATCH,
) -> Iterator[tuple[T, R | None]]:
    """``(item, fn's result for it)`` for every item, in order; ``None`` where no worker answered.

    ``items`` is consumed lazily, a few batches ahead of the answers.
    ``fn`` takes a list of items and returns one result per item; it and
    ``initializer`` must be importable module-level functions.
    """
    batches = _batches(items, batch)
    workers = workers or os.cpu_count() or 1
    sent: deque[tuple[list[T], Future | None]] = deque()  # in order, oldest first
    try:
        with ProcessPoolExecutor(
            workers, mp_context=_context(), initializer=_start_worker, initargs=(initializer, initargs)
        ) as pool:
            try:
                for b in itertools.islice(batches, workers * _AHEAD_PER_WORKER):
                    _send(pool, fn, b, sent)
                while sent:
                    results = sent[0][1].result()
                    b, _ = sent.popleft()
                    nxt = next(batches, None)
                    if nxt is not None:
                        _send(pool, fn, nxt, sent)
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


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while b := list(itertools.islice(it, size)):
        yield b
