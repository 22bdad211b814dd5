"""A share's first pull: the state has no base for it and no rows, the store has a head, the folder is empty.

Host A (the laptop) commits first; host B (the desktop) joins with an empty
folder. These pin down what B's first pass leaves behind through public
interfaces only (``sync_share``, ``Share``, the store read back through
``Repo``, the state through ``State.load`` / ``State.share``, faults through
``FaultyStore`` and ``Wrapper``, progress through a ``Progress``), so they
hold whichever way the pass walks the remote tree: the whole tree at once,
or a directory at a time (``first_pull``, whose rounds the last test makes small).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import stat

import pytest
from helpers import (
    SETTLED,
    TAMPERED,
    CountingState,
    Recorder,
    committed_tree,
    described,
    expected,
    file_rows,
    flip_last_block,
    on_store,
    remembered_scan_holds,
    settled,
    temporary_files,
)

from fogsync.engine import first_pull
from fogsync.engine.progress import PULLING
from fogsync.engine.sync import sync_share
from fogsync.errors import FogsyncError, IntegrityError, StoreError
from fogsync.folder.ignore import IGNORE_FILE
from fogsync.folder.marker import MARKER
from fogsync.format.tree import DIR, FILE, SYMLINK
from fogsync.platform.processes import PROCESSES_MIN
from fogsync.store.faulty import FaultyStore
from fogsync.store.local import LocalStore

SECOND = 1_000_000_000
NOW_NS = SETTLED + 3600 * SECOND  # the share's clock in the tests that set one


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def base_of(h) -> bytes | None:
    info = h.share().state.share(h.share().name)
    return None if info is None else info.base


def head_of(h) -> bytes | None:
    return h.share().repo.read_head().root


def commit_files(h, files: dict[str, bytes]) -> None:
    """``files`` written in ``h``'s folder with settled mtimes, and synced."""
    for path, content in files.items():
        settled(h, path, content)
    h.sync_here()


def as_committed(h, folder_host) -> None:
    """``folder_host``'s folder holds exactly the tree ``h``'s share's head names."""
    assert described_folder(folder_host) == described(committed_tree(h.share().repo))


def described_folder(h) -> dict[str, tuple]:
    """``h``'s folder as ``described`` gives a committed tree (the marker left out)."""
    out = {}
    for path, item in h.tree().items():
        if item[0] == "dir":
            out[path] = (DIR,)
        elif item[0] == "symlink":
            out[path] = (SYMLINK, item[1])
        else:
            content = item[1]
            out[path] = (FILE, len(content), hashlib.sha256(content).hexdigest() if content else None, item[2])
    return out


# --- 1. a varied tree arrives byte for byte, with its mtimes and exec bits --------------------

VARIED = {
    "a/b/c/d/deep.txt": data(500, 1),
    "a/b/c/d/empty-too": b"",
    "empty.txt": b"",
    "small.txt": data(500, 2),
    "a/b/seventy.bin": data(70 * 1024, 3),  # two blocks
    "a/three-hundred.bin": data(300 * 1024, 4),
    "big/two.bin": data(2 * 1024 * 1024, 5),  # past 1 MiB
    "run.sh": b"#!/bin/sh\necho hello\n",
    "bin/tool": data(3000, 8),
    "twin-one.bin": data(5000, 6),
    "a/b/c/twin-two.bin": data(5000, 6),
    "ünïcødé/日本語.txt": "こんにちは\n".encode(),
    "ünïcødé/🎉 party.txt": data(123, 7),
}
VARIED_EXECS = ("run.sh", "bin/tool")
VARIED_DIRS = ("empty-dir", "a/b/c/d/empty-deep")
VARIED_LINKS = {"link-to-deep": "a/b/c/d/deep.txt", "a/up": "../small.txt", "dangling": "nowhere/at/all"}
MANY = {f"many/d{i % 30:02d}/f{i:04d}.txt": data(i % 700, 1000 + i) for i in range(PROCESSES_MIN + 100)}


def make_varied(h, files: dict[str, bytes]) -> None:
    """``files``, VARIED_DIRS and VARIED_LINKS in ``h``'s folder: each file and directory with an mtime of
    its own (settled), the execs executable."""
    for i, (path, content) in enumerate(files.items()):
        settled(h, path, content, SETTLED + i * SECOND)
    for d in VARIED_DIRS:
        h.path(d).mkdir(parents=True)
    for path, target in VARIED_LINKS.items():
        os.symlink(target, h.path(path))
    for path in VARIED_EXECS:
        h.path(path).chmod(0o755)
    dirs = sorted({p for p in expected(files, VARIED_DIRS, VARIED_LINKS) if h.path(p).is_dir()
                   and not h.path(p).is_symlink()}, key=lambda p: -p.count("/"))
    for i, d in enumerate(dirs):  # deepest first: setting a directory's mtime leaves its parent's alone
        os.utime(h.path(d), ns=(SETTLED - (i + 1) * SECOND,) * 2)


def test_a_first_pull_of_a_varied_tree_arrives_byte_for_byte_with_its_mtimes_and_exec_bits(laptop, desktop):
    files = {**VARIED, **MANY}
    make_varied(laptop, files)
    laptop.sync_here()
    tree = committed_tree(laptop.share().repo)
    assert described(tree) == expected(files, VARIED_DIRS, VARIED_LINKS, execs=VARIED_EXECS)
    report = desktop.sync_here()
    assert report.committed is None and report.problems == [] and report.conflicts == []
    assert report.written == len(tree)  # every file, directory and symlink
    assert desktop.tree() == laptop.tree()
    assert described_folder(desktop) == described(tree)
    for path, e in tree.items():
        s = os.lstat(desktop.path(path))
        assert s.st_mtime_ns == e.mtime, path  # files, directories and symlinks: as committed
        if e.type == FILE:
            assert bool(s.st_mode & stat.S_IXUSR) == e.exec == (path in VARIED_EXECS), path
    dir_mtimes = {p: os.lstat(laptop.path(p)).st_mtime_ns for p, e in tree.items() if e.type == DIR}
    assert {p: tree[p].mtime for p in dir_mtimes} == dir_mtimes  # as laptop's folder had them
    assert desktop.path(MARKER).exists() and temporary_files(desktop.folder) == []


# --- 2. the state a first pull leaves ---------------------------------------------------------


def test_a_first_pull_leaves_the_head_as_base_one_row_per_path_and_the_written_files_stats(laptop, desktop):
    files = {**VARIED, **{f"more/f{i:03d}.txt": data(i, 3000 + i) for i in range(200)}}
    make_varied(laptop, files)
    laptop.sync_here()
    desktop.sync_here()
    assert base_of(desktop) == head_of(desktop) is not None
    rows, stats = file_rows(desktop)
    tree = committed_tree(desktop.share().repo)
    assert rows == tree
    assert stats == {p: (s.st_size, s.st_mtime_ns, s.st_ino) for p in files
                     for s in [os.lstat(desktop.path(p))]}
    assert all(stats[p][1] == tree[p].mtime for p in files)
    report = desktop.sync_here()
    assert report.committed is None and report.written == report.removed == 0 and report.problems == []
    assert remembered_scan_holds(desktop.share())  # the pass in step vouched for every directory
    assert base_of(desktop) == head_of(desktop) and file_rows(desktop)[0] == tree


def test_a_first_pull_keeps_no_stat_for_a_file_whose_mtime_is_too_close_to_its_clock(laptop, desktop):
    settled(laptop, "old.txt", "old\n")
    settled(laptop, "racy.txt", "racy\n", NOW_NS - SECOND)  # within RACY_NS of desktop's clock
    laptop.sync_here()
    desktop.share().clock_ns = lambda: NOW_NS
    desktop.sync_here()
    rows, stats = file_rows(desktop)
    assert rows == committed_tree(desktop.share().repo) and set(stats) == {"old.txt"}
    assert desktop.read("racy.txt") == b"racy\n" and os.lstat(desktop.path("racy.txt")).st_mtime_ns == NOW_NS - SECOND
    report = desktop.sync_here()
    assert report.committed is None and report.written == 0 and set(file_rows(desktop)[1]) == {"old.txt"}
    desktop.share().clock_ns = lambda: NOW_NS + 10 * SECOND
    assert desktop.sync_here().committed is None
    s = os.lstat(desktop.path("racy.txt"))
    assert file_rows(desktop)[1]["racy.txt"] == (s.st_size, s.st_mtime_ns, s.st_ino)  # read again later: trusted


def test_the_pass_after_a_first_pull_loads_no_state_rows(laptop, desktop):
    files = {**VARIED, **{f"more/f{i:03d}.txt": data(i, 3000 + i) for i in range(200)}}
    make_varied(laptop, files)
    laptop.sync_here()
    desktop.sync_here()
    share = desktop.share()
    assert remembered_scan_holds(share)  # the pull vouched for every directory it wrote
    counting = CountingState(share.state.path)
    try:
        report = sync_share(dataclasses.replace(share, state=counting))
        assert report.committed is None and report.written == report.removed == 0
        assert (counting.loads, counting.dir_loads) == (0, 0)
    finally:
        counting.close()
    assert remembered_scan_holds(share)


# --- 3. syncing on after a first pull ---------------------------------------------------------


def test_after_a_first_pull_edits_go_both_ways(laptop, desktop):
    commit_files(laptop, {"a/one.txt": b"one\n", "a/b/two.txt": b"two\n", "top.txt": b"top\n"})
    desktop.sync_here()
    desktop.write("a/one.txt", "one, as desktop edited it\n")
    desktop.write("desktop/new.txt", "new on desktop\n")
    desktop.remove("top.txt")
    report = desktop.sync_here()
    assert report.committed is not None and report.committed.version == 2
    laptop.sync_here()
    assert laptop.read("a/one.txt") == b"one, as desktop edited it\n"
    assert laptop.read("desktop/new.txt") == b"new on desktop\n" and not laptop.path("top.txt").exists()
    laptop.write("a/b/two.txt", "two, as laptop edited it\n")
    laptop.remove("desktop")
    assert laptop.sync_here().committed.version == 3
    report = desktop.sync_here()
    assert report.committed is None and report.written >= 1 and report.removed >= 1
    assert desktop.read("a/b/two.txt") == b"two, as laptop edited it\n"
    assert not desktop.path("desktop").exists()
    assert desktop.tree() == laptop.tree()
    assert laptop.sync_here().committed is None and desktop.sync_here().committed is None
    assert file_rows(desktop)[0] == committed_tree(desktop.share().repo) == file_rows(laptop)[0]


# --- 4. a store that fails part-way through the pull -----------------------------------------


def test_a_first_pull_the_store_fails_keeps_no_base_and_no_rows_and_the_next_pass_completes(
        laptop, desktop, store_path):
    # Enough small files for worker processes and several batches: some are in place when the store fails.
    files = {f"small/d{i % 3}/s{i:04d}.txt": data(2000, 200 + i) for i in range(3000)}
    commit_files(laptop, files)
    store = FaultyStore(LocalStore(store_path))
    share = on_store(desktop.share(), store)
    store.fail_on("get", lambda key: StoreError(f"connection reset reading {key}"), after=80, times=None,
                  key_contains="/blocks/")
    try:
        with pytest.raises(FogsyncError) as failed:
            sync_share(share)
        assert isinstance(failed.value, StoreError) and "connection reset" in str(failed.value)
        assert "\n" not in str(failed.value)
        assert store.failed and store.calls["get"] > 80
        assert base_of(desktop) is None and file_rows(desktop) == ({}, {})
        assert temporary_files(desktop.folder) == []
        arrived = {p: v for p, v in desktop.tree().items() if v[0] == "file"}
        assert 0 < len(arrived) < len(files)  # it failed part-way, after some files were in place
        assert all(v[1] == files[p] for p, v in arrived.items())  # each as committed: nothing unverified
        store.heal()
        report = sync_share(share)
    finally:
        share.repo.close()
    assert report.committed is None and report.conflicts == [] and report.problems == []
    assert desktop.tree() == laptop.tree()
    tree = committed_tree(laptop.share().repo)
    assert base_of(desktop) == head_of(desktop) and file_rows(desktop)[0] == tree
    assert desktop.sync_here().committed is None


# --- 5. a tampered block ----------------------------------------------------------------------


def test_a_first_pull_fails_on_a_tampered_block_keeps_nothing_and_takes_the_file_once_rewritten(laptop, desktop, store_path):
    commit_files(laptop, {"bad.bin": data(200 * 1024, 11)})  # a root of its own: no block shared with others
    others = {"a.txt": b"a\n", "sub/b.txt": b"b\n", "sub/big.bin": data(150 * 1024, 12)}
    commit_files(laptop, others)
    tree = committed_tree(laptop.share().repo)
    local = on_store(laptop.share(), LocalStore(store_path)).repo  # the store's files, under no wrapper
    try:
        flip_last_block(local, tree["bad.bin"])
    finally:
        local.close()
    with pytest.raises(IntegrityError, match=TAMPERED) as failed:
        desktop.sync_here()
    assert "bad.bin" in str(failed.value) and "\n" not in str(failed.value)
    assert not desktop.path("bad.bin").exists() and temporary_files(desktop.folder) == []
    arrived = {p: v for p, v in desktop.tree().items() if v[0] == "file"}
    assert all(v[1] == others[p] for p, v in arrived.items())  # whatever arrived is as committed
    assert base_of(desktop) is None and file_rows(desktop) == ({}, {})
    with pytest.raises(IntegrityError, match=TAMPERED):
        desktop.sync_here()
    assert not desktop.path("bad.bin").exists() and temporary_files(desktop.folder) == []
    settled(laptop, "bad.bin", b"rewritten\n", SETTLED + 5 * SECOND)
    assert laptop.sync_here().committed is not None
    report = desktop.sync_here()
    assert report.problems == [] and report.conflicts == []
    assert desktop.read("bad.bin") == b"rewritten\n"
    assert desktop.tree() == laptop.tree()
    assert base_of(desktop) == head_of(desktop)


# --- 6. ignored paths --------------------------------------------------------------------------


def test_a_first_pull_leaves_out_what_this_host_ignores_and_never_deletes_it_from_the_store(laptop, desktop):
    commit_files(laptop, {"x.tmp": b"x\n", "d/y.tmp": b"y\n", "d/keep.txt": b"keep\n", "z.txt": b"z\n"})
    desktop.share().exclude = ("*.tmp",)
    report = desktop.sync_here()
    assert report.problems == [] and report.committed is None
    assert set(desktop.tree()) == {"d", "d/keep.txt", "z.txt"}
    tree = committed_tree(desktop.share().repo)
    assert file_rows(desktop)[0] == tree and {"x.tmp", "d/y.tmp"} <= set(tree)  # kept as the head has them
    assert desktop.sync_here().committed is None
    desktop.write("d/keep.txt", "kept, edited\n")
    assert desktop.sync_here().committed is not None
    tree = committed_tree(desktop.share().repo)
    assert {"x.tmp", "d/y.tmp"} <= set(tree)
    laptop.sync_here()
    assert laptop.read("x.tmp") == b"x\n" and laptop.read("d/y.tmp") == b"y\n"
    assert laptop.read("d/keep.txt") == b"kept, edited\n"
    assert not desktop.path("x.tmp").exists() and not desktop.path("d/y.tmp").exists()


def test_a_first_pull_leaves_an_ignored_file_of_this_host_alone_where_the_head_has_one(laptop, desktop):
    commit_files(laptop, {"x.tmp": b"x\n", "d/y.tmp": b"y\n", "d/keep.txt": b"keep\n"})
    desktop.share().exclude = ("*.tmp",)
    desktop.write("x.tmp", "desktop's own x\n")  # in the folder before the share was: ignored here
    report = desktop.sync_here()
    assert report.committed is None and report.problems == [] and report.conflicts == []
    assert desktop.tree() == {"d": ("dir",), "d/keep.txt": ("file", b"keep\n", False),
                              "x.tmp": ("file", b"desktop's own x\n", False)}
    assert file_rows(desktop)[0] == committed_tree(desktop.share().repo) and base_of(desktop) == head_of(desktop)
    assert desktop.sync_here().committed is None
    laptop.sync_here()
    assert laptop.read("x.tmp") == b"x\n" and laptop.read("d/y.tmp") == b"y\n"


def test_a_first_pull_writes_the_paths_an_ignore_file_it_brings_names(laptop, desktop):
    # The ignore rules are the folder's as the pass began: the ignore file the pull writes rules the next pass.
    commit_files(laptop, {"x.tmp": b"x\n", "d/y.tmp": b"y\n", "d/keep.txt": b"keep\n"})
    settled(laptop, IGNORE_FILE, "*.tmp\n")
    assert laptop.sync_here().committed.version == 2
    tree = committed_tree(laptop.share().repo)
    assert {"x.tmp", "d/y.tmp", IGNORE_FILE} <= set(tree)  # laptop ignores them now, and keeps them
    report = desktop.sync_here()
    assert report.problems == [] and report.written == len(tree)
    assert desktop.tree() == laptop.tree()
    assert file_rows(desktop)[0] == tree and base_of(desktop) == head_of(desktop)
    assert desktop.sync_here().committed is None and set(committed_tree(desktop.share().repo)) == set(tree)


# --- 7. a file the person makes during the pull, where the pull writes later -----------------


class WritesLate(Recorder):
    """Once the pull counts its first file, the person saves ``zz/late.txt`` in ``folder``."""

    def __init__(self, folder) -> None:
        super().__init__()
        self.folder, self.done = folder, False

    def add(self, files: int = 0, nbytes: int = 0) -> None:
        super().add(files, nbytes)
        if files and not self.done and self.snapshot().phase == PULLING:
            self.done = True
            late = self.folder / "zz" / "late.txt"
            late.parent.mkdir(parents=True, exist_ok=True)
            late.write_bytes(b"desktop's own\n")


def test_a_file_made_during_a_first_pull_where_the_pull_writes_later_loses_nothing(laptop, desktop):
    files = {f"a/f{i:02d}.txt": data(50 + i, 400 + i) for i in range(60)}
    files["zz/late.txt"] = b"laptop's\n"
    commit_files(laptop, files)
    progress = desktop.share().progress = WritesLate(desktop.folder)
    report = desktop.sync_here()
    assert progress.done
    assert report.attempts == 2  # the pull found the file in its way, and the pass started again
    assert report.committed is not None and len(report.conflicts) == 1
    lates = {p: v[1] for p, v in desktop.tree().items() if p.startswith("zz/")}
    assert len(lates) == 2 and lates.pop("zz/late.txt") == b"laptop's\n"  # the committed one keeps the name
    ((copy, content),) = lates.items()
    assert copy.startswith("zz/late (conflict from desktop ") and content == b"desktop's own\n"
    laptop.sync_here()
    assert desktop.sync_here().committed is None and laptop.sync_here().committed is None
    assert desktop.tree() == laptop.tree()
    assert all(desktop.read(p) == d for p, d in files.items() if p != "zz/late.txt")


# --- 8. progress --------------------------------------------------------------------------------


class PullTotals(Recorder):
    """Every (files_total, bytes_total) the pulling phase showed, as each file was counted."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: list[tuple] = []

    def _seen(self) -> None:
        s = self.snapshot()
        if s.phase == PULLING:
            self.totals.append((s.files_total or 0, s.bytes_total or 0))

    def phase(self, name, files_total=None, bytes_total=None) -> None:
        super().phase(name, files_total, bytes_total)
        self._seen()

    def add(self, files: int = 0, nbytes: int = 0) -> None:
        super().add(files, nbytes)
        self._seen()

    def grow(self, files: int = 0, nbytes: int = 0) -> None:
        super().grow(files, nbytes)
        self._seen()


def test_a_first_pull_counts_as_many_files_and_bytes_as_it_writes(laptop, desktop):
    files = {**VARIED, **{f"many/{i}.txt": data(i * 10, 200 + i) for i in range(40)}}
    make_varied(laptop, files)
    laptop.sync_here()
    progress = desktop.share().progress = PullTotals()
    desktop.sync_here()
    total = sum(map(len, files.values()))
    assert progress.ends()[PULLING] == (len(files), len(files), total, total)
    assert progress.totals and progress.totals[-1] == (len(files), total)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(progress.totals, progress.totals[1:]))


# --- 9. an empty head, and one deep file -----------------------------------------------------


def test_a_first_pull_of_an_emptied_share_writes_nothing_and_is_in_step(laptop, desktop):
    commit_files(laptop, {"a/one.txt": b"one\n", "two.txt": b"two\n"})
    laptop.remove("a")
    laptop.remove("two.txt")
    assert laptop.sync_here().committed.version == 2
    assert committed_tree(laptop.share().repo) == {}
    report = desktop.sync_here()
    assert report.committed is None and report.written == report.removed == 0 and report.problems == []
    assert desktop.tree() == {} and desktop.path(MARKER).exists()
    assert base_of(desktop) == head_of(desktop) is not None and file_rows(desktop) == ({}, {})
    assert desktop.sync_here().committed is None
    desktop.write("new.txt", "new\n")
    assert desktop.sync_here().committed.version == 3
    laptop.sync_here()
    assert laptop.read("new.txt") == b"new\n"


def test_a_first_pull_of_one_file_deep_down_makes_every_directory_on_its_way(laptop, desktop):
    deep = "/".join(f"level{i:02d}" for i in range(25)) + "/only.txt"
    commit_files(laptop, {deep: b"deep down\n"})
    report = desktop.sync_here()
    assert report.committed is None and report.problems == []
    assert desktop.read(deep) == b"deep down\n"
    assert desktop.tree() == laptop.tree() and len(desktop.tree()) == 26
    tree = committed_tree(desktop.share().repo)
    assert file_rows(desktop)[0] == tree
    assert all(os.lstat(desktop.path(p)).st_mtime_ns == e.mtime for p, e in tree.items())
    assert desktop.sync_here().committed is None


# --- 10. a share big enough for several rounds -----------------------------------------------


def test_a_first_pull_of_thousands_of_files_in_three_levels_arrives_whole(laptop, desktop):
    files = {f"t{d % 2}/m{d % 8}/d{d:02d}/f{j:02d}.txt": data((d * 70 + j) % 900, d * 70 + j)
             for d in range(40) for j in range(70)}
    assert len(files) > PROCESSES_MIN and len(files) > 2 * 1000
    commit_files(laptop, files)
    report = desktop.sync_here()
    assert report.committed is None and report.problems == []
    assert desktop.tree() == laptop.tree()
    tree = committed_tree(desktop.share().repo)
    assert described(tree) == expected(files)
    rows, stats = file_rows(desktop)
    assert rows == tree and base_of(desktop) == head_of(desktop)
    assert stats == {p: (len(d), SETTLED, os.stat(desktop.path(p)).st_ino) for p, d in files.items()}
    assert desktop.sync_here().committed is None


@pytest.mark.parametrize("round_at", [1, 7])
def test_a_first_pull_in_small_rounds_writes_the_tree_its_rows_and_a_scan_that_vouches(
        laptop, desktop, monkeypatch, round_at):
    # Rounds come mid-walk, and a directory is vouched for rounds after its own was written.
    monkeypatch.setattr(first_pull, "ROUND", round_at)
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
    assert stats == {p: (len(c), SETTLED, os.stat(desktop.path(p)).st_ino) for p, c in files.items()}
    assert share.state.share(share.name).base == share.repo.read_head().root
    assert remembered_scan_holds(share)
