"""Thread pools shared by the whole process: made on first use, forgotten in a forked child.

Sealing, hashing, block reads and big-blob chunks each run on one pool that
every caller shares, so the number of threads stays bounded however many
blobs are in flight. A forked child (a worker process) starts without the
parent's threads, so it makes its own pool when it first needs one.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class SharedPool:
    """``pool()`` is one ``ThreadPoolExecutor`` of ``workers`` threads named ``name``-N."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers, self._name = workers, name
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._forget)

    def __call__(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix=self._name)
                pool = self._pool
        return pool

    def _forget(self) -> None:
        self._pool = None
        self._lock = threading.Lock()  # it may have been held at fork time
