"""fogsync.daemon.service: a share a pass refused is held until a request with consent (in-process worker)."""

from __future__ import annotations

import time

import pytest

from fogsync.config import file as configmod
from fogsync.daemon.service import ShareWorker
from fogsync.folder.marker import MARKER

TIMEOUT = 30.0


@pytest.fixture
def worker_of():
    started = []

    def start(h) -> ShareWorker:
        w = ShareWorker(configmod.load(str(h.config)), "docs")
        w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
        w.join(TIMEOUT)


def state_becomes(w: ShareWorker, state: str) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while (s := w.status())["state"] != state:
        assert time.monotonic() < deadline, s
        time.sleep(0.02)
    return s


def test_a_refused_share_is_held_until_a_request_gives_consent(hosts, tmp_path, worker_of):
    h = hosts("laptop", str(tmp_path / "store"))
    for i in range(22):
        h.write(f"f{i:02}", str(i))
    h.sync_here()
    h.close()
    for i in range(12):
        h.remove(f"f{i:02}")
    w = worker_of(h)
    s = state_becomes(w, "held")
    assert "--allow-mass-delete" in s["reason"] and s["retry_in"] is None and not s["in_step"]
    req = w.request_pass()  # asked without the flag: refused again, still held
    assert req.done.wait(TIMEOUT) and "--allow-mass-delete" in req.result["error"]
    assert w.status()["state"] == "held"
    req = w.request_pass({"allow_mass_delete": True})
    assert req.done.wait(TIMEOUT) and "error" not in req.result, req.result
    assert req.result["report"]["committed"]["version"] == 2
    assert state_becomes(w, "idle")["reason"] is None


def test_a_folder_without_its_marker_is_held_and_tried_again_on_its_own(hosts, tmp_path, worker_of):
    h = hosts("laptop", str(tmp_path / "store"))
    h.write("f", "1")
    h.sync_here()
    h.close()
    h.remove(MARKER)
    w = worker_of(h)
    s = state_becomes(w, "held")
    assert MARKER in s["reason"] and s["retry_in"] is not None
    h.write(MARKER, "")
    state_becomes(w, "idle")


def test_sync_carries_its_consent_over_the_socket(tmp_path):
    from types import SimpleNamespace

    from fogsync.daemon import control

    asked = []
    server = control.Server(control.socket_path(str(tmp_path)),
                            lambda req: asked.append(req) or {"ok": True, "pid": 7, "results": []})
    server.start()
    try:
        cfg = SimpleNamespace(state_dir=str(tmp_path))
        assert control.ask_to_sync(cfg, ["docs"], accept_rollback=True) == (7, [])
        assert control.ask_to_sync(cfg, ["docs"], allow_mass_delete=True) == (7, [])
    finally:
        server.stop()
    assert [(r["accept_rollback"], r["allow_mass_delete"]) for r in asked] == [(True, False), (False, True)]

