"""A first pull in small rounds: rounds come mid-walk, and directories finish in later rounds."""

from __future__ import annotations

import dataclasses
import os
import random

import pytest
from helpers import CountingState, committed_tree, remembered_scan_holds, settled

from fogsync.engine import first_pull
from fogsync.engine.sync import sync_share
from fogsync.platform.processes import PROCESSES_MIN


@pytest.fixture
def store_path(tmp_path) -> str:
    return str(tmp_path / "store")


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("round_at", [1, 7, first_pull.ROUND])
def test_a_first_pull_in_small_rounds_writes_the_tree_its_rows_and_a_scan_that_vouches(
        hosts, store_path, monkeypatch, round_at):
    monkeypatch.setattr(first_pull, "ROUND", round_at)
    laptop, desktop = hosts("laptop", store_path), hosts("desktop", store_path)
    files = {f"many/d{i % 30:02d}/e{i % 3}/f{i:04d}.txt": data(i % 700, i) for i in range(PROCESSES_MIN + 100)}
    files.update({"top.bin": data(200_000, 1), "a/b/c/deep.txt": b"deep", "empty.txt": b""})
    for path, content in files.items():
        settled(laptop, path, content)
    os.makedirs(laptop.path("a/empty-dir"))
    laptop.sync_here()
    tree = committed_tree(laptop.share().repo)

    report = desktop.sync_here()
    assert report.problems == [] and report.committed is None
    assert desktop.tree() == laptop.tree()
    share = desktop.share()
    rows, stats = share.state.load(share.name)
    assert rows == tree
    assert stats == {p: (len(c), os.stat(desktop.path(p)).st_mtime_ns, os.stat(desktop.path(p)).st_ino)
                     for p, c in files.items()}
    assert share.state.share(share.name).base == share.repo.read_head().root
    assert remembered_scan_holds(share)


def test_the_pass_after_a_first_pull_loads_no_state_rows(hosts, store_path):
    laptop, desktop = hosts("laptop", store_path), hosts("desktop", store_path)
    for i in range(300):
        settled(laptop, f"d{i % 7}/x{i % 3}/f{i}.txt", f"file {i}")
    os.makedirs(laptop.path("d1/empty"))
    os.symlink("d0", laptop.path("link"))
    laptop.sync_here()
    desktop.sync_here()
    share = desktop.share()
    assert remembered_scan_holds(share)
    counting = CountingState(share.state.path)
    try:
        report = sync_share(dataclasses.replace(share, state=counting))
        assert report.committed is None and report.written == 0
        assert (counting.loads, counting.dir_loads) == (0, 0)
    finally:
        counting.close()
