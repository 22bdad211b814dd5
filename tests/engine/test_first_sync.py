"""A share's first sync into an empty store: the state has no base for it and the store no head.

These pin down what that pass leaves behind through public interfaces only
(``sync_share``, ``Share``, the store read back through ``Repo``, the state
through ``State.load``, faults through ``FaultyStore`` and a ``Wrapper``),
so they hold whichever way the pass walks the folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import stat

import pytest
from helpers import (
    LONG_NAME,
    SETTLED,
    TOO_DEEP,
    CountingState,
    Recorder,
    committed_tree,
    described,
    expected,
    file_rows,
    folder_tree,
    nest_past_path_max,
    on_store,
    remembered_scan_holds,
    settled,
)

from fogsync.engine import first, restore
from fogsync.engine.sync import sync_share
from fogsync.errors import FogsyncError, StoreError
from fogsync.folder.ignore import IGNORE_FILE
from fogsync.format.tree import FILE
from fogsync.platform.processes import PROCESSES_MIN
from fogsync.store.faulty import FaultyStore
from fogsync.store.local import LocalStore
from fogsync.store.wrapper import Wrapper

NOW_NS = SETTLED + 3600 * 1_000_000_000  # the share's clock in the tests that set one
SECOND = 1_000_000_000


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def no_first_sync_left(h) -> None:
    """The state and the store hold nothing of a first sync: no base, no rows, no head."""
    info = h.share().state.share(h.share().name)
    assert info is None or info.base is None
    assert file_rows(h) == ({}, {})
    assert h.share().repo.read_head().root is None


# --- 1. a varied tree ----------------------------------------------------------------------

VARIED = {
    "a/b/c/d/deep.txt": data(500, 1),  # four directories deep
    "a/b/c/d/empty-too": b"",
    "empty.txt": b"",
    "small.txt": data(500, 2),
    "a/b/seventy.bin": data(70 * 1024, 3),
    "a/three-hundred.bin": data(300 * 1024, 4),
    "big/two.bin": data(2 * 1024 * 1024, 5),
    "run.sh": b"#!/bin/sh\necho hello\n",
    "twin-one.bin": data(5000, 6),
    "a/b/c/twin-two.bin": data(5000, 6),
    "ünïcødé/日本語.txt": "こんにちは\n".encode(),
    "ünïcødé/🎉 party.txt": data(123, 7),
}
VARIED_DIRS = ("empty-dir", "a/b/c/d/empty-deep")
VARIED_LINKS = {"link-to-deep": "a/b/c/d/deep.txt"}


def make_varied(h) -> None:
    for path, content in VARIED.items():
        h.write(path, content)
    for d in VARIED_DIRS:
        h.path(d).mkdir(parents=True)
    for path, target in VARIED_LINKS.items():
        os.symlink(target, h.path(path))
    h.path("run.sh").chmod(0o755)


def test_a_first_sync_commits_every_path_of_a_varied_tree_as_it_is(laptop, desktop):
    make_varied(laptop)
    report = laptop.sync_here()
    assert report.committed is not None and report.committed.version == 1 and report.problems == []
    repo = laptop.share().repo
    assert [root.version for _, root in repo.history(repo.read_head().root)] == [1]  # one root, the whole tree
    tree = committed_tree(repo)
    assert described(tree) == expected(VARIED, VARIED_DIRS, VARIED_LINKS, execs={"run.sh"})
    assert report.pushed == len(VARIED) and report.pushed_bytes == sum(map(len, VARIED.values()))


def test_a_second_host_gets_a_first_sync_byte_for_byte(laptop, desktop):
    make_varied(laptop)
    laptop.sync_here()
    report = desktop.sync_here()
    assert report.committed is None and report.written >= len(VARIED)
    assert desktop.tree() == laptop.tree()
    assert desktop.read("big/two.bin") == VARIED["big/two.bin"]
    assert os.stat(desktop.path("run.sh")).st_mode & stat.S_IXUSR
    assert os.readlink(desktop.path("link-to-deep")) == "a/b/c/d/deep.txt"


# --- 2. the state a first sync leaves --------------------------------------------------------


def test_a_first_sync_leaves_one_state_row_per_committed_path_with_the_files_stats(laptop):
    for path, content in VARIED.items():
        settled(laptop, path, content)
    laptop.path("empty-dir").mkdir()
    laptop.sync_here()
    rows, stats = file_rows(laptop)
    tree = committed_tree(laptop.share().repo)
    assert rows == tree and set(rows) == set(expected(VARIED, ["empty-dir"]))
    assert stats == {p: (len(d), SETTLED, os.stat(laptop.path(p)).st_ino) for p, d in VARIED.items()}


def test_a_pass_after_a_first_sync_that_changed_nothing_loads_no_state_rows(laptop):
    for path, content in VARIED.items():
        settled(laptop, path, content)
    laptop.path("empty-dir").mkdir()
    os.symlink("small.txt", laptop.path("ln"))
    laptop.sync_here()
    assert remembered_scan_holds(laptop.share())  # the first sync vouched for every directory it scanned
    share = laptop.share()
    counting = CountingState(share.state.path)
    try:
        report = sync_share(dataclasses.replace(share, state=counting))
        assert report.committed is None and report.pushed == 0
        assert (counting.loads, counting.dir_loads) == (0, 0)
    finally:
        counting.close()


@pytest.mark.parametrize("resolve_at", [1, 7])
def test_a_first_sync_resolving_in_small_rounds_leaves_the_same_tree_rows_and_vouched_scan(
        laptop, desktop, monkeypatch, resolve_at):
    # Rounds come mid-walk (while worker processes still seal), and parents complete in later rounds.
    monkeypatch.setattr(first, "RESOLVE_AT", resolve_at)
    files = {**VARIED, **{f"many/d{i % 30:02d}/f{i:04d}.txt": data(i % 700, i) for i in range(PROCESSES_MIN + 100)}}
    for path, content in files.items():
        settled(laptop, path, content)
    report = laptop.sync_here()
    assert report.pushed == len(files) and report.problems == []
    tree = committed_tree(laptop.share().repo)
    assert described(tree) == expected(files)
    assert file_rows(laptop)[0] == tree
    assert remembered_scan_holds(laptop.share())
    assert laptop.sync_here().committed is None
    desktop.sync_here()
    assert desktop.tree() == laptop.tree()


# --- 3. many small files ---------------------------------------------------------------------


def test_a_first_sync_of_many_small_files_commits_and_records_each(laptop, tmp_path):
    files = {f"dir{i % 50:02d}/file{i:04d}.txt": data(i % 1025, i) for i in range(2500)}
    assert len(files) > PROCESSES_MIN  # enough to be sealed in worker processes
    for path, content in files.items():
        settled(laptop, path, content)
    report = laptop.sync_here()
    assert report.pushed == len(files) and report.problems == []
    repo = laptop.share().repo
    tree = committed_tree(repo)
    assert described(tree) == expected(files)
    rows, stats = file_rows(laptop)
    assert rows == tree
    assert stats == {p: (len(d), SETTLED, os.stat(laptop.path(p)).st_ino) for p, d in files.items()}
    restore.restore(repo, tree, str(tmp_path / "restored"))
    assert folder_tree(tmp_path / "restored") == laptop.tree()


# --- 4. a store that fails part-way ----------------------------------------------------------


def test_a_first_sync_the_store_fails_leaves_nothing_and_the_next_pass_commits_it_all(laptop, desktop, store_path):
    files = {f"d{i}/f{i}.bin": data(400 * 1024, 100 + i) for i in range(12)}
    for path, content in files.items():
        laptop.write(path, content)
    store = FaultyStore(LocalStore(store_path))
    share = on_store(laptop.share(), store)
    store.fail_on("put", lambda key: StoreError(f"store is full: {key}"), after=3, times=None,
                  key_contains="/blocks/")
    try:
        with pytest.raises(FogsyncError) as failed:
            sync_share(share)
        assert isinstance(failed.value, StoreError) and "store is full" in str(failed.value)
        assert "\n" not in str(failed.value)
        assert store.failed and store.calls["put"] > 3  # it failed part-way, after some blocks were stored
        no_first_sync_left(laptop)
        store.heal()
        report = sync_share(share)
    finally:
        share.repo.close()
    assert report.committed is not None and report.committed.version == 1
    assert described(committed_tree(laptop.share().repo)) == expected(files)
    desktop.sync_here()
    assert desktop.tree() == laptop.tree()


# --- 5. another host's first root lands during this host's first sync ------------------------


class OtherHostFirst(Wrapper):
    """A store on which ``other`` syncs just before this host's first head swap goes through."""

    def __init__(self, inner, other) -> None:
        super().__init__(inner)
        self.other, self.swaps = other, 0

    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        if key.endswith("/head"):
            self.swaps += 1
            if self.swaps == 1:
                assert self.other.sync_here().committed.version == 1  # the share's first root is the other's
        return super().put_if(key, data, expected_tag)


def test_two_hosts_first_syncing_at_once_lose_nothing_and_converge(laptop, desktop, store_path):
    laptop.write("laptop.txt", "from laptop\n")
    laptop.write("both/same.txt", "identical on both\n")
    laptop.write("both/edited.txt", "laptop's version\n")
    desktop.write("desktop.txt", "from desktop\n")
    desktop.write("both/same.txt", "identical on both\n")
    desktop.write("both/edited.txt", "desktop's version\n")
    desktop.write("desktop-only/deep/x.bin", data(100_000, 9))
    store = OtherHostFirst(LocalStore(store_path), desktop)
    share = on_store(laptop.share(), store)
    try:
        report = sync_share(share)
    finally:
        share.repo.close()
    assert store.swaps == 2 and report.attempts == 2  # lost its first swap to desktop's root, won the next
    assert report.committed.version == 2
    desktop.sync_here()
    assert laptop.sync_here().committed is None
    tree = laptop.tree()
    assert desktop.tree() == tree
    assert tree["laptop.txt"][1] == b"from laptop\n" and tree["desktop.txt"][1] == b"from desktop\n"
    assert tree["both/same.txt"][1] == b"identical on both\n"
    assert tree["desktop-only/deep/x.bin"][1] == data(100_000, 9)
    edits = sorted(v[1] for p, v in tree.items() if p.startswith("both/edited"))
    assert edits == [b"desktop's version\n", b"laptop's version\n"]  # one under the name, one as a conflict copy
    assert file_rows(laptop)[0] == committed_tree(laptop.share().repo) == file_rows(desktop)[0]


# --- 6. an unreadable directory --------------------------------------------------------------

def _shorten(h, rel: str) -> str:
    """Each of those directories renamed to one letter: every one can be opened. Returns the file's path now."""
    fd = os.open(h.path(rel), os.O_RDONLY)
    try:
        for _ in range(TOO_DEEP):
            os.rename(LONG_NAME, "s", src_dir_fd=fd, dst_dir_fd=fd)
            inner = os.open("s", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    return rel + "/s" * TOO_DEEP + "/hidden.txt"


def test_a_first_sync_commits_all_but_a_directory_it_cannot_list_and_a_later_pass_takes_it(laptop):
    laptop.write("top.txt", "top\n")
    laptop.write("deep/visible.txt", "visible\n")
    nest_past_path_max(laptop, "deep", b"deep down\n")
    report = laptop.sync_here()
    assert report.committed is not None
    assert any("cannot read" in p and LONG_NAME in p for p in report.problems)
    tree = committed_tree(laptop.share().repo)
    assert tree["top.txt"].type == FILE and tree["deep/visible.txt"].type == FILE
    assert not [p for p in tree if p.endswith("hidden.txt")]
    now = _shorten(laptop, "deep")
    report = laptop.sync_here()
    assert report.committed is not None and report.problems == []
    tree = committed_tree(laptop.share().repo)
    assert tree[now].sha256 == hashlib.sha256(b"deep down\n").hexdigest()
    assert not [p for p in tree if LONG_NAME in p] and "deep/visible.txt" in tree


# --- 7. files still being written, and files too fresh to trust ------------------------------


def test_a_first_sync_defers_files_written_within_the_settle_window_and_a_later_pass_commits_them(laptop):
    share = laptop.share()
    share.clock_ns, share.settle_ns = (lambda: NOW_NS), 60 * SECOND
    settled(laptop, "done.txt", "finished long ago\n")
    settled(laptop, "sub/writing.txt", "still being written\n", NOW_NS - 10 * SECOND)  # past RACY_NS, not settled
    report = laptop.sync_here()
    assert report.deferred == ["sub/writing.txt"] and report.committed is not None
    tree = committed_tree(share.repo)
    assert "done.txt" in tree and "sub/writing.txt" not in tree
    assert "sub/writing.txt" not in file_rows(laptop)[0]
    share.clock_ns = lambda: NOW_NS + 60 * SECOND
    report = laptop.sync_here()
    assert report.deferred == [] and report.committed is not None
    assert committed_tree(share.repo)["sub/writing.txt"].sha256 == hashlib.sha256(b"still being written\n").hexdigest()


def test_a_first_sync_commits_a_racily_clean_file_but_keeps_no_stat_for_it(laptop):
    share = laptop.share()
    share.clock_ns = lambda: NOW_NS
    settled(laptop, "old.txt", "old\n")
    settled(laptop, "racy.txt", "now\n", NOW_NS - SECOND)  # within RACY_NS of the scan
    laptop.sync_here()
    tree = committed_tree(share.repo)
    assert tree["racy.txt"].sha256 == hashlib.sha256(b"now\n").hexdigest()
    rows, stats = file_rows(laptop)
    assert "racy.txt" in rows and "racy.txt" not in stats and "old.txt" in stats
    with open(laptop.path("racy.txt"), "r+") as f:  # same file, same size, and the mtime put back
        f.write("NOW\n")
    os.utime(laptop.path("racy.txt"), ns=(NOW_NS - SECOND, NOW_NS - SECOND))
    share.clock_ns = lambda: NOW_NS + 10 * SECOND
    assert laptop.sync_here().committed is not None
    assert committed_tree(share.repo)["racy.txt"].sha256 == hashlib.sha256(b"NOW\n").hexdigest()
    assert "racy.txt" in file_rows(laptop)[1]  # read again, long after its mtime: now trusted


# --- 8. ignore rules and exclude patterns ----------------------------------------------------


def test_a_first_sync_leaves_out_ignored_and_excluded_paths(laptop, desktop):
    laptop.write(IGNORE_FILE, "*.log\nbuild/\n!keep.log\n")
    kept = {IGNORE_FILE: b"*.log\nbuild/\n!keep.log\n", "notes.txt": b"notes\n", "sub/keep.log": b"kept\n",
            "sub/code.py": b"print()\n"}
    for path, content in kept.items():
        laptop.write(path, content)
    for path in ("app.log", "sub/deep/debug.log", "build/out.o", "sub/build/x", "draft.txt.swp",
                 "private/key.txt", "sub/secret-plans.txt"):
        laptop.write(path, "left out\n")
    laptop.share().exclude = ("private/", "secret-*")
    laptop.sync_here()
    want = expected(kept, dirs=["sub/deep"])  # it holds only an ignored file: the directory itself is kept
    assert described(committed_tree(laptop.share().repo)) == want
    assert set(file_rows(laptop)[0]) == set(want)
    desktop.sync_here()
    assert set(desktop.tree()) == set(want)


# --- 9. progress ------------------------------------------------------------------------------


def test_a_first_sync_counts_as_many_files_and_bytes_as_it_pushes(laptop):
    make_varied(laptop)
    for i in range(40):
        laptop.write(f"many/{i}.txt", data(i * 10, 200 + i))
    progress = laptop.share().progress = Recorder()
    report = laptop.sync_here()
    files = len(VARIED) + 40
    total = sum(map(len, VARIED.values())) + sum(i * 10 for i in range(40))
    assert (report.pushed, report.pushed_bytes) == (files, total)
    assert progress.ends()["pushing"] == (files, files, total, total)
