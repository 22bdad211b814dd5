"""S3 failures that may pass are TransientStoreError, and RetryingStore rides them out (issue 22, case 8).

Through a fault proxy of our own between the S3 backend and moto's server,
with botocore's own retries off, so each fault reaches fogsync's translation.
"""

from __future__ import annotations

import pytest
from faultproxy import FaultProxy

from fogsync.errors import ObjectNotFound, StoreError, TransientStoreError
from fogsync.store.retrying import Backoff, RetryingStore
from fogsync.store.s3 import S3Store


@pytest.fixture
def proxy(moto_server):
    with FaultProxy(moto_server, period=0, late_seconds=0.0) as p:
        yield p


@pytest.fixture
def s3(s3_url, proxy):
    store = S3Store(s3_url, endpoint_url=proxy.url, max_attempts=0)
    store.put("k", b"x" * 100_000)
    yield store
    store.close()


@pytest.mark.parametrize("kind, words", [
    ("cut", "ResponseStreamingError"),
    ("reset", "failed"),
    ("500", "InternalError"),
    ("503", "SlowDown"),
])
def test_each_fault_on_a_get_is_transient_and_retried(s3, proxy, kind, words):
    proxy.then(kind)
    with pytest.raises(TransientStoreError, match=words):
        s3.get("k")
    proxy.then(kind)
    store = RetryingStore(s3, Backoff(sleep=lambda s: None))
    assert store.get("k") == b"x" * 100_000 and store.retries == 1
    assert proxy.counts[kind] == 2


def test_a_cut_body_of_a_head_read_is_transient(s3, proxy):
    proxy.then("cut")
    with pytest.raises(TransientStoreError):
        s3.get_versioned("k")


def test_a_swap_whose_reply_was_reset_after_it_landed_returns_its_own_tag(s3, proxy):
    first = s3.put_if("head", b"one", None)
    proxy.then("reset")  # the swap reaches moto; its reply is lost
    store = RetryingStore(s3, Backoff(sleep=lambda s: None))
    tag = store.put_if("head", b"two", first)
    assert s3.get_versioned("head").data == b"two" and s3.get_versioned("head").tag == tag
    assert store.retries == 1 and proxy.counts["reset"] == 1


def test_permanent_answers_are_not_transient(s3, proxy):
    with pytest.raises(ObjectNotFound):
        RetryingStore(s3).get("absent")
    wrong = S3Store("s3://no-such-bucket-fogsync/p", endpoint_url=proxy.url, max_attempts=0)
    with pytest.raises(StoreError, match="no such bucket") as e:
        wrong.get("k")
    assert not isinstance(e.value, TransientStoreError)
    wrong.close()


def test_an_endpoint_that_cannot_be_reached_is_said_at_once_not_retried(proxy):
    proxy.stop()  # nothing listens on its port any more
    store = S3Store("s3://b/p", endpoint_url=proxy.url, max_attempts=0, connect_timeout=2)
    with pytest.raises(StoreError, match="cannot reach S3 endpoint") as e:
        RetryingStore(store, Backoff(sleep=lambda s: pytest.fail("retried"))).get("k")
    assert not isinstance(e.value, TransientStoreError)
    store.close()
