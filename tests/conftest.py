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
from helpers import KEYS, folder_tree

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

STORE_KINDS = ("memory", "local", "s3", "wrapped")


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Store]]:
    """Yield a function that opens a new handle on one fresh store, per backend.

    Parametrized over memory, local (under tmp_path), s3 (moto) and a memory
    store behind a ``FaultyStore`` with no faults (every wrapper passes the
    contract through). Every
    call opens another handle on the same objects, like a second host;
    handles are closed at teardown. ``request.param`` names the backend.
    """
    from fogsync.store import open_store
    from fogsync.store.faulty import FaultyStore

    if request.param in ("memory", "wrapped"):
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
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


# --- several hosts on one share (issue 5) -------------------------------------------

SHARE = "docs"
SHARE_KEY = "5a" * 32


class Host:
    """One host of a share: its own config file, state dir and folder under ``home``; the store is shared.

    ``run``/``start``/``sync`` drive the installed CLI as a subprocess (the
    host name comes from the config's ``host``); ``share()`` builds the same
    host in-process as a ``sync.Share`` (same state database), ``sync_here``
    runs one pass with it.
    """

    def __init__(
        self, home, name: str, store: str, key: str = SHARE_KEY, share: str = SHARE, with_share: bool = True,
    ) -> None:
        from pathlib import Path

        self.home = Path(home)
        self.name, self.store, self.key, self.share_name = name, store, key, share
        self.folder = self.home / "folder"
        self.state_dir = self.home / "state"
        self.config = self.home / "config.toml"
        self.folder.mkdir(parents=True, exist_ok=True)
        text = f'host = "{name}"\nstate_dir = "{self.state_dir}"\n'
        if with_share:
            text += f'\n[shares.{share}]\nkey = "{key}"\npath = "{self.folder}"\nstore = "{store}"\n'
        self.config.write_text(text)
        self._share = None
        self._state = None

    def __repr__(self) -> str:
        return f"Host({self.name!r})"

    # --- the folder ----------------------------------------------------------------

    def path(self, rel: str):
        return self.folder / rel

    def write(self, rel: str, data: str | bytes) -> None:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    def read(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def remove(self, rel: str) -> None:
        import shutil

        p = self.path(rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()

    def move(self, src: str, dst: str) -> None:
        self.path(dst).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path(src), self.path(dst))

    def tree(self, mtimes: bool = False) -> dict[str, tuple]:
        return folder_tree(self.folder, mtimes)

    # --- the CLI -------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        import shutil
        import sys

        exe = os.path.join(os.path.dirname(sys.executable), "fogsync")
        exe = exe if os.path.exists(exe) else shutil.which("fogsync")
        return [exe, "--config", str(self.config), *args]

    @staticmethod
    def env() -> dict[str, str]:
        env = dict(os.environ)
        env.pop("FOGSYNC_CONFIG", None)
        env.pop("FOGSYNC_HOST", None)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        import subprocess

        p = subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env(), timeout=timeout,
                           input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"{self.name}: fogsync {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p

    def start(self, *args: str):
        """Start ``fogsync ARGS`` without waiting; ``finish`` collects it."""
        import subprocess

        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env())

    def finish(self, proc, timeout: float = 120) -> str:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(proc.args[3:])} exited {proc.returncode}:\n{out}{err}")
        return out

    def sync(self) -> str:
        return self.run("sync").stdout

    def add(self) -> None:
        """Record the share with ``add-share``, as a person would."""
        self.run("add-share", self.share_name, self.key, "--path", str(self.folder), "--store", self.store)

    def log(self) -> list[tuple[str, int, str, str]]:
        """(id, version, date, host) per root, newest first."""
        out = []
        for line in self.run("log", self.share_name).stdout.splitlines():
            ref, version, date, host = line.split(" ", 3)
            out.append((ref, int(version), date, host))
        return out

    # --- in-process ----------------------------------------------------------------

    def share(self):
        """This host as a ``sync.Share`` (opened once; closed by the ``hosts`` fixture)."""
        if self._share is None:
            from fogsync.config import file as config
            from fogsync.config.shares import open_share, open_state

            cfg = config.load(str(self.config))
            self._state = open_state(cfg)
            self._share = open_share(cfg, self.share_name, self._state)
        return self._share

    def sync_here(self):
        from fogsync.engine.sync import sync_share

        return sync_share(self.share())

    def close(self) -> None:
        if self._share is not None:
            self._share.repo.close()
            self._state.close()
            self._share = self._state = None


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
