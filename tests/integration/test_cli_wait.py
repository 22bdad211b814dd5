"""``fogsync wait`` and the daemon's status reply (issue 24), against a running daemon subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

TIMEOUT = 60
KEY = "11" * 32  # the cli_host fixture's key
STATUS_SHARE_KEYS = {"name", "state", "reason", "in_step", "waiting_files", "waiting_bytes", "deferred",
                     "last_commit", "last_error", "last_error_at", "last_poll", "last_pass", "retry_in", "watch",
                     "remote", "last_forget", "last_prune", "progress"}


def run(h, *args, check: bool = True):
    p = subprocess.run(h.command(*args), capture_output=True, text=True, env=h.env(), timeout=120)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def daemon_host(cli_host, tmp_path):
    """A host whose daemon runs (quick debounce and poll); stopped with SIGTERM at the end."""
    started = []

    def make(name: str = "alpha", debounce: float = 0.2):
        h = cli_host(name, str(tmp_path / "store"))
        h.config.write_text(h.config.read_text().replace(
            "\n[shares", f"debounce = {debounce}\nmax_delay = {max(1.0, 2 * debounce)}\n\n[shares", 1))
        h.state_dir.mkdir(parents=True, exist_ok=True)
        err = open(h.home / "daemon.err", "wb")
        h.daemon = subprocess.Popen(h.command("daemon", "--poll", "0.5"), stdout=subprocess.DEVNULL, stderr=err,
                                    env=h.env())
        err.close()
        started.append(h)
        deadline = time.monotonic() + TIMEOUT
        while not (h.state_dir / "daemon.sock").exists():
            assert h.daemon.poll() is None and time.monotonic() < deadline, (h.home / "daemon.err").read_text()
            time.sleep(0.05)
        return h

    yield make
    for h in started:
        h.stop_daemon(TIMEOUT)


def family_cmdlines(pid: int) -> list[str]:
    """The command lines of ``pid`` and every process descended from it (Linux /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    family, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    out = []
    for p in family:
        try:
            out.append(open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return out


def head_files(h) -> list[str]:
    return [e["path"] for e in json.loads(run(h, "--json", "ls", "docs").stdout)["entries"]]


def test_wait_returns_once_a_save_is_committed(daemon_host):
    a = daemon_host()
    (a.folder / "first.txt").write_text("1")
    run(a, "wait", "--timeout", str(TIMEOUT))
    assert head_files(a) == ["first.txt"]
    for i in range(3):
        log_before = json.loads(run(a, "--json", "log", "docs").stdout)["roots"]
        (a.folder / f"save-{i}.txt").write_text("x" * 1000)
        run(a, "wait", "docs", "--timeout", str(TIMEOUT))  # at once: before the watcher may have said anything
        log_after = json.loads(run(a, "--json", "log", "docs").stdout)["roots"]
        assert log_after[0]["id"] != log_before[0]["id"] and f"save-{i}.txt" in head_files(a)
    status = json.loads(run(a, "--json", "status").stdout)
    assert status["daemon"] == {"running": True, "pid": a.daemon.pid}
    (s,) = status["shares"]
    assert set(s) == STATUS_SHARE_KEYS
    assert (s["state"], s["in_step"], s["waiting_files"], s["waiting_bytes"]) == ("idle", True, 0, 0)
    assert s["last_commit"]["id"] == log_after[0]["id"] and s["last_commit"]["version"] == 4
    assert s["last_poll"].endswith("Z") and s["last_pass"].endswith("Z") and s["last_error"] is None
    # sync while the daemon runs: the daemon's pass, the same summary message
    (summary,) = [json.loads(line) for line in run(a, "--json", "sync").stdout.splitlines()]
    assert summary["message_type"] == "summary" and summary["share"] == "docs"
    assert summary["root"] == log_after[0]["id"] and summary["committed"] is None and summary["in_step"] is True
    # the key shows nowhere: not in the command lines of the daemon and its children, nor in its log
    cmdlines = family_cmdlines(a.daemon.pid)
    assert any("daemon" in c for c in cmdlines) and not any(KEY in c for c in cmdlines)
    assert KEY not in (a.state_dir / "fogsync.log").read_text() + (a.home / "daemon.err").read_text()


def test_status_counts_what_the_watcher_saw_before_a_pass_takes_it(daemon_host):
    a = daemon_host(debounce=60)  # no pass but the start pass and the ones asked for
    run(a, "wait", "--timeout", str(TIMEOUT))
    (a.folder / "sub").mkdir()
    for rel, text in (("sub/f.txt", "12345"), ("top.txt", "1")):
        (a.folder / rel).write_text(text)
        os.utime(a.folder / rel, (1_700_000_000, 1_700_000_000))  # not still being written (the debounce is long)
    deadline = time.monotonic() + TIMEOUT
    while (s := json.loads(run(a, "--json", "status").stdout)["shares"][0])["waiting_files"] != 2:
        assert time.monotonic() < deadline, s  # until the watcher has said so
        time.sleep(0.1)
    assert (s["state"], s["waiting_bytes"], s["in_step"]) == ("idle", 6, False)
    assert "docs: 2 file(s) (6 B) waiting to sync" in run(a, "status").stdout
    run(a, "sync")  # the daemon's pass, now
    s = json.loads(run(a, "--json", "status").stdout)["shares"][0]
    assert (s["waiting_files"], s["waiting_bytes"]) == (0, 0)
    run(a, "wait", "--timeout", str(TIMEOUT))
    assert sorted(head_files(a)) == ["sub", "top.txt"]


def test_wait_also_waits_for_another_hosts_commit_to_be_pulled(daemon_host, cli_host, tmp_path):
    a = daemon_host()
    run(a, "wait", "--timeout", str(TIMEOUT))
    b = cli_host("beta", str(tmp_path / "store"))
    (b.folder / "from-beta.txt").write_text("b")
    b.sync()
    run(a, "wait", "--timeout", str(TIMEOUT))
    assert (a.folder / "from-beta.txt").read_text() == "b"


def test_a_share_whose_folder_is_gone_is_held_and_wait_times_out(daemon_host):
    a = daemon_host()
    (a.folder / "f.txt").write_text("1")
    run(a, "wait", "--timeout", str(TIMEOUT))
    shutil.rmtree(a.folder)
    deadline = time.monotonic() + TIMEOUT
    while True:
        s = json.loads(run(a, "--json", "status").stdout)["shares"][0]
        if s["state"] == "held":
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.2)
    assert str(a.folder) in s["reason"] and "not there" in s["reason"] and s["in_step"] is False
    assert s["last_error"] == s["reason"] and s["last_error_at"].endswith("Z")
    assert "held: its folder" in run(a, "status").stdout
    p = run(a, "wait", "--timeout", "1", check=False)
    assert p.returncode == 1 and p.stderr.startswith("fogsync: error: timed out after 1 s: docs: held: its folder")
    p = run(a, "--json", "wait", "--timeout", "0", check=False)
    assert p.returncode == 1 and json.loads(p.stderr)["message_type"] == "error"
    a.folder.mkdir()
    (a.folder / "f.txt").write_text("1")
    p = run(a, "wait", "--timeout", "1", check=False)  # a folder without its marker is not the one added
    assert p.returncode == 1 and "held" in p.stderr
    (a.folder / ".fogsync-folder").write_text("")
    run(a, "wait", "--timeout", str(TIMEOUT))  # held until the folder came back, then in step again


def test_wait_without_a_daemon_exits_1(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    p = run(a, "wait", check=False)
    assert p.returncode == 1
    assert p.stderr == f"fogsync: error: no daemon runs for {a.state_dir}: start one with 'fogsync daemon'\n"
