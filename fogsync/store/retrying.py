"""A store that retries what may pass: the wrapper every share's store is opened behind.

A backend raises ``TransientStoreError`` for a failure worth another try (a
reset or timed-out connection, a 500/503/SlowDown, a body cut off while it
was read, EINTR/EAGAIN on a network file system). ``RetryingStore`` tries
such a call again after a capped exponential backoff with jitter (so many
clients that failed together do not come back together), until it succeeds,
fails for good, or the next wait would pass the call's deadline; then it
raises a ``StoreError`` that says how many attempts it made. A SwapConflict,
an ObjectNotFound or any other StoreError is the answer, and is raised at
once.

A compare-and-swap whose reply was lost may have landed: when its retry
then loses, the head is read back, and if it holds exactly the bytes this
call wrote, the swap was this call's own (heads are unique bytes: a sealed
blob with a fresh nonce) and its tag is returned instead of a SwapConflict.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Iterator, TypeVar

from fogsync.errors import StoreError, SwapConflict, TransientStoreError
from fogsync.store.base import ObjectInfo, Store, Versioned
from fogsync.store.wrapper import Wrapper

__all__ = ["RetryingStore", "Backoff"]

T = TypeVar("T")


class Backoff:
    """When to try again: capped exponential waits with jitter, within a deadline per call.

    The n-th wait is ``min(cap, base * 2**(n-1))`` scaled by a random factor
    in [0.5, 1) ("equal jitter": never no wait, never in lockstep).
    ``sleep``, ``clock`` and ``random`` are injectable for tests.
    """

    def __init__(
        self, *, base: float = 0.1, cap: float = 5.0, deadline: float = 120.0, max_attempts: int = 12,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.base, self.cap, self.deadline, self.max_attempts = base, cap, deadline, max_attempts
        self.sleep, self.clock, self.random = sleep, clock, random

    def wait(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1 for the first)."""
        return min(self.cap, self.base * 2 ** (attempt - 1)) * (0.5 + self.random() / 2)


class RetryingStore(Wrapper):
    """``inner``, with every call that fails transiently tried again (see the module docstring)."""

    def __init__(self, inner: Store, backoff: Backoff | None = None) -> None:
        super().__init__(inner)
        self.backoff = backoff or Backoff()
        self.retries = 0  # attempts after a transient failure, over this store's life (for tests and logs)

    def get(self, key: str) -> bytes:
        return self._retried(lambda: self.inner.get(key))

    def put(self, key: str, data: bytes) -> None:
        self._retried(lambda: self.inner.put(key, data))

    def exists(self, key: str) -> bool:
        return self._retried(lambda: self.inner.exists(key))

    def list(self, prefix: str) -> Iterator[str]:
        """The whole listing, fetched (and retried) as one call: a listing cut off part way starts over."""
        return iter(self._retried(lambda: list(self.inner.list(prefix))))

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Like ``list``: the whole listing as one call, started over if cut off."""
        return iter(self._retried(lambda: list(self.inner.list_objects(prefix))))

    def delete(self, key: str) -> None:
        self._retried(lambda: self.inner.delete(key))

    def get_versioned(self, key: str, unless_tag: str | None = None) -> Versioned | None:
        return self._retried(lambda: self.inner.get_versioned(key, unless_tag))

    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        uncertain = []  # a failed attempt that may have landed

        def attempt() -> str:
            try:
                return self.inner.put_if(key, data, expected_tag)
            except TransientStoreError:
                uncertain.append(True)
                raise
            except SwapConflict:
                if uncertain:
                    return self._own_write(key, data)
                raise

        return self._retried(attempt)

    def flush(self) -> None:
        self._retried(self.inner.flush)

    def _own_write(self, key: str, data: bytes) -> str:
        """The tag of ``key`` if it holds exactly ``data`` (our earlier attempt landed), else SwapConflict."""
        current = self.inner.get_versioned(key)
        if current is not None and current.data == data:
            return current.tag
        raise SwapConflict(f"{key} in {self.url} changed since it was read")

    def _retried(self, call: Callable[[], T]) -> T:
        b = self.backoff
        start = b.clock()
        attempt = 1
        while True:
            try:
                return call()
            except TransientStoreError as e:
                pause = b.wait(attempt)
                spent = b.clock() - start
                if attempt >= b.max_attempts or spent + pause > b.deadline:
                    raise StoreError(f"{e} (gave up after {attempt} attempts in {spent:.1f} s)") from e
                b.sleep(pause)
                attempt += 1
                self.retries += 1
