"""Moving blocks: a bounded pool of uploads, a cache of partial blocks, reads fetched ahead.

``Uploads`` keeps a fixed number of ``store.put`` calls in flight and
reports the first failure at ``wait``; ``BlockCache`` keeps recently read
partial blocks (the tails of many files share one); ``fetched_ahead`` runs
a fetch a few items ahead of the reader on a shared pool.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

from fogsync.platform.threads import SharedPool
from fogsync.store.base import Store

_READ_WORKERS = 16


class Uploads:
    """A bounded pool of concurrent ``store.put`` calls; the first error is raised by ``wait``.

    With ``workers=0`` each put runs in the calling thread and raises there
    (a local file write costs less than the hand-off to another thread).
    """

    def __init__(self, store: Store, workers: int = 16, depth: int = 64) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fogsync-put") if workers else None
        self._cond = threading.Condition()
        self._in_flight = 0
        self._depth = depth
        self._error: BaseException | None = None

    def put(self, key: str, data: bytes) -> None:
        if self._pool is None:
            self._store.put(key, data)
            return
        with self._cond:
            while self._in_flight >= self._depth and self._error is None:
                self._cond.wait()
            self._raise_error()
            self._in_flight += 1
        self._pool.submit(self._run, key, data)

    def wait(self) -> None:
        with self._cond:
            while self._in_flight:
                self._cond.wait()
            self._raise_error()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _run(self, key: str, data: bytes) -> None:
        try:
            self._store.put(key, data)
        except BaseException as e:  # handed to the committing thread by wait()
            with self._cond:
                self._error = self._error or e
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


class BlockCache:
    """The last few blocks read, by hash: partial blocks are read once per file they hold."""

    def __init__(self, limit: int = 1024) -> None:  # partial blocks only: at most 64 MiB
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, h: bytes) -> bytes | None:
        with self._lock:
            data = self._items.get(h)
            if data is not None:
                self._items.move_to_end(h)
            return data

    def add(self, h: bytes, data: bytes) -> None:
        with self._lock:
            self._items[h] = data
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


_reader_pool = SharedPool(_READ_WORKERS, "fogsync-get")  # fetch blocks ahead of every blob being read


def fetched_ahead(fetch: Callable, items: Iterable, ahead_n: int) -> Iterator:
    """``fetch(item)`` for each item, in order, with up to ``ahead_n`` running on the reader pool."""
    pool, items = _reader_pool(), iter(items)
    ahead = deque(pool.submit(fetch, item) for item in itertools.islice(items, max(1, ahead_n)))
    try:
        while ahead:
            result = ahead.popleft().result()
            nxt = next(items, None)
            if nxt is not None:
                ahead.append(pool.submit(fetch, nxt))
            yield result
    finally:
        for future in ahead:
            future.cancel()
