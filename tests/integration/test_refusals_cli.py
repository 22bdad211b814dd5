"""The refusals that protect a share (issue 22, cases 1, 3, 4), through the installed CLI and its daemon
as subprocesses on real files, against a local store and moto S3 (CLI.md, "Refusals that protect the share")."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from fogsync.folder.marker import MARKER
from fogsync.format.crypto import ShareKeys
from fogsync.store import open_store

KEY = "11" * 32  # the cli_host fixture's key
TIMEOUT = 60


def head_key() -> str:
    return f"{ShareKeys.derive(bytes.fromhex(KEY)).share_id('docs')}/head"


def commit(h, name: str) -> None:
    (h.folder / name).write_text(f"{name}\n")
    h.sync()


def roots(h) -> int:
    return len(h.log())


def one_error_line(p) -> str:
    assert p.returncode == 1 and p.stdout == "", (p.stdout, p.stderr)
    (line,) = p.stderr.splitlines()
    assert line.startswith("fogsync: error: ")
    return line


def rolled_back(a, store: str, after_three=lambda: None):
    """The issue's steps: three commits (then ``after_three()``), a copy of the head, two more (f4, f5),
    the old head put back; returns that old head."""
    for name in ("f1", "f2", "f3"):
        commit(a, name)
    after_three()
    s = open_store(store)
    old_head = s.get(head_key())
    for name in ("f4", "f5"):
        commit(a, name)
    s.put(head_key(), old_head)
    s.close()
    return old_head


# --- 1. a store that goes back in time ----------------------------------------------------------


def test_a_rolled_back_store_is_refused_then_accepted(cli_host, share_store):
    a = cli_host("alpha", share_store)
    b = cli_host("beta", share_store)
    old_head = rolled_back(a, share_store, after_three=b.sync)  # beta last saw v3
    line = one_error_line(a.run("sync", check=False))
    assert "'docs'" in line and "v3" in line and "v5" in line and "fogsync sync docs --accept-rollback" in line
    assert (a.folder / "f4").read_text() == "f4\n" and (a.folder / "f5").read_text() == "f5\n"
    assert open_store(share_store).get(head_key()) == old_head  # nothing committed
    p = a.run("sync", "docs", "--accept-rollback")
    assert "removed 0" in p.stdout and "committed v4" in p.stdout
    assert sorted(x.name for x in a.folder.iterdir() if x.name != MARKER) == ["f1", "f2", "f3", "f4", "f5"]
    a.run("check", "docs")
    a.sync()  # in step with what it committed: no refusal
    b.sync()
    assert (b.folder / "f4").read_text() == "f4\n" and (b.folder / "f5").read_text() == "f5\n"


def test_accept_rollback_needs_a_share_name(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    p = a.run("sync", "--accept-rollback", check=False)
    assert p.returncode == 2 and "need the NAME" in p.stderr


# --- 3. an unmounted or replaced folder ----------------------------------------------------------


def test_an_unmounted_folder_is_refused_and_the_other_host_keeps_its_files(cli_host, share_store):
    a = cli_host("alpha", share_store)
    assert (a.folder / MARKER).is_file()  # add-share left it
    b = cli_host("beta", share_store)
    for name in ("f1", "f2", "f3"):
        (a.folder / name).write_text(name)
    a.sync()
    b.sync()
    before = roots(a)
    shutil.rmtree(a.folder)
    a.folder.mkdir()  # the mount point of a disk that is not mounted
    line = one_error_line(a.run("sync", check=False))
    assert MARKER in line and "unmounted" in line and str(a.folder) in line
    assert roots(a) == before and list(a.folder.iterdir()) == []
    b.sync()
    assert sorted(x.name for x in b.folder.iterdir() if x.name != MARKER) == ["f1", "f2", "f3"]
    p = a.run("--json", "ls", "docs")
    assert MARKER not in p.stdout  # never synced


# --- 4. a mass deletion --------------------------------------------------------------------------


def test_a_mass_deletion_waits_for_consent(cli_host, share_store):
    a = cli_host("alpha", share_store)
    b = cli_host("beta", share_store)
    for i in range(22):
        (a.folder / f"f{i:02}").write_text(str(i))
    a.sync()
    b.sync()
    for i in range(11):  # half: not more than half
        (a.folder / f"f{i:02}").unlink()
    a.sync()
    (a.folder / "f11").unlink()  # 11 files left: the share holds not more than 20 now
    a.sync()
    for i in range(11):
        (a.folder / f"g{i:02}").write_text(str(i))
    a.sync()  # 21 files
    for i in range(11):
        (a.folder / f"g{i:02}").unlink()
    before = roots(a)
    line = one_error_line(a.run("sync", check=False))
    assert "delete 11 of the share's 21 files" in line and "fogsync sync docs --allow-mass-delete" in line
    assert roots(a) == before
    assert a.run("sync", "--allow-mass-delete", check=False).returncode == 2
    a.run("sync", "docs", "--allow-mass-delete")
    b.sync()
    assert sorted(x.name for x in b.folder.iterdir() if x.name != MARKER) == [f"f{i}" for i in range(12, 22)]


# --- the daemon holds a refused share --------------------------------------------------------------


@pytest.fixture
def daemon_of(tmp_path):
    started = []

    def start(h):
        h.config.write_text(h.config.read_text().replace("\n[shares", "debounce = 0.2\nmax_delay = 1.0\n\n[shares", 1))
        err = open(h.home / "daemon.err", "wb")
        h.daemon = subprocess.Popen(h.command("daemon", "--poll", "0.5"), stdout=subprocess.DEVNULL, stderr=err,
                                    env=h.env())
        err.close()
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop_daemon(TIMEOUT)


def share_status(h) -> dict:
    return json.loads(h.run("--json", "status", "docs").stdout)["shares"][0]


def wait_for_state(h, state: str) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while True:
        if (h.state_dir / "daemon.sock").exists():
            s = share_status(h)
            if s["state"] == state and (state != "idle" or s["last_pass"] is not None):
                return s
        assert h.daemon.poll() is None and time.monotonic() < deadline, (h.home / "daemon.err").read_text()
        time.sleep(0.2)


def test_the_daemon_holds_a_rolled_back_share_until_sync_accepts(cli_host, share_store, daemon_of):
    a = cli_host("alpha", share_store)
    a.run("add-share", "more", "22" * 32, "--path", str(a.home / "more"), "--store", share_store)
    rolled_back(a, share_store)
    daemon_of(a)
    s = wait_for_state(a, "held")
    assert "--accept-rollback" in s["reason"] and s["retry_in"] is None and s["in_step"] is False
    assert "held: share 'docs'" in a.run("status", "docs").stdout
    assert "--accept-rollback" in (a.state_dir / "fogsync.log").read_text()
    (a.home / "more" / "m.txt").write_text("m")
    a.run("wait", "more", "--timeout", str(TIMEOUT))  # the other share is synced meanwhile
    line = one_error_line(a.run("sync", "docs", check=False))  # asked without the flag: refused again
    assert "--accept-rollback" in line and line.endswith(f"(reported by the daemon, pid {a.daemon.pid})")
    assert share_status(a)["state"] == "held"
    p = a.run("sync", "docs", "--accept-rollback")
    assert "committed v4" in p.stdout
    a.run("wait", "--timeout", str(TIMEOUT))
    assert share_status(a)["state"] == "idle" and (a.folder / "f5").read_text() == "f5\n"


def test_the_daemon_holds_a_mass_deletion_until_sync_allows_it(cli_host, share_store, daemon_of):
    a = cli_host("alpha", share_store)
    (a.folder / "d").mkdir()
    for i in range(22):
        (a.folder / ("d" if i < 12 else "") / f"f{i:02}").write_text(str(i))
    a.sync()
    daemon_of(a)
    wait_for_state(a, "idle")
    (a.folder / "d").rename(a.home / "d")  # 12 files gone at once: no pass sees a part of it
    s = wait_for_state(a, "held")
    assert "--allow-mass-delete" in s["reason"] and "delete 12 of the share's 22" in s["reason"]
    a.run("sync", "docs", "--allow-mass-delete")
    a.run("wait", "--timeout", str(TIMEOUT))
    assert len([e for e in json.loads(a.run("--json", "ls", "docs").stdout)["entries"]]) == 10


def test_the_daemon_holds_a_folder_without_its_marker_until_it_is_back(cli_host, share_store, daemon_of):
    a = cli_host("alpha", share_store)
    (a.folder / "f.txt").write_text("1")
    a.sync()
    daemon_of(a)
    wait_for_state(a, "idle")
    (a.folder / MARKER).unlink()
    (a.folder / "f.txt").unlink()  # and its file: as when the disk is unmounted
    s = wait_for_state(a, "held")
    assert MARKER in s["reason"] and s["retry_in"] is not None  # tried again on its own
    (a.folder / "f.txt").write_text("1")
    (a.folder / MARKER).write_text("")  # the disk is mounted again
    a.run("wait", "--timeout", str(TIMEOUT))
    assert [e["path"] for e in json.loads(a.run("--json", "ls", "docs").stdout)["entries"]] == ["f.txt"]
