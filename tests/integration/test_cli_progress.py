"""Progress, run for real (issue 24 item 2): a line redrawn on a terminal (a pseudo-terminal here), nothing
but the summary on a pipe, --quiet, one line on SIGUSR1, --json status messages, the daemon's status."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import time

import pytest
from helpers import signalled_when

from fogsync.daemon import control

FILES = 2500  # enough one-block files for worker processes on both sides (PROCESSES_MIN)
FPS = {"FOGSYNC_PROGRESS_FPS": "50"}
STATUS_KEYS = {"message_type", "share", "phase", "files_done", "files_total", "bytes_done", "bytes_total",
               "seconds_elapsed", "seconds_remaining", "current_files"}
PHASES = {"starting", "scanning", "pushing", "uploading", "pulling", "restoring"}
SUMMARY = re.compile(rf"docs: committed v1, pushed {FILES} file\(s\) \([\d.]+ KiB\), pulled 0, removed 0")


def fill(folder, n: int = FILES) -> int:
    """``n`` small files in 10 directories; returns their bytes."""
    total = 0
    for i in range(n):
        d = folder / f"d{i % 10}"
        d.mkdir(exist_ok=True)
        data = f"file {i}\n" * (1 + i % 7)
        (d / f"f{i}.txt").write_text(data)
        total += len(data)
    return total


def in_terminal(h, *args: str, env: dict | None = None) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal: (exit status, all it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(h.command(*args), stdin=slave, stdout=slave, stderr=slave,
                            env={**h.env(), **(env or {})})
    os.close(slave)
    shown = bytearray()
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not data:
                break
            shown += data
        proc.wait(timeout=120)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, shown.decode("utf-8", "replace")


def run(h, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(h.command(*args), capture_output=True, text=True, env={**h.env(), **(env or {})},
                       timeout=120)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def last_line(shown: str) -> str:
    """What a terminal shows last: the text after the progress line was cleared."""
    return shown.replace("\r\n", "\n").rstrip("\n").split("\n")[-1].split("\r")[-1]


def test_a_terminal_shows_a_line_redrawn_with_counts_then_the_summary(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    fill(a.folder)
    status, shown = in_terminal(a, "sync", env=FPS)
    assert status == 0, shown
    counts = [(int(done), int(total)) for done, total in re.findall(r"docs pushing (\d+)/(\d+) files", shown)]
    # A first sync pushes as it walks: the total grows with what the walk found, and ends at every file.
    assert counts and all(done <= total for done, total in counts), shown[-2000:]
    assert [t for _, t in counts] == sorted(t for _, t in counts) and counts[-1] == (FILES, FILES), shown[-2000:]
    assert shown.count("\r") > 2  # redrawn in place
    assert re.search(r"\d+%\|", shown) and "ETA" in shown and "B/s" in shown
    assert SUMMARY.fullmatch(last_line(shown)), shown[-500:]

    status, shown = in_terminal(a, "restore", "docs", "--to", str(tmp_path / "out"), env=FPS)
    assert status == 0, shown
    assert re.search(rf"docs restoring \d+/{FILES} files", shown), shown[-2000:]
    assert last_line(shown).startswith(f"restored {FILES + 10} entries of 'docs'")

    status, shown = in_terminal(a, "check", "docs", env=FPS)
    assert status == 0, shown
    assert re.search(r"docs checking \d+/\d+ files", shown), shown[-2000:]
    assert last_line(shown).startswith("docs: checked 1 root(s)")


def test_a_pipe_shows_only_the_summary(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    fill(a.folder)
    p = run(a, "sync", env=FPS)
    assert p.stderr == "" and SUMMARY.fullmatch(p.stdout.rstrip("\n")), p
    p = run(a, "check", "docs", env=FPS)
    assert p.stderr == "" and p.stdout.startswith("docs: checked 1 root(s)")


@pytest.mark.parametrize("where", ["global", "command"])
def test_quiet_silences_the_terminal_line(cli_host, tmp_path, where):
    a = cli_host("alpha", str(tmp_path / "store"))
    fill(a.folder)
    args = ("--quiet", "sync") if where == "global" else ("sync", "-q")
    status, shown = in_terminal(a, *args, env=FPS)
    assert status == 0
    assert "\r" not in shown.replace("\r\n", "\n") and SUMMARY.fullmatch(shown.strip()), shown


def caught_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    return 0


def sync_signalled(h, *args: str) -> subprocess.CompletedProcess:
    """``sync`` on pipes, sent SIGUSR1 once it listens for it."""
    listening = 1 << (signal.SIGUSR1 - 1)
    p = signalled_when(h, args, lambda pid: caught_signals(pid) & listening, signal.SIGUSR1, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return p


def test_sigusr1_prints_one_status_line_even_when_quiet(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    fill(a.folder)
    p = sync_signalled(a, "--quiet", "sync")
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert re.fullmatch(r"fogsync: docs: (starting|scanning|pushing|uploading)( \d+/\d+ files, .*)?", lines[0]), lines
    assert SUMMARY.fullmatch(p.stdout.rstrip("\n"))


def test_sigusr1_under_json_prints_one_status_message_on_stderr(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    fill(a.folder)
    p = sync_signalled(a, "--json", "--quiet", "sync")
    (line,) = p.stderr.splitlines()
    msg = json.loads(line)
    assert set(msg) == STATUS_KEYS and msg["message_type"] == "status" and msg["share"] == "docs"
    assert [json.loads(x)["message_type"] for x in p.stdout.splitlines()] == ["summary"]  # quiet: no status


def check_status(msg: dict, phases: set[str]) -> None:
    assert set(msg) == STATUS_KEYS, msg
    assert msg["message_type"] == "status" and msg["share"] == "docs" and msg["phase"] in phases
    for what in ("files", "bytes"):
        done, total = msg[f"{what}_done"], msg[f"{what}_total"]
        assert isinstance(done, int) and (total is None or 0 <= done <= total), msg
    assert msg["seconds_elapsed"] >= 0
    assert msg["seconds_remaining"] is None or msg["seconds_remaining"] >= 0
    assert isinstance(msg["current_files"], list) and all(isinstance(p, str) for p in msg["current_files"])


def test_json_sync_and_restore_send_status_messages_before_the_summary(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    total = fill(a.folder)
    msgs = [json.loads(line) for line in run(a, "--json", "sync", env=FPS).stdout.splitlines()]
    assert msgs[-1]["message_type"] == "summary" and len(msgs) > 1
    for msg in msgs[:-1]:
        check_status(msg, PHASES)
    pushing = [m for m in msgs if m.get("phase") == "pushing"]
    totals = [(m["files_total"], m["bytes_total"]) for m in pushing]  # growing as the walk goes
    assert pushing and totals == sorted(totals) and totals[-1] == (FILES, total)

    out = run(a, "--json", "restore", "docs", "--to", str(tmp_path / "out"), env=FPS).stdout
    msgs = [json.loads(line) for line in out.splitlines()]
    assert msgs[-1]["message_type"] == "summary" and len(msgs) > 1
    for msg in msgs[:-1]:
        check_status(msg, {"restoring"})
        assert (msg["files_total"], msg["bytes_total"]) == (FILES, total)


def test_the_daemon_status_shows_its_first_pass_in_hand(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    fill(a.folder, 8000)
    hour_ago = time.time() - 3600  # not files still being written, which a daemon's pass leaves for later
    for path in a.folder.rglob("*.txt"):
        os.utime(path, (hour_ago, hour_ago))
    daemon = subprocess.Popen(a.command("daemon", "--poll", "0.5"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=a.env())
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert daemon.poll() is None and time.monotonic() < deadline, daemon.stderr
            reply = control.request(str(a.state_dir), {"op": "status", "names": ["docs"]})
            share = reply["shares"][0] if reply else None
            if share is None:
                time.sleep(0.01)
                continue
            if share["progress"] is not None:
                seen.append(share)
            if share["last_pass"] is not None:
                break
        shown = json.loads(run(a, "--json", "status").stdout)["shares"][0]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert seen, "no status reply came while the first pass ran"
    for s in seen:
        assert s["state"] in ("scanning", "syncing")
        p = s["progress"]
        assert set(p) == {"phase", "files_done", "files_total", "bytes_done", "bytes_total", "current_files"}
        assert (s["state"] == "scanning") == (p["phase"] == "scanning")
        assert p["files_total"] is None or p["files_done"] <= p["files_total"]
    assert any(s["progress"]["phase"] == "pushing" and s["progress"]["files_total"] == 8000 for s in seen), [
        (s["state"], s["progress"]) for s in seen]
    assert shown["progress"] is None and shown["state"] == "idle"
