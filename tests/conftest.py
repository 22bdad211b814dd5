"""Shared fixtures.

S3: a real HTTP server (moto's ThreadedMotoServer on 127.0.0.1) so the S3
backend is exercised through boto3, botocore's retries and the wire format.
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from typing import Callable, Iterator

import pytest

from fogsync.store import Store

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

STORE_KINDS = ("memory", "local", "s3")


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Store]]:
    """Yield a function that opens a new handle on one fresh store, per backend.

    Parametrized over memory, local (under tmp_path) and s3 (moto). Every
    call opens another handle on the same objects, like a second host;
    handles are closed at teardown. ``request.param`` names the backend.
    """
    from fogsync.store import open_store

    if request.param == "memory":
        url = f"memory://test-{uuid.uuid4().hex}"
    elif request.param == "local":
        url = str(tmp_path / "store")
    else:
        url = request.getfixturevalue("s3_url")
    opened: list[Store] = []

    def factory() -> Store:
        store = open_store(url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
