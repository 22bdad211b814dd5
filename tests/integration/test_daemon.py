"""The live daemon, run for real as a subprocess, against a local store and moto S3.

Each test has its own config, state dir and folder. Waits are polling loops
with generous timeouts; no fixed sleep stands in for an assertion of speed.
The store is inspected in-process through ``Repo`` (cheap to poll), and the
whole history is checked at the end: every change is in exactly one root,
and no root ever held a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fogsync.config import file as configmod
from fogsync.config.shares import open_repo
from fogsync.daemon import control

TIMEOUT = 20.0
SHARE = "docs"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Host:
    """One host: a config, a state dir and a share folder, on a store shared with other hosts."""

    def __init__(self, base: Path, name: str, key: str, store: str) -> None:
        self.name = name
        self.dir = base / name
        self.folder = self.dir / "folder"
        self.state = self.dir / "state"
        self.config = self.dir / "config.toml"
        self.folder.mkdir(parents=True)
        self.config.write_text(
            f'state_dir = "{self.state}"\ndebounce = 0.5\nmax_delay = 1.0\n\n'
            f'[shares.{SHARE}]\nkey = "{key}"\npath = "{self.folder}"\nstore = "{store}"\n'
        )
        self.config.chmod(0o600)
        self.env = dict(os.environ, FOGSYNC_HOST=name)
        self.env.pop("FOGSYNC_CONFIG", None)
        self.daemon: subprocess.Popen | None = None
        self._repo = None

    def cli(self, *args: str, check: bool = True, text: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "fogsync", "--config", str(self.config), *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=text, timeout=60)
        if check:
            assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc

    def start_daemon(self) -> subprocess.Popen:
        self.state.mkdir(parents=True, exist_ok=True)
        err = open(self.dir / "daemon.err", "wb")
        cmd = [sys.executable, "-m", "fogsync", "--config", str(self.config), "daemon", "--poll", "0.5", "-v"]
        self.daemon = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        wait_for(lambda: self._first_pass_done(), "the daemon's first pass", self)
        return self.daemon

    def _first_pass_done(self) -> bool:
        assert self.daemon.poll() is None, f"the daemon exited with {self.daemon.returncode}"
        try:
            reply = control.request(str(self.state), {"op": "status", "names": [SHARE]})
        except Exception:
            return False
        return bool(reply and reply["shares"][0].get("last_pass"))

    def stop_daemon(self) -> int | None:
        if self.daemon is None or self.daemon.poll() is not None:
            return None if self.daemon is None else self.daemon.returncode
        self.daemon.send_signal(signal.SIGTERM)
        try:
            return self.daemon.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
            raise

    def log_text(self) -> str:
        path = self.dir / "daemon.err"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    @property
    def repo(self):
        if self._repo is None:
            cfg = configmod.load(str(self.config))
            self._repo = open_repo(cfg, cfg.share(SHARE))
        return self._repo

    def roots(self) -> list:
        """(ref, Root) newest first."""
        head = self.repo.read_head()
        return list(self.repo.history(head.root)) if head.root else []

    def head_files(self) -> dict[str, str | None]:
        head = self.repo.read_head()
        return files_of(self.repo, self.repo.read_root(head.root)) if head.root else {}


def files_of(repo, root) -> dict[str, str | None]:
    return {p: e.sha256 for p, e in repo.load_tree(root.root).items() if e.type == "file"}


def wait_for(predicate, what: str, host: Host | None = None, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n" + (host.log_text() if host else ""))
        time.sleep(0.05)


def diffs(repo, roots) -> list[dict[str, str | None]]:
    """Per root, oldest first: the files it changed (path -> sha256, None when removed)."""
    out, before, tree = [], {}, {}
    for _, root in reversed(roots):
        tree = repo.load_tree(root.root, known=tree)
        now = {p: e.sha256 for p, e in tree.items() if e.type == "file"}
        changed = {p: s for p, s in now.items() if before.get(p, "absent") != s}
        changed.update({p: None for p in before if p not in now})
        out.append(changed)
        before = now
    return out


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_url")


@pytest.fixture
def hosts(tmp_path, store):
    key = secrets.token_hex(32)
    made: list[Host] = []

    def make(name: str) -> Host:
        host = Host(tmp_path, name, key, store)
        made.append(host)
        return host

    yield make
    for host in made:
        host.stop_daemon()
        if host._repo is not None:
            host._repo.close()


def test_local_changes_reach_the_store_once_and_whole(hosts, tmp_path):
    alpha = hosts("alpha")
    alpha.start_daemon()
    folder = alpha.folder
    expected: list[dict[str, str | None]] = []

    def step(action, changes: dict[str, bytes | None], what: str) -> None:
        action()
        want = {p: None if data is None else sha(data) for p, data in changes.items()}
        expected.append(want)

        def arrived() -> bool:
            files = alpha.head_files()
            return all(files.get(p) == s if s is not None else p not in files for p, s in want.items())

        wait_for(arrived, what, alpha)

    ignore = b"*.log\n"
    v1, v2 = b"first version\n", b"second version, longer\n" * 3
    step(lambda: ((folder / ".fogsyncignore").write_bytes(ignore), (folder / "notes.txt").write_bytes(v1)),
         {".fogsyncignore": ignore, "notes.txt": v1}, "a new file")
    step(lambda: (folder / "notes.txt").write_bytes(v2), {"notes.txt": v2}, "an edit")
    step(lambda: os.rename(folder / "notes.txt", folder / "renamed.txt"),
         {"notes.txt": None, "renamed.txt": v2}, "a rename")
    step(lambda: os.unlink(folder / "renamed.txt"), {"renamed.txt": None}, "a delete")

    src = tmp_path / "src"
    tree = {f"d{i}/sub{j}/f{k}.txt": f"{i}-{j}-{k}\n".encode() * (k + 1) for i in range(3) for j in range(2)
            for k in range(4)}
    for rel, data in tree.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    step(lambda: shutil.copytree(src, folder / "tree"), {f"tree/{p}": d for p, d in tree.items()},
         "a directory tree copied in")

    saved = b"saved atomically\n" * 100

    def atomic_save() -> None:
        (folder / "scratch.swp").write_bytes(b"editor swap file")
        (folder / "debug.log").write_bytes(b"excluded by .fogsyncignore")
        tmp = folder / "tree" / ".goutputstream-1A2B3C"
        with open(tmp, "wb") as f:
            f.write(saved)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / "tree/d0/sub0/f0.txt")

    step(atomic_save, {"tree/d0/sub0/f0.txt": saved}, "an editor-style atomic save")

    chunks = [secrets.token_bytes(32 * 1024) for _ in range(14)]

    def slow_write() -> None:  # longer than max_delay: passes run while the file is half-written
        with open(folder / "big.bin", "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                f.flush()
                time.sleep(0.1)

    step(slow_write, {"big.bin": b"".join(chunks)}, "a file written slowly in chunks")

    got = diffs(alpha.repo, alpha.roots())
    assert got == expected, "each change must be in exactly one root, and no root may hold a partial file"
    assert alpha.cli("cat", SHARE, "big.bin", text=False).stdout == b"".join(chunks)
    assert len(alpha.cli("log", SHARE).stdout.splitlines()) == len(expected)
    assert alpha.stop_daemon() == 0


def test_other_hosts_commit_arrives_without_echo(hosts):
    alpha, beta = hosts("alpha"), hosts("beta")
    alpha.start_daemon()
    data = b"written on beta\n" * 50
    (beta.folder / "sub").mkdir()
    (beta.folder / "sub" / "from-beta.txt").write_bytes(data)
    beta.cli("sync")
    arrived = alpha.folder / "sub" / "from-beta.txt"
    wait_for(lambda: arrived.exists() and arrived.read_bytes() == data, "beta's commit in alpha's folder", alpha)
    roots = alpha.roots()
    assert len(roots) == 1 and roots[0][1].host == "beta"

    # A pass asked for now, after the pull's own writes: it must find nothing to commit.
    out = alpha.cli("sync").stdout
    assert out.strip() == f"{SHARE}: pushed 0 file(s) (0 B), pulled 0, removed 0, in step"
    status = alpha.cli("status").stdout
    assert f"daemon: running (pid {alpha.daemon.pid})" in status and f"{SHARE}: in step" in status
    assert [ref for ref, _ in alpha.roots()] == [roots[0][0]], "the daemon committed an echo of its own pull"

    # And the other way round: alpha's edit reaches beta, again with no extra root.
    (alpha.folder / "sub" / "from-beta.txt").write_bytes(b"edited on alpha\n")
    wait_for(lambda: len(alpha.roots()) == 2, "alpha's edit committed", alpha)
    beta.cli("sync")
    assert (beta.folder / "sub" / "from-beta.txt").read_bytes() == b"edited on alpha\n"
    assert [r.host for _, r in alpha.roots()] == ["alpha", "beta"]


def test_one_daemon_per_state_dir_and_sigterm(tmp_path):
    alpha = Host(tmp_path, "alpha", secrets.token_hex(32), str(tmp_path / "store"))
    daemon = alpha.start_daemon()
    try:
        sock = alpha.state / "daemon.sock"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        modes = {name: stat.S_IMODE(os.stat(alpha.state / name).st_mode) for name in os.listdir(alpha.state)}
        assert {name: m for name, m in modes.items() if m not in (0o600, 0o700)} == {}
        assert stat.S_IMODE(os.stat(alpha.state).st_mode) == 0o700
        second = alpha.cli("daemon", "--poll", "0.5", check=False)
        assert second.returncode == 1
        assert second.stderr == f"fogsync: error: a daemon already runs for {alpha.state} (pid {daemon.pid})\n"
        (alpha.folder / "a.txt").write_text("a\n")
        wait_for(lambda: "a.txt" in alpha.head_files(), "a new file", alpha)
    finally:
        assert alpha.stop_daemon() == 0
        alpha.repo.close()
    assert not (alpha.state / "daemon.sock").exists()
    assert "daemon started" in (alpha.state / "fogsync.log").read_text()
    status = alpha.cli("status").stdout
    assert status.startswith(f"{SHARE}: in step;") and status.rstrip().endswith("daemon: not running")


def test_saves_deep_in_a_bigger_share_are_committed_by_partial_passes(tmp_path):
    alpha = Host(tmp_path, "alpha", secrets.token_hex(32), str(tmp_path / "store"))
    old = 1_700_000_000_000_000_000  # settled files: the start pass vouches for every directory
    for i in range(20):
        for j in range(5):
            for k in range(10):
                path = alpha.folder / f"top{i}" / f"mid{j}" / f"f{k}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"%d %d %d\n" % (i, j, k))
                os.utime(path, ns=(old, old))
    deep = alpha.folder / "top7" / "mid3" / "deeper" / "deepest"
    deep.mkdir(parents=True)
    alpha.cli("sync")
    try:
        alpha.start_daemon()
        for n in range(3):
            data = b"save %d\n" % n
            (deep / "notes.txt").write_bytes(data)
            wait_for(lambda: alpha.head_files().get("top7/mid3/deeper/deepest/notes.txt") == sha(data),
                     f"save {n} committed", alpha)
        wait_for(lambda: "partial, " in alpha.log_text(), "the log line of a partial pass", alpha)
        listed = [int(line.split("partial, ")[1].split()[0]) for line in alpha.log_text().splitlines()
                  if "partial, " in line]
        assert listed and max(listed) <= 6, alpha.log_text()  # of 122 directories
        out = alpha.cli("sync").stdout  # asked for over the socket: a full pass, which agrees
        assert out.strip() == f"{SHARE}: pushed 0 file(s) (0 B), pulled 0, removed 0, in step"
    finally:
        assert alpha.stop_daemon() == 0
