"""fogsync.daemon.service: what ``status`` counts as waiting, from where the watcher saw changes
(an in-process worker with its real watcher). Directories listed are counted with Python's audit
hook for ``os.scandir``: the real calls."""

from __future__ import annotations

import time

import pytest
from helpers import settled

from fogsync.config import file as configmod
from fogsync.daemon import control
from fogsync.daemon.service import ShareWorker

TIMEOUT = 30.0
DIRS = [f"d{i}/e{j}" for i in range(4) for j in range(3)]


@pytest.fixture
def worker(hosts, tmp_path):
    """A synced host's worker, started, with a debounce long enough that the test sees what waits."""
    h = hosts("laptop", str(tmp_path / "store"))
    h.config.write_text(h.config.read_text().replace("\n[shares", "debounce = 60\nmax_delay = 120\n\n[shares", 1))
    for d in DIRS:
        for k in range(3):
            settled(h, f"{d}/f{k}.txt", f"{d} {k}\n")
    h.sync_here()
    h.close()
    w = ShareWorker(configmod.load(str(h.config)), "docs")
    w.start()
    w.host = h
    status_until(w, lambda s: s["in_step"])  # the start pass is done
    yield w
    w.stop()
    w.join(TIMEOUT)


def status_until(w: ShareWorker, done) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while not done(s := w.status()):
        assert time.monotonic() < deadline, s
        time.sleep(0.02)
    return s


def full_count(w: ShareWorker) -> tuple[int, int]:
    share = w.host.share()
    return control.waiting(share.folder, share.exclude, share.state, share.name)


def test_status_lists_only_where_the_watcher_saw_changes(worker, scandirs):
    h = worker.host
    settled(h, "d2/e1/new.txt", "12345")
    settled(h, "d0/e0/f1.txt", "changed, settled\n")
    h.remove("d3/e2/f0.txt")
    s = status_until(worker, lambda s: s["waiting_files"] == 3)  # once the watcher has said so
    assert (s["waiting_bytes"], s["in_step"], s["state"]) == (5 + 17, False, "idle")
    s = scandirs.during(worker.status)
    assert (s["waiting_files"], s["waiting_bytes"]) == (3, 22) == full_count(worker)
    assert scandirs.calls == 7  # '', d0, d0/e0, d2, d2/e1, d3, d3/e2: not the 17 directories


def test_when_the_watcher_cannot_tell_status_scans_the_whole_folder(worker, scandirs):
    h = worker.host
    status_until(worker, lambda s: s["waiting_files"] == 0)
    h.write(".fogsyncignore", "*.tmp\n")  # new rules: only a full scan can tell what they change
    settled(h, "d1/e1/new.txt", "x")
    status_until(worker, lambda s: s["waiting_files"] == 2)  # .fogsyncignore is synced too
    s = scandirs.during(worker.status)
    assert s["waiting_files"] == 2 and scandirs.calls == 1 + len(DIRS) + 4  # every directory
