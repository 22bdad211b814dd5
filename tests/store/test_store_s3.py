"""S3Store specifics, against a moto server over HTTP (see conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import boto3
import pytest

from fogsync.errors import ConfigError
from fogsync.store import ObjectNotFound, StoreError, SwapConflict, open_store
from fogsync.store.s3 import S3Store

HEAD = "share1/head"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raw_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint)


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    bucket, _, prefix = url[len("s3://"):].partition("/")
    return bucket, prefix


def test_unreachable_endpoint_fails_fast(moto_server):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3Store("s3://some-bucket/p", endpoint_url=endpoint, max_attempts=2, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"cannot reach S3 endpoint {endpoint}") as caught:
        store.get("share1/head")
    assert time.monotonic() - started < 10
    assert not isinstance(caught.value, ObjectNotFound)
    assert "\n" not in str(caught.value)


def test_no_such_bucket_names_the_bucket(moto_server):
    store = S3Store("s3://fogsync-absent-bucket/p", endpoint_url=moto_server)
    for call in (
        lambda: store.put("k", b"x"),
        lambda: store.get("k"),
        lambda: store.put_if(HEAD, b"x", None),
        lambda: list(store.list("")),
    ):
        with pytest.raises(StoreError, match="no such bucket: fogsync-absent-bucket") as caught:
            call()
        assert not isinstance(caught.value, (ObjectNotFound, SwapConflict))


def test_no_credentials(moto_server, monkeypatch):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    store = S3Store("s3://some-bucket/p", endpoint_url=moto_server)
    with pytest.raises(StoreError, match="no usable AWS credentials for s3://some-bucket/p/k"):
        store.get("k")


def test_conditional_get_sends_if_none_match(s3_url):
    store = S3Store(s3_url)
    tag = store.put_if(HEAD, b"root 1", None)
    sent = []
    store._client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: sent.append(request.headers.get("If-None-Match"))
    )
    assert store.get_versioned(HEAD, unless_tag=tag) is None
    assert sent == [tag.encode()] or sent == [tag]
    bucket, prefix = _bucket_and_prefix(s3_url)
    _raw_client(store.endpoint_url).put_object(Bucket=bucket, Key=f"{prefix}/{HEAD}", Body=b"root 2")
    changed = store.get_versioned(HEAD, unless_tag=tag)
    assert changed is not None and changed.data == b"root 2" and changed.tag != tag


def test_keys_live_under_the_prefix(s3_url):
    store = S3Store(s3_url)
    bucket, prefix = _bucket_and_prefix(s3_url)
    raw = _raw_client(store.endpoint_url)
    store.put("share1/blocks/ab/ab01", b"x")
    raw.put_object(Bucket=bucket, Key="elsewhere/share1/blocks/ab/ab02", Body=b"y")
    assert raw.get_object(Bucket=bucket, Key=f"{prefix}/share1/blocks/ab/ab01")["Body"].read() == b"x"
    assert list(store.list("share1/")) == ["share1/blocks/ab/ab01"]
    whole_bucket = S3Store(f"s3://{bucket}")
    assert sorted(whole_bucket.list("")) == ["elsewhere/share1/blocks/ab/ab02", f"{prefix}/share1/blocks/ab/ab01"]
    assert whole_bucket.get(f"{prefix}/share1/blocks/ab/ab01") == b"x"


def test_endpoint_precedence(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert S3Store("s3://b-x/p").endpoint_url == "http://127.0.0.1:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    assert S3Store("s3://b-x/p").endpoint_url == "http://127.0.0.1:2"
    assert S3Store("s3://b-x/p", endpoint_url="http://127.0.0.1:3").endpoint_url == "http://127.0.0.1:3"
    assert open_store("s3://b-x/p", endpoint_url="http://127.0.0.1:4").endpoint_url == "http://127.0.0.1:4"


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "http://bucket/x"])
def test_bad_urls(url):
    with pytest.raises(ConfigError):
        S3Store(url)


def test_subprocess_reaches_the_server_through_the_environment(s3_url):
    S3Store(s3_url).put("share1/blocks/ab/ab01", b"from parent")
    code = (
        "import sys; from fogsync.store import open_store; "
        "sys.stdout.write(open_store(sys.argv[1]).get('share1/blocks/ab/ab01').decode())"
    )
    result = subprocess.run([sys.executable, "-c", code, s3_url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from parent"


def test_importing_the_store_package_does_not_import_boto3():
    code = (
        "import sys, fogsync, fogsync.store; fogsync.store.open_store('memory://x'); "
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _retrying_the_first_put() -> boto3.session.Session:
    """A session whose clients retry a PutObject's first attempt, as if its response was lost.

    The first attempt reaches the server and lands (or fails) as it would; the
    client then sends it again, as botocore does after a timeout or a 5xx.
    """
    session = boto3.session.Session()

    def needs_retry(attempts: int, **kwargs) -> float | None:
        return 0 if attempts == 1 else None

    session.events.register("needs-retry.s3.PutObject", needs_retry)
    return session


def test_retried_swap_that_landed_counts_as_won(s3_url):
    store = S3Store(s3_url, session=_retrying_the_first_put())
    tag = store.put_if(HEAD, b"v1", None)  # the retry of a create meets its own object: 412
    assert store.get_versioned(HEAD).tag == tag
    new_tag = store.put_if(HEAD, b"v2 unique", tag)  # the retry's If-Match names the old tag: 412
    assert store.get_versioned(HEAD).tag == new_tag
    assert new_tag != tag


def test_a_conflict_without_retry_is_a_conflict_even_with_equal_bytes(s3_url):
    store, other = S3Store(s3_url), S3Store(s3_url)
    tag = store.put_if(HEAD, b"v1", None)
    other.put_if(HEAD, b"v2", tag)  # another writer got there first, with the very bytes
    with pytest.raises(SwapConflict):
        store.put_if(HEAD, b"v2", tag)


def test_retried_swap_lost_to_another_writer(s3_url):
    store, other = S3Store(s3_url, session=_retrying_the_first_put()), S3Store(s3_url)
    tag = other.put_if(HEAD, b"v1", None)
    other.put_if(HEAD, b"v1 moved on", tag)
    with pytest.raises(SwapConflict):
        store.put_if(HEAD, b"v2", tag)  # both attempts fail their precondition
    assert store.get(HEAD) == b"v1 moved on"


def test_moto_conditional_put_is_atomic_under_the_fixture(s3_url, monkeypatch):
    """Widen moto's check-then-write window: the fixture's lock must still allow one winner."""
    from moto.s3.responses import S3Response

    slow = S3Response._get_checksum

    def slow_checksum(self, *args, **kwargs):
        time.sleep(0.02)
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, "_get_checksum", slow_checksum)
    stores = [S3Store(s3_url) for _ in range(6)]
    tag = stores[0].put_if(HEAD, b"base", None)
    barrier = threading.Barrier(len(stores))
    winners = []

    def contend(i: int) -> None:
        barrier.wait()
        try:
            stores[i].put_if(HEAD, f"writer {i}".encode(), tag)
            winners.append(i)
        except SwapConflict:
            pass

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1
    assert os.environ["AWS_ENDPOINT_URL_S3"] == stores[0].endpoint_url
