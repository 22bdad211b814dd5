"""A pass that loses its head swap after pulling: the next attempt merges from what it pulled (issue 22, case 7)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import pytest
from helpers import SETTLED

from fogsync.store.wrapper import Wrapper

NOW = datetime(2026, 11, 21, 23, 34, 58, tzinfo=timezone.utc)
@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://rebase-{uuid.uuid4().hex}"
    return str(tmp_path / "store")


@pytest.fixture
def three(hosts, store):
    made = []
    for name in ("A", "B", "C"):
        h = hosts(name, store)
        h.share().now = lambda: NOW
        made.append(h)
    return made


class BeforeFirstSwap(Wrapper):
    """Runs ``action`` once, just before the first head swap through this store."""

    def __init__(self, inner, action) -> None:
        super().__init__(inner)
        self.action = action

    def put_if(self, key, data, expected_tag):
        action, self.action = self.action, None
        if action is not None:
            action()
        return self.inner.put_if(key, data, expected_tag)


def test_files_pulled_before_a_lost_swap_are_not_local_changes_of_the_next_attempt(three):
    a, b, c = three
    for h in three:
        h.write(f"own-{h.name}.txt", "0")
    for _ in range(2):
        for h in three:
            h.sync_here()
    b.write("own-B.txt", "1")
    b.sync_here()
    a.write("own-A.txt", "1")
    os.utime(a.path("own-A.txt"), ns=(SETTLED, SETTLED))  # its stat is trusted: only the rows can hide the edit

    def b_edits_again():
        b.write("own-B.txt", "2")
        b.sync_here()

    repo = a.share().repo
    inner = repo.store
    repo.store = BeforeFirstSwap(inner, b_edits_again)
    try:
        report = a.sync_here()
    finally:
        repo.store = inner
    assert report.attempts == 2
    assert report.conflicts == []
    for h in three:
        h.sync_here()
    for h in three:
        h.sync_here()
        assert sorted(h.tree()) == ["own-A.txt", "own-B.txt", "own-C.txt"]
        assert h.read("own-B.txt") == b"2" and h.read("own-A.txt") == b"1"
