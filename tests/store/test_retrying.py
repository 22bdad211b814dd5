"""RetryingStore: what may pass is tried again, with backoff, within a deadline; nothing else is (issue 22, case 8)."""

from __future__ import annotations

import errno
import os

import pytest

from fogsync.errors import ObjectNotFound, StoreError, SwapConflict, TransientStoreError
from fogsync.store.faulty import FaultyStore
from fogsync.store.local import LocalStore
from fogsync.store.memory import MemoryStore
from fogsync.store.retrying import Backoff, RetryingStore

KEY = "s/blocks/ab/ab01"


class Clock:
    """A clock that moves only when the store sleeps: the test sees every wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def retrying(inner, clock: Clock, jitter: float = 0.0, **kw) -> RetryingStore:
    backoff = Backoff(sleep=clock.sleep, clock=lambda: clock.now, random=lambda: jitter, **kw)
    return RetryingStore(inner, backoff)


def flaky(message: str = "connection reset") -> TransientStoreError:
    return TransientStoreError(message)


@pytest.mark.parametrize("op, call", [
    ("get", lambda s: s.get(KEY)),
    ("put", lambda s: s.put(KEY, b"y")),
    ("exists", lambda s: s.exists(KEY)),
    ("list", lambda s: list(s.list("s/"))),
    ("delete", lambda s: s.delete(KEY)),
    ("get_versioned", lambda s: s.get_versioned(KEY)),
    ("put_if", lambda s: s.put_if("s/head", b"h", None)),
    ("flush", lambda s: s.flush()),
])
def test_each_operation_is_retried_after_transient_failures(op, call):
    faulty = FaultyStore(MemoryStore())
    faulty.inner.put(KEY, b"x")
    faulty.fail_on(op, flaky(), times=3)
    clock = Clock()
    store = retrying(faulty, clock)
    call(store)
    assert faulty.failed == 3 and store.retries == 3 and len(clock.waits) == 3


def test_waits_grow_exponentially_to_a_cap_with_jitter():
    faulty = FaultyStore(MemoryStore())
    faulty.put(KEY, b"x")
    faulty.fail_on("get", flaky(), times=7)
    clock = Clock()
    assert retrying(faulty, clock, base=0.1, cap=1.0, max_attempts=20).get(KEY) == b"x"
    assert clock.waits == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5])  # random() = 0: half of each
    jittered = Clock()
    faulty.fail_on("get", flaky(), times=2)
    retrying(faulty, jittered, jitter=0.999, base=0.1, cap=1.0).get(KEY)
    assert jittered.waits == pytest.approx([0.09995, 0.1999])


def test_gives_up_at_the_deadline_with_the_attempt_count():
    faulty = FaultyStore(MemoryStore())
    faulty.fail_on("get", flaky("S3 get s3://b/k failed: ResponseStreamingError"), times=None)
    clock = Clock()
    with pytest.raises(StoreError) as e:
        retrying(faulty, clock, base=1.0, cap=4.0, deadline=10.0).get(KEY)
    assert not isinstance(e.value, TransientStoreError)  # given up: an outer retry must not start over
    assert "ResponseStreamingError" in str(e.value) and "gave up after 7 attempts in 9.5 s" in str(e.value)
    assert clock.waits == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0] and clock.now <= 10.0  # a seventh wait would pass 10 s


def test_gives_up_after_max_attempts():
    faulty = FaultyStore(MemoryStore())
    faulty.fail_on("put", flaky(), times=None)
    with pytest.raises(StoreError, match="gave up after 3 attempts"):
        retrying(faulty, Clock(), max_attempts=3).put(KEY, b"x")
    assert faulty.calls["put"] == 3


@pytest.mark.parametrize("error", [
    SwapConflict("head changed"), ObjectNotFound("gone"), StoreError("access denied: S3 get"),
    StoreError("no such bucket: b"),
])
def test_answers_are_not_retried(error):
    faulty = FaultyStore(MemoryStore())
    faulty.fail_on("get", error, times=None)
    clock = Clock()
    store = retrying(faulty, clock)
    with pytest.raises(type(error)):
        store.get(KEY)
    assert faulty.calls["get"] == 1 and clock.waits == [] and store.retries == 0


def test_a_swap_whose_reply_was_lost_but_landed_is_not_a_false_conflict():
    faulty = FaultyStore(MemoryStore())
    first = faulty.put_if("s/head", b"one", None)
    faulty.fail_on("put_if", flaky("connection reset"), landed=True)
    tag = retrying(faulty, Clock()).put_if("s/head", b"two", first)
    assert faulty.inner.get_versioned("s/head").data == b"two" and faulty.inner.get_versioned("s/head").tag == tag


def test_a_swap_that_lost_to_another_writer_after_a_transient_failure_is_still_a_conflict():
    faulty = FaultyStore(MemoryStore())
    first = faulty.put_if("s/head", b"one", None)
    faulty.put_if("s/head", b"other host", first)  # another writer got there first
    faulty.fail_on("put_if", flaky())
    with pytest.raises(SwapConflict):
        retrying(faulty, Clock()).put_if("s/head", b"two", first)
    assert faulty.inner.get("s/head") == b"other host"


def test_a_swap_conflict_without_a_transient_failure_is_raised_at_once():
    faulty = FaultyStore(MemoryStore())
    faulty.put_if("s/head", b"one", None)
    with pytest.raises(SwapConflict):
        retrying(faulty, Clock()).put_if("s/head", b"one", None)  # same bytes, but no attempt was lost
    assert faulty.calls["get_versioned"] == 0


@pytest.mark.parametrize("code", [errno.EINTR, errno.EAGAIN])
def test_the_local_store_marks_eintr_and_eagain_transient(tmp_path, monkeypatch, code):
    store = LocalStore(str(tmp_path))
    store.put(KEY, b"x")
    real_read, failures = os.read, [2]

    def interrupted_read(fd, n):
        if failures[0]:
            failures[0] -= 1
            raise OSError(code, os.strerror(code))
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", interrupted_read)
    with pytest.raises(TransientStoreError, match="it may pass"):
        store.get(KEY)
    clock = Clock()
    assert retrying(store, clock).get(KEY) == b"x" and len(clock.waits) == 1
