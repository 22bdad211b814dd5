"""The daemon's daily forget and prune (fogsync.daemon.upkeep): a share with a retention policy is
forgotten once a day and pruned (default grace: the sweep comes on the first pass an hour after
the mark), with the wall clock injected; ``status`` says when and what it freed. Real folder,
real SQLite, a local store; the worker runs as the daemon runs it, in its own thread."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from fogsync.config import file as config
from fogsync.daemon.control import status_lines
from fogsync.daemon.service import ShareWorker
from fogsync.engine.check import check_share


class WallClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


@pytest.fixture
def daemon_host(hosts, tmp_path):
    host = hosts("laptop", str(tmp_path / "store"))
    # no debounce: a pass takes files written just before it
    host.config.write_text("debounce = 0\n" + host.config.read_text() + "\n[shares.docs.retention]\nkeep_last = 2\n")
    wall = WallClock()
    worker = ShareWorker(config.load(str(host.config)), "docs", now=wall)
    worker.start()

    def sync() -> dict:
        req = worker.request_pass()
        assert req.done.wait(120)
        assert "error" not in req.result, req.result
        return worker.status()

    yield host, wall, sync
    worker.stop()
    worker.join(60)


def history_length(host) -> int:
    repo = host.share().repo
    return len(list(repo.history_items(repo.read_head().root)))


def test_a_daemon_with_retention_forgets_and_prunes_once_a_day(daemon_host):
    host, wall, sync = daemon_host
    host.write("big.bin", os.urandom(200_000))
    status = sync()  # the first pass: nothing to forget yet, but the day starts now
    assert status["last_forget"]["roots_forgotten"] == 0 and status["last_prune"]["deleted_objects"] == 0
    first = status["last_forget"]["at"]
    host.remove("big.bin")
    for n in range(4):
        host.write("notes.txt", f"edit {n}")
        status = sync()
    before = history_length(host)  # the watcher may have run a pass of its own between two of these
    assert before >= 5 and status["last_forget"]["at"] == first  # not a day yet

    wall.offset = timedelta(days=1, minutes=1)
    host.write("notes.txt", "a day later")
    status = sync()
    assert status["last_forget"]["roots_forgotten"] >= before - 1 and status["last_forget"]["at"] != first
    assert status["last_prune"]["deleted_objects"] == 0 and status["last_prune"]["sweep_at"] is not None
    head = host.share().repo.read_root(host.share().repo.read_head().root)
    assert head.gc.state == "marked"  # the blocks only forgotten roots held wait out the grace period

    wall.offset += timedelta(minutes=30)
    status = sync()
    assert status["last_prune"]["deleted_objects"] == 0  # the mark is half an hour old

    wall.offset += timedelta(minutes=31)
    status = sync()
    assert status["last_prune"]["deleted_objects"] >= 4 and status["last_prune"]["sweep_at"] is None
    assert check_share(host.share().repo).problems == []
    line = status_lines(config.load(str(host.config)), ["docs"])[0]
    assert "root(s) forgotten" in line and "object(s)" in line and "freed" in line


def test_a_daemon_without_retention_keeps_everything(hosts, tmp_path):
    host = hosts("laptop", str(tmp_path / "store"))
    host.config.write_text("debounce = 0\n" + host.config.read_text())
    wall = WallClock()
    worker = ShareWorker(config.load(str(host.config)), "docs", now=wall)
    worker.start()
    try:
        for n in range(3):
            host.write("notes.txt", f"edit {n}")
            wall.offset += timedelta(days=2)
            req = worker.request_pass()
            assert req.done.wait(120) and "error" not in req.result
        status = worker.status()
        assert status["last_forget"] is None and status["last_prune"] is None
        assert history_length(host) >= 3
    finally:
        worker.stop()
        worker.join(60)
