"""Shared fixtures.

S3: a real HTTP server (moto's ThreadedMotoServer on 127.0.0.1) so the S3
backend is exercised through boto3, botocore's retries and the wire format.
"""

from __future__ import annotations

import functools
import sys
import threading
import uuid
from typing import Callable, Iterator

import pytest
from helpers import KEYS
from hosts import Host

from fogsync.errors import TransientStoreError
from fogsync.repo.repository import Repo
from fogsync.store import Store
from fogsync.store.local import LocalStore

# --- S3 (moto server) ---------------------------------------------------------

_FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_UNSET_AWS_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def _serialise_moto_puts(mp: pytest.MonkeyPatch) -> None:
    """Make moto's PutObject atomic, like real S3.

    moto's server checks If-Match / If-None-Match and then writes without a
    lock, so two concurrent conditional PUTs can both succeed; S3 never lets
    that happen. One lock around the whole handler restores compare-and-swap.
    """
    from moto.s3.responses import S3Response

    original = S3Response.put_object
    lock = threading.Lock()

    @functools.wraps(original)
    def put_object(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    mp.setattr(S3Response, "put_object", put_object)


@pytest.fixture
def repo(tmp_path) -> Iterator[Repo]:
    """A share on a local store in ``tmp_path`` (test modules may define their own)."""
    r = Repo(LocalStore(str(tmp_path / "store")), KEYS, "share")
    yield r
    r.close()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the endpoint URL (``http://127.0.0.1:<port>``) of a moto S3 server.

    For the session: fake credentials and region in os.environ, no AWS
    profile, config or credentials file of the developer's, no instance
    metadata lookups, and moto's PutObject serialised (see above).
    """
    from moto.server import ThreadedMotoServer

    no_file = str(tmp_path_factory.mktemp("aws") / "absent")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        for name in _UNSET_AWS_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", no_file)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", no_file)
        _serialise_moto_puts(mp)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_url(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Return ``s3://<fresh bucket>/some/prefix`` on the moto server.

    Also sets ``AWS_ENDPOINT_URL_S3`` to the server in os.environ for the
    test, so ``S3Store(url)`` without an endpoint and subprocesses started by
    the test (which inherit the environment, with the fake credentials) reach
    the same server.
    """
    import boto3

    bucket = f"fogsync-test-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_server)
    client.create_bucket(Bucket=bucket)
    client.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    return f"s3://{bucket}/some/prefix"


# --- every backend ---------------------------------------------------------------

STORE_KINDS = ("memory", "local", "s3", "wrapped", "retrying")


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Store]]:
    """Yield a function that opens a new handle on one fresh store, per backend.

    Parametrized over memory, local (under tmp_path), s3 (moto), a memory
    store behind a ``FaultyStore`` with no faults (every wrapper passes the
    contract through), and a ``RetryingStore`` over a ``FaultyStore`` whose
    every operation first fails once transiently (a swap after it landed),
    so the contract holds through retries. Every
    call opens another handle on the same objects, like a second host;
    handles are closed at teardown. ``request.param`` names the backend.
    """
    from fogsync.store import open_store
    from fogsync.store.faulty import OPERATIONS, FaultyStore
    from fogsync.store.retrying import Backoff, RetryingStore

    if request.param in ("memory", "wrapped", "retrying"):
        url = f"memory://test-{uuid.uuid4().hex}"
    elif request.param == "local":
        url = str(tmp_path / "store")
    else:
        url = request.getfixturevalue("s3_url")
    opened: list[Store] = []

    def factory() -> Store:
        store = open_store(url)
        if request.param == "wrapped":
            store = FaultyStore(store)
        if request.param == "retrying":
            store = FaultyStore(store)
            for op in OPERATIONS:
                store.fail_on(op, TransientStoreError(f"{op}: connection reset"), landed=op in ("put", "put_if"))
            store = RetryingStore(store, Backoff(sleep=lambda seconds: None))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


# --- several hosts on one share (issue 5) -------------------------------------------

@pytest.fixture
def hosts(tmp_path) -> Iterator[Callable[..., Host]]:
    """``hosts(name, store)`` makes a Host under tmp_path; in-process handles are closed at teardown."""
    made: list[Host] = []

    def make(name: str, store: str, **kw) -> Host:
        host = Host(tmp_path / "hosts" / f"{len(made)}-{name}", name, store, **kw)
        made.append(host)
        return host

    yield make
    for host in made:
        host.close()


@pytest.fixture(params=["local", "s3"])
def share_store(request, tmp_path) -> str:
    """One store for every host of a test: a local directory, and a bucket on the moto server."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_url")


class ScandirCounter:
    """How many times one thread calls ``os.scandir`` while counting (Python's audit hook: the real calls)."""

    def __init__(self) -> None:
        self.counting, self.calls, self.thread = False, 0, threading.get_ident()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if event == "os.scandir" and self.counting and threading.get_ident() == self.thread:
            self.calls += 1

    def during(self, fn):
        """``fn()``, counting this thread's scandir calls in it."""
        self.thread, self.counting, self.calls = threading.get_ident(), True, 0
        try:
            return fn()
        finally:
            self.counting = False


_SCANDIRS: list[ScandirCounter] = []  # an audit hook cannot be removed: one for the whole session


@pytest.fixture
def scandirs() -> ScandirCounter:
    if not _SCANDIRS:
        _SCANDIRS.append(ScandirCounter())
    return _SCANDIRS[0]
