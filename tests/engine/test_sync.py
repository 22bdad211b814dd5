"""sync_share with several hosts in one process: real folders, real SQLite, one store (issue 5).

Each host is a ``Host`` (tests/conftest.py) with its own config, state
database and folder; the store is a memory store or a local directory.
These tests pin the merge rules as the folders see them, the history they
leave (one chain, ``merged`` on merge commits), reuse of stored content,
and the refusal of two hosts with one name.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import sqlite3
import threading
import time
import uuid
import weakref
from datetime import datetime, timezone

import pytest
from helpers import SETTLED, remembered_scan_holds, settled, vouched_dirs

from fogsync.engine import prepare, pull
from fogsync.engine import sync as syncmod
from fogsync.engine import vouch as vouchmod
from fogsync.engine.check import check_share
from fogsync.engine.sync import restore_in_place, sync_share
from fogsync.errors import ConfigError, FogsyncError, Refusal
from fogsync.folder.state import State
from fogsync.format.tree import DIR, FILE
from fogsync.store import open_store

NOW = datetime(2026, 11, 21, 23, 34, 58, tzinfo=timezone.utc)
STAMP = "2026-11-21 2334"


@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://sync-{uuid.uuid4().hex}"
    return str(tmp_path / "store")


@pytest.fixture
def make(hosts, store):
    """``make(name)``: a host of the test's share, in-process, with a fixed clock for conflict names."""

    def one(name: str):
        h = hosts(name, store)
        h.share().now = lambda: NOW
        return h

    return one


@pytest.fixture
def two(make):
    return make("laptop"), make("desktop")


@pytest.fixture
def three(make):
    return make("laptop"), make("desktop"), make("server")


def sync_all(*hs, rounds: int = 2) -> None:
    for _ in range(rounds):
        for h in hs:
            h.sync_here()
            remembered_scan_holds(h.share())


def assert_same(*hs) -> dict:
    first = hs[0].tree()
    for h in hs[1:]:
        assert h.tree() == first, f"{h.name} differs from {hs[0].name}"
    return first


def head_tree(h) -> dict:
    repo = h.share().repo
    return repo.load_tree(repo.read_root(repo.read_head().root).root)


def chain(h) -> list:
    repo = h.share().repo
    return list(repo.history(repo.read_head().root))


def block_bytes(h) -> int:
    """Bytes of every block object of the share in the store."""
    repo = h.share().repo
    store = open_store(h.store)
    return sum(len(store.get(k)) for k in store.list(f"{repo.share_id}/blocks/"))


# --- the rules -------------------------------------------------------------------------------


def test_one_sided_changes_reach_every_host(three):
    laptop, desktop, server = three
    laptop.write("report.txt", "v1\n")
    laptop.write("a/b/c.txt", "deep\n")
    r = laptop.sync_here()
    assert r.committed.version == 1 and r.pushed == 2
    for h in (desktop, server):
        r = h.sync_here()
        assert r.committed is None and r.written >= 2  # pulling adds no root
    assert_same(*three)
    desktop.write("report.txt", "v2 from desktop\n")
    server.remove("a/b/c.txt")
    desktop.sync_here()
    server.sync_here()
    sync_all(*three)
    tree = assert_same(*three)
    assert tree["report.txt"][1] == b"v2 from desktop\n" and "a/b/c.txt" not in tree
    assert head_tree(laptop)["report.txt"].host == "desktop"
    assert [root.version for _, root in chain(laptop)] == [3, 2, 1]


def test_identical_change_on_both_keeps_one_copy(two):
    laptop, desktop = two
    laptop.write("report.txt", "v1\n")
    sync_all(laptop, desktop)
    for h in two:
        h.write("report.txt", "same edit\n")
        h.write("new.txt", "added on both\n")
    laptop.sync_here()
    r = desktop.sync_here()
    assert r.conflicts == []
    sync_all(*two)
    tree = assert_same(*two)
    assert set(tree) == {"report.txt", "new.txt"}
    assert tree["report.txt"][1] == b"same edit\n"


def test_both_changed_keeps_remote_under_the_name_and_local_as_a_copy(three):
    laptop, desktop, server = three
    laptop.write("docs/report.txt", "v1\n")
    laptop.write("Makefile", "all:\n")
    sync_all(*three)
    desktop.write("docs/report.txt", "desktop's edit\n")
    laptop.write("docs/report.txt", "laptop's edit\n")
    desktop.write("Makefile", "all: desktop\n")
    laptop.write("Makefile", "all: laptop\n")
    laptop.write("added.txt", "laptop adds\n")
    desktop.write("added.txt", "desktop adds\n")
    desktop.sync_here()
    r = laptop.sync_here()
    assert sorted(c.copy_path for c in r.conflicts) == [
        f"Makefile (conflict from laptop {STAMP})",
        f"added (conflict from laptop {STAMP}).txt",
        f"docs/report (conflict from laptop {STAMP}).txt",
    ]
    sync_all(*three)
    tree = assert_same(*three)
    assert tree["docs/report.txt"][1] == b"desktop's edit\n"
    assert tree[f"docs/report (conflict from laptop {STAMP}).txt"][1] == b"laptop's edit\n"
    assert tree["Makefile"][1] == b"all: desktop\n"
    assert tree[f"Makefile (conflict from laptop {STAMP})"][1] == b"all: laptop\n"
    assert tree["added.txt"][1] == b"desktop adds\n"
    assert tree[f"added (conflict from laptop {STAMP}).txt"][1] == b"laptop adds\n"
    # the conflict copy is an ordinary file: an edit to it syncs like any other
    server.write(f"docs/report (conflict from laptop {STAMP}).txt", "resolved\n")
    sync_all(*three)
    assert assert_same(*three)[f"docs/report (conflict from laptop {STAMP}).txt"][1] == b"resolved\n"
    listing = head_tree(desktop)
    assert listing[f"docs/report (conflict from laptop {STAMP}).txt"].host == "server"
    assert listing["docs/report.txt"].host == "desktop"


@pytest.mark.parametrize("deleter_first", [True, False])
def test_delete_against_change_the_change_wins(two, deleter_first):
    laptop, desktop = two
    laptop.write("d/report.txt", "v1\n")
    laptop.write("gone-dir/keep.txt", "v1\n")
    sync_all(*two)
    laptop.remove("d/report.txt")
    laptop.remove("gone-dir")
    desktop.write("d/report.txt", "edited\n")
    desktop.write("gone-dir/keep.txt", "edited too\n")
    order = (laptop, desktop) if deleter_first else (desktop, laptop)
    for h in order:
        h.sync_here()
    sync_all(*two)
    tree = assert_same(*two)
    assert tree["d/report.txt"][1] == b"edited\n"
    assert tree["gone-dir/keep.txt"][1] == b"edited too\n"


def test_delete_on_both_stays_gone(three):
    laptop, desktop, server = three
    laptop.write("x/old.txt", "old\n")
    laptop.write("keep.txt", "keep\n")
    sync_all(*three)
    laptop.remove("x")
    desktop.remove("x/old.txt")
    laptop.sync_here()
    desktop.sync_here()
    sync_all(*three)
    tree = assert_same(*three)
    assert "x/old.txt" not in tree and set(tree) <= {"keep.txt", "x"}


@pytest.mark.parametrize("file_side", ["laptop", "desktop"])
def test_file_against_directory_loses_neither(two, file_side):
    laptop, desktop = two
    laptop.write("seed.txt", "seed\n")
    sync_all(*two)
    filer, dirrer = (laptop, desktop) if file_side == "laptop" else (desktop, laptop)
    filer.write("thing", "a file\n")
    dirrer.write("thing/inside.txt", "in a directory\n")
    dirrer.write("thing/deeper/more.txt", "more\n")
    desktop.sync_here()
    laptop.sync_here()
    sync_all(*two)
    tree = assert_same(*two)
    files = {v[1] for v in tree.values() if v[0] == "file"}
    assert {b"a file\n", b"in a directory\n", b"more\n", b"seed\n"} <= files
    copies = [p for p in tree if p.startswith(f"thing (conflict from laptop {STAMP})")]
    assert copies, sorted(tree)
    # the remote (desktop, which committed first) keeps the name
    assert tree["thing"][0] == ("file" if file_side == "desktop" else "dir")


def test_whole_trees_deleted_or_replaced_by_a_file(two):
    laptop, desktop = two
    laptop.write("tree/a/b/c.txt", "c\n")
    laptop.write("tree/d.txt", "d\n")
    laptop.write("was-dir/x/y.txt", "y\n")
    sync_all(*two)
    laptop.remove("tree")
    laptop.remove("was-dir")
    laptop.write("was-dir", "now a file\n")
    laptop.sync_here()
    desktop.sync_here()
    tree = assert_same(*two)
    assert tree == {"was-dir": ("file", b"now a file\n", False)}
    assert head_tree(desktop)["was-dir"].type == "file"


def test_symlink_against_file_loses_neither(two):
    laptop, desktop = two
    laptop.write("seed.txt", "seed\n")
    sync_all(*two)
    os.symlink("seed.txt", desktop.path("link"))
    laptop.write("link", "a file named link\n")
    desktop.sync_here()
    laptop.sync_here()
    sync_all(*two)
    tree = assert_same(*two)
    assert tree["link"] == ("symlink", "seed.txt")
    assert tree[f"link (conflict from laptop {STAMP})"][1] == b"a file named link\n"


def test_directories_merge_recursively(three):
    laptop, desktop, server = three
    laptop.write("projects/alpha/readme.md", "alpha\n")
    laptop.write("projects/beta/readme.md", "beta\n")
    sync_all(*three)
    laptop.write("projects/alpha/src/main.py", "print('laptop')\n")
    laptop.write("projects/beta/readme.md", "beta, edited on laptop\n")
    desktop.write("projects/alpha/src/util.py", "# desktop\n")
    desktop.write("projects/gamma/new.txt", "gamma\n")
    server.remove("projects/alpha/readme.md")
    server.write("projects/beta/notes.txt", "server notes\n")
    for h in three:
        h.sync_here()
    sync_all(*three)
    tree = assert_same(*three)
    assert {p for p, v in tree.items() if v[0] == "file"} == {
        "projects/alpha/src/main.py", "projects/alpha/src/util.py", "projects/beta/readme.md",
        "projects/beta/notes.txt", "projects/gamma/new.txt",
    }
    assert tree["projects/beta/readme.md"][1] == b"beta, edited on laptop\n"
    assert not any("conflict" in p for p in tree)


def test_unchanged_subtrees_are_not_fetched(two):
    laptop, desktop = two
    for i in range(12):
        for j in range(3):
            laptop.write(f"dir{i}/sub{j}/file.txt", f"{i}/{j}\n")
    sync_all(*two)
    laptop.write("dir7/sub1/file.txt", "changed\n")
    laptop.sync_here()
    repo = desktop.share().repo
    fetched = []
    original = repo.read_small  # listings are read as bytes: a directory's size and sha256 are checked against them
    repo.read_small = lambda ref, what: (what.startswith("listing") and fetched.append(ref)) or original(ref, what)
    r = desktop.sync_here()
    assert r.written == 1
    assert len(fetched) == 3  # the top, dir7 and dir7/sub1: nothing else was read
    assert desktop.read("dir7/sub1/file.txt") == b"changed\n"


# --- content reuse ------------------------------------------------------------------------


def test_moves_and_copies_cost_no_upload(two):
    laptop, desktop = two
    big = os.urandom(300_000)
    laptop.write("inbox/big.bin", big)
    laptop.write("inbox/small.txt", "small\n")
    sync_all(*two)
    before = block_bytes(laptop)
    laptop.move("inbox/big.bin", "archive/2026/renamed.bin")
    laptop.move("inbox", "old-inbox")
    desktop.write("copy-of-big.bin", big)  # a copy on the other host
    laptop.sync_here()
    desktop.sync_here()
    sync_all(*two)
    tree = assert_same(*two)
    assert tree["archive/2026/renamed.bin"][1] == big and tree["copy-of-big.bin"][1] == big
    assert "inbox/big.bin" not in tree and tree["old-inbox/small.txt"][1] == b"small\n"
    grown = block_bytes(laptop) - before
    assert grown < 20_000, grown  # listings and roots only, never the 300 kB again


def test_content_already_in_the_remote_tree_is_not_uploaded(two):
    laptop, desktop = two
    laptop.write("seed.txt", "seed\n")
    sync_all(*two)
    big = os.urandom(200_000)
    laptop.write("from-laptop.bin", big)
    laptop.sync_here()
    before = block_bytes(laptop)
    desktop.write("same-on-desktop.bin", big)  # desktop has not pulled laptop's file yet
    desktop.sync_here()
    assert block_bytes(laptop) - before < 20_000
    sync_all(*two)
    assert assert_same(*two)["same-on-desktop.bin"][1] == big


# --- history ------------------------------------------------------------------------------


def test_merges_keep_one_chain_and_name_the_root_they_merged(three):
    laptop, desktop, server = three
    laptop.write("f.txt", "1\n")
    sync_all(*three)
    base = laptop.share().state.share("docs").base
    laptop.write("a.txt", "laptop\n")
    desktop.write("b.txt", "desktop\n")
    server.write("c.txt", "server\n")
    laptop.sync_here()
    r_desktop = desktop.sync_here()
    r_server = server.sync_here()
    assert r_desktop.committed.merged == (base,)
    assert r_server.committed.merged == (base,)
    sync_all(*three)
    roots = chain(laptop)
    assert [root.version for _, root in roots] == list(range(len(roots), 0, -1))
    for (ref, root), (older_ref, _) in zip(roots, roots[1:]):
        assert root.prev == older_ref
    assert [root.host for _, root in roots][:3] == ["server", "desktop", "laptop"]
    plain_commit = roots[2][1]
    assert plain_commit.merged == ()  # laptop's commit merged nothing
    assert check_share(laptop.share().repo).problems == []


def test_a_commit_landing_between_head_read_and_swap_is_merged(two, make):
    laptop, desktop = two
    server = make("server")
    laptop.write("f.txt", "1\n")
    sync_all(laptop, desktop, server)
    laptop.write("laptop.txt", "from laptop\n")
    laptop.write("f.txt", "laptop's f\n")
    desktop.write("desktop.txt", "from desktop\n")
    desktop.write("f.txt", "desktop's f\n")
    repo = laptop.share().repo
    inner = repo.store
    swaps = []

    class Racing:
        """Lets desktop commit just before laptop's first head swap."""

        def __getattr__(self, name):
            return getattr(inner, name)

        def put_if(self, key, data, expected_tag):
            if not swaps:
                swaps.append("raced")
                desktop.sync_here()
            swaps.append(key)
            return inner.put_if(key, data, expected_tag)

    repo.store = Racing()
    r = laptop.sync_here()
    repo.store = inner
    assert r.attempts == 2 and len(swaps) == 3  # lost the first swap, merged, won the second
    assert r.committed.merged
    sync_all(laptop, desktop, server)
    tree = assert_same(laptop, desktop, server)
    assert tree["laptop.txt"][1] == b"from laptop\n" and tree["desktop.txt"][1] == b"from desktop\n"
    assert tree["f.txt"][1] == b"desktop's f\n"
    assert tree[f"f (conflict from laptop {STAMP}).txt"][1] == b"laptop's f\n"
    versions = [root.version for _, root in chain(server)]
    assert versions == list(range(len(versions), 0, -1))


def test_hosts_syncing_at_once_in_threads_converge(three):
    for h in three:
        h.write(f"{h.name}.txt", "0")
    sync_all(*three)
    for rnd in range(1, 5):
        for h in three:
            h.write(f"{h.name}.txt", f"{rnd}")
            h.write("shared.txt", f"{h.name} {rnd}")
            h.write(f"dir{rnd}/{h.name}", "x")
        errors = []
        barrier = threading.Barrier(len(three))

        def run(h):
            try:
                barrier.wait()
                h.sync_here()
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(h,)) for h in three]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    sync_all(*three)
    tree = assert_same(*three)
    for h in three:
        assert tree[f"{h.name}.txt"][1] == b"4"
        assert all(f"dir{rnd}/{h.name}" in tree for rnd in range(1, 5))
    shared = {v[1] for p, v in tree.items() if p.startswith("shared")}
    assert {f"{h.name} 4".encode() for h in three} <= shared
    roots = chain(three[0])
    assert [root.version for _, root in roots] == list(range(len(roots), 0, -1))


# --- the folder is never overwritten blind ------------------------------------------------------


def test_an_edit_made_while_the_merge_is_applied_is_kept(two, monkeypatch):
    laptop, desktop = two
    laptop.write("f.txt", "v1\n")
    sync_all(*two)
    laptop.write("f.txt", "v2 from laptop\n")
    laptop.sync_here()
    original = pull.prepare
    edited = []

    def prepare(repo, dest, entry, source=None):
        tmp = original(repo, dest, entry, source)
        if dest.endswith("f.txt") and not edited:
            edited.append(dest)
            with open(dest, "w") as f:  # the person saves, right before fogsync would replace the file
                f.write("typed on desktop meanwhile\n")
        return tmp

    monkeypatch.setattr(pull, "prepare", prepare)
    r = desktop.sync_here()
    assert edited and r.attempts == 2
    sync_all(*two)
    tree = assert_same(*two)
    assert tree["f.txt"][1] == b"v2 from laptop\n"
    assert tree[f"f (conflict from desktop {STAMP}).txt"][1] == b"typed on desktop meanwhile\n"


@pytest.mark.parametrize("path", ["new.txt", "f.txt"])  # renamed in where nothing was, and replacing a file
def test_a_file_saved_right_after_fogsync_renames_its_own_in_is_pushed(two, monkeypatch, path):
    laptop, desktop = two
    laptop.write("f.txt", "v1\n")
    sync_all(*two)
    laptop.write(path, "v2 from laptop\n")
    laptop.sync_here()
    saved = []
    original = pull.stat_of
    pulled = hashlib.sha256(b"v2 from laptop\n").hexdigest()

    def then_save(entry, *stat):  # what pull records right after its rename, from the stat it wrote
        if not saved and entry.sha256 == pulled:
            saved.append(True)
            desktop.write(path, "copied in right after\n")  # before fogsync records what it wrote,
            os.utime(desktop.path(path), ns=(10**18, 10**18))  # keeping its old mtime (cp -p, an archive)
        return original(entry, *stat)

    monkeypatch.setattr(pull, "stat_of", then_save)
    desktop.sync_here()
    monkeypatch.undo()
    assert saved and desktop.read(path) == b"copied in right after\n"
    sync_all(*two)  # the next scan sees the file is not what the pull wrote, and pushes it
    assert assert_same(*two)[path][1] == b"copied in right after\n"


def test_pulling_a_type_change_takes_one_attempt(two):
    laptop, desktop = two
    laptop.write("x/y.txt", "y\n")
    laptop.write("f", "a file\n")
    sync_all(*two)
    laptop.remove("x")
    laptop.write("x", "x is a file now\n")
    laptop.remove("f")
    laptop.write("f/inside.txt", "f is a directory now\n")
    laptop.sync_here()
    r = desktop.sync_here()
    assert (r.attempts, r.written, r.removed) == (1, 3, 3)  # x/y.txt, x, f out; x, f, f/inside.txt in
    assert_same(*two)


def test_a_directory_holding_ignored_files_is_not_replaced_nor_lost(two):
    laptop, desktop = two
    laptop.write("x/y.txt", "y\n")
    sync_all(*two)
    desktop.write("x/notes.swp", "editor scratch\n")  # ignored: never synced, never deleted by a pull
    laptop.remove("x")
    laptop.write("x", "x is a file now\n")
    laptop.sync_here()
    desktop.sync_here()  # cannot make x a file: x still holds notes.swp
    assert desktop.read("x/notes.swp") == b"editor scratch\n"
    desktop.sync_here()
    laptop.sync_here()
    assert laptop.read("x") == b"x is a file now\n"  # and desktop did not undo laptop's change
    desktop.remove("x")
    sync_all(*two)
    assert assert_same(*two) == {"x": ("file", b"x is a file now\n", False)}


def test_a_conflict_copy_whose_source_changed_is_fetched_once_uploaded(two, monkeypatch):
    """The copy is written from the local file; if that changed, from the store, where the
    content this very pass sealed must already be (uploads run in the background)."""
    import time

    laptop, desktop = two
    laptop.write("f.txt", "v1\n")
    sync_all(*two)
    laptop.write("f.txt", "laptop's\n")
    laptop.sync_here()
    desktop.write("f.txt", "desktop's\n")
    repo = desktop.share().repo
    inner = repo.store

    class SlowPuts:
        def __getattr__(self, name):
            return getattr(inner, name)

        def put(self, key, data):
            time.sleep(0.3)
            inner.put(key, data)

    repo.close()  # the upload pool is made again, on the slow store
    repo.store = SlowPuts()
    original = pull.prepare
    changed = []

    def prepare(repo_, dest, entry, source=None):
        if source is not None and not changed:
            changed.append(source)
            with open(source, "w") as f:
                f.write("desktop's, saved again\n")  # the local source no longer holds that content
        return original(repo_, dest, entry, source)

    monkeypatch.setattr(pull, "prepare", prepare)
    desktop.sync_here()
    monkeypatch.undo()
    repo.store = inner
    assert changed
    sync_all(*two)
    content = {v[1] for v in assert_same(*two).values() if v[0] == "file"}
    assert {b"laptop's\n", b"desktop's\n", b"desktop's, saved again\n"} <= content


def test_a_file_created_where_the_merge_adds_one_is_merged_next_pass(two, monkeypatch):
    laptop, desktop = two
    laptop.write("seed.txt", "seed\n")
    sync_all(*two)
    laptop.write("n.txt", "laptop's\n")
    laptop.sync_here()
    import fogsync.engine.sync

    original = fogsync.engine.sync.apply

    def apply(*args, **kwargs):
        if not desktop.path("n.txt").exists():
            desktop.write("n.txt", "desktop's, saved after the scan\n")
        return original(*args, **kwargs)

    monkeypatch.setattr(fogsync.engine.sync, "apply", apply)
    desktop.sync_here()  # n.txt is in the way: left alone
    monkeypatch.undo()
    assert desktop.read("n.txt") == b"desktop's, saved after the scan\n"
    sync_all(*two)
    content = {v[1] for v in assert_same(*two).values() if v[0] == "file"}
    assert {b"laptop's\n", b"desktop's, saved after the scan\n"} <= content


def test_a_symlink_repointed_during_the_pass_is_never_written_through(two, tmp_path, monkeypatch):
    laptop, desktop = two
    outside = tmp_path / "outside"
    outside.mkdir()
    laptop.write("keep.txt", "k\n")
    os.symlink("keep.txt", laptop.path("d"))
    sync_all(*two)
    laptop.remove("d")
    laptop.write("d/new.txt", "d is a directory now\n")
    laptop.sync_here()
    original = syncmod.apply

    def apply(*args, **kwargs):
        link = desktop.path("d")
        os.unlink(link)
        os.symlink(str(outside), link)  # the person re-points the link, after the scan, before fogsync removes it
        return original(*args, **kwargs)

    monkeypatch.setattr(syncmod, "apply", apply)
    with pytest.raises(FogsyncError):
        desktop.sync_here()  # the link changes under every attempt: the pass gives up...
    assert list(outside.iterdir()) == []  # ...and never writes through it
    monkeypatch.undo()
    sync_all(*two)
    tree = assert_same(*two)
    assert tree["d/new.txt"][1] == b"d is a directory now\n"
    assert tree[f"d (conflict from desktop {STAMP})"] == ("symlink", str(outside))  # the re-pointed link is kept


@pytest.mark.parametrize("depth", ["d", "a/d"])
def test_a_directory_moved_out_and_linked_to_is_never_written_through(two, tmp_path, monkeypatch, depth):
    laptop, desktop = two
    moved_to = tmp_path / "outside"
    laptop.write(f"{depth}/old.txt", "old\n")
    sync_all(*two)
    laptop.write(f"{depth}/new.txt", "new\n")
    laptop.sync_here()
    original = pull.prepare
    top = depth.split("/")[0]

    def prepare(repo, dest, entry, source=None):
        tmp = original(repo, dest, entry, source)  # written into the real directory, checked to be the folder's
        if not moved_to.exists():
            os.rename(desktop.path(top), str(moved_to))  # then it is moved out of the folder,
            os.symlink(str(moved_to), desktop.path(top))  # and a link to it takes its place
        return tmp

    monkeypatch.setattr(pull, "prepare", prepare)
    desktop.sync_here()
    moved_dir = moved_to / depth.partition("/")[2] if "/" in depth else moved_to
    assert moved_to.exists() and not (moved_dir / "new.txt").exists()  # never renamed into a place outside


def test_a_path_replaced_while_the_merge_is_applied_restarts_the_pass(two, monkeypatch):
    laptop, desktop = two
    os.makedirs(laptop.path("d/a"))
    sync_all(*two)
    os.rmdir(desktop.path("d/a"))
    os.rmdir(desktop.path("d"))
    os.symlink("somewhere", desktop.path("d"))
    laptop.write("d/a/new.txt", "new\n")
    laptop.sync_here()
    original = pull.prepare
    swapped = []

    def prepare(repo, dest, entry, source=None):
        tmp = original(repo, dest, entry, source)
        if not swapped:
            swapped.append(dest)
            os.unlink(desktop.path("d"))
            desktop.write("d", "d is a file now\n")  # the person replaces the link while fogsync works
        return tmp

    monkeypatch.setattr(pull, "prepare", prepare)
    r = desktop.sync_here()
    assert swapped and r.attempts >= 2
    monkeypatch.undo()
    sync_all(*two)
    content = {v[1] for v in assert_same(*two).values() if v[0] == "file"}
    assert {b"new\n", b"d is a file now\n"} <= content


# --- restore in place ---------------------------------------------------------------------------


def test_restore_in_place_reaches_every_host(three):
    laptop, desktop, server = three
    laptop.write("f.txt", "one\n")
    laptop.write("d/g.txt", "g\n")
    sync_all(*three)
    first = laptop.share().state.share("docs").base
    desktop.write("f.txt", "two\n")
    desktop.write("new.txt", "new\n")
    desktop.remove("d")
    sync_all(*three)
    r = server.share()
    report = restore_in_place(r, first.hex()[:20], None)
    sync_all(*three)
    tree = assert_same(*three)
    assert {p: v[1] for p, v in tree.items() if v[0] == "file"} == {"f.txt": b"one\n", "d/g.txt": b"g\n"}
    roots = chain(laptop)
    assert roots[0][1].host == "server" and dict(roots[0][1].extra)["restored"] == first.hex()
    assert [root.version for _, root in roots] == list(range(len(roots), 0, -1))
    assert report.root == roots[0][0]


# --- host names ----------------------------------------------------------------------------------


def test_two_hosts_with_one_name_are_refused(hosts, store):
    a, b = hosts("laptop", store), hosts("laptop", store)
    a.write("f.txt", "1\n")
    sync_all(a, b)
    a.write("f.txt", "2 from a\n")
    a.sync_here()
    b.write("mine.txt", "b's\n")
    with pytest.raises(ConfigError) as err:
        b.sync_here()
    assert str(err.value) == (
        "another host also calls itself 'laptop' in share 'docs' (root v2): "
        "give each host its own name with --host or 'host' in the config"
    )
    assert b.read("f.txt") == b"1\n"  # nothing was applied
    assert len(chain(a)) == 2  # nor committed


def test_own_commits_never_look_like_a_namesake(make):
    laptop, desktop = make("laptop"), make("desktop")
    for i in range(4):
        laptop.write("f.txt", f"laptop {i}\n")
        desktop.write(f"d{i}.txt", "d\n")
        laptop.sync_here()
        desktop.sync_here()
    first = chain(laptop)[-1][0]
    restore_in_place(laptop.share(), first.hex(), None)
    laptop.write("after.txt", "after\n")
    desktop.write("after-desktop.txt", "after\n")
    desktop.sync_here()
    sync_all(laptop, desktop)
    assert_same(laptop, desktop)


def test_a_state_database_from_before_the_own_root_table_still_works(hosts, store):
    a = hosts("laptop", store)
    a.write("f.txt", "1\n")
    a.sync_here()
    a.close()
    db = sqlite3.connect(a.state_dir / "state.sqlite")
    db.execute("DROP TABLE own_root")
    db.commit()
    db.close()
    b = hosts("desktop", store)
    b.sync_here()
    b.write("g.txt", "from b\n")
    b.sync_here()
    a.write("f.txt", "2\n")
    a.sync_here()
    sync_all(a, b)
    assert assert_same(a, b)["f.txt"][1] == b"2\n"


def test_a_store_rolled_back_below_the_base_is_no_namesake(make, monkeypatch):
    from fogsync.folder import state as statemod

    monkeypatch.setattr(statemod, "OWN_ROOTS_KEPT", 1)  # only the newest own root is remembered
    laptop = make("laptop")
    for i in range(3):
        laptop.write("f.txt", f"v{i + 1}\n")
        laptop.sync_here()
    repo = laptop.share().repo
    (_, _), (v2, _), _ = chain(laptop)
    repo.swap_head(v2, repo.read_head().tag)  # the store comes back from a backup, at v2
    with pytest.raises(Refusal, match="rolled back"):  # refused as a rollback (refusals), not as a namesake
        laptop.sync_here()
    laptop.share().accept_rollback = True
    laptop.sync_here()  # walks no further than its base's version: v2 is not taken for a stranger's
    assert laptop.read("f.txt") == b"v3\n"


def test_the_own_root_table_keeps_only_the_newest(tmp_path, monkeypatch):
    from fogsync.folder import state as statemod

    monkeypatch.setattr(statemod, "OWN_ROOTS_KEPT", 5)
    st = statemod.State(str(tmp_path / "state.sqlite"))
    refs = [bytes([i]) * 48 for i in range(12)]
    for ref in refs:
        st.add_own_root("docs", ref)
        st.add_own_root("other", ref)
    assert st.own_roots("docs", refs) == set(refs[-5:])
    st.forget("docs")
    assert st.own_roots("docs", refs) == set() and st.own_roots("other", refs) == set(refs[-5:])
    st.close()


def test_host_names_in_listings_and_log(two):
    laptop, desktop = two
    laptop.write("by-laptop.txt", "x\n")
    desktop.write("by-desktop.txt", "y\n")
    laptop.sync_here()
    desktop.sync_here()
    tree = head_tree(laptop)
    assert tree["by-laptop.txt"].host == "laptop" and tree["by-desktop.txt"].host == "desktop"
    assert [root.host for _, root in chain(laptop)] == ["desktop", "laptop"]


def test_gives_up_cleanly_when_it_cannot_win(two, monkeypatch):
    """A swap lost on every attempt is an error that says so, not a loop."""
    laptop, desktop = two
    laptop.write("f.txt", "1\n")
    sync_all(*two)
    repo = laptop.share().repo
    inner = repo.store
    n = [0]

    class AlwaysRaced:
        def __getattr__(self, name):
            return getattr(inner, name)

        def put_if(self, key, data, expected_tag):
            n[0] += 1
            desktop.write("f.txt", f"desktop {n[0]}\n")
            desktop.sync_here()
            return inner.put_if(key, data, expected_tag)

    repo.store = AlwaysRaced()
    laptop.write("f.txt", "laptop\n")
    with pytest.raises(FogsyncError, match="gave up"):
        laptop.sync_here()
    repo.store = inner
    sync_all(*two)
    tree = assert_same(*two)
    assert b"laptop\n" in {v[1] for v in tree.values() if v[0] == "file"}


def test_a_file_deferred_while_written_is_pushed_by_a_later_pass(two):
    """A pass that defers a file still being written must not remember its new stat.

    Otherwise the next pass would take the file as unchanged and its edit
    would never reach the store.
    """
    laptop, desktop = two
    laptop.write("doc.txt", "first")
    old = 1_700_000_000_000_000_000
    os.utime(laptop.path("doc.txt"), ns=(old, old))
    laptop.sync_here()
    laptop.write("doc.txt", "second, still being written")
    ten_seconds_ago = time.time_ns() - 10_000_000_000  # older than the racy window, inside the settle one
    os.utime(laptop.path("doc.txt"), ns=(ten_seconds_ago, ten_seconds_ago))
    share = laptop.share()
    share.settle_ns = 60 * 1_000_000_000
    report = sync_share(share)
    assert report.deferred == ["doc.txt"] and report.committed is None
    share.settle_ns = 0
    assert sync_share(share).committed is not None
    desktop.sync_here()
    assert desktop.read("doc.txt") == b"second, still being written"


def test_a_file_that_cannot_be_read_is_retried_not_forgotten(two, monkeypatch):
    laptop, desktop = two
    laptop.write("doc.txt", "first")
    old = 1_700_000_000_000_000_000
    os.utime(laptop.path("doc.txt"), ns=(old, old))
    laptop.sync_here()
    laptop.write("doc.txt", "second")
    os.utime(laptop.path("doc.txt"), ns=(old + 1_000_000_000, old + 1_000_000_000))
    real_open = os.open

    def refuse(path, *args, **kw):
        if str(path).endswith("doc.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", refuse)
    report = laptop.sync_here()
    assert any("doc.txt" in p for p in report.problems) and report.committed is None
    monkeypatch.setattr(os, "open", real_open)
    assert laptop.sync_here().committed is not None
    desktop.sync_here()
    assert desktop.read("doc.txt") == b"second"


@pytest.mark.parametrize("size", [3000, 5 << 20], ids=["small", "chunked"])
def test_a_full_store_fails_the_pass_in_one_error_and_the_next_pass_catches_up(hosts, tmp_path, size):
    from fogsync.errors import StoreError
    from fogsync.repo.repository import Repo
    from fogsync.store.faulty import FaultyStore
    from fogsync.store.local import LocalStore

    laptop, desktop = hosts("laptop", str(tmp_path / "store")), hosts("desktop", str(tmp_path / "store"))
    laptop.write("a.txt", "first")
    laptop.sync_here()
    laptop.write("big.bin", os.urandom(size))
    share = laptop.share()
    store = FaultyStore(LocalStore(str(tmp_path / "store")))
    full = dataclasses.replace(share, repo=Repo(store, share.repo.keys, share.name, share.repo.spool_dir))
    store.fail_on("put", lambda key: StoreError(f"store is full: {key}"), times=None, key_contains="/blocks/")
    try:
        with pytest.raises(StoreError, match="store is full: .*blocks"):
            sync_share(full)
    finally:
        full.repo.close()
    assert store.failed
    desktop.sync_here()
    assert desktop.tree() == {"a.txt": ("file", b"first", False)}  # the head did not move
    laptop.sync_here()
    desktop.sync_here()
    assert desktop.read("big.bin") == laptop.read("big.bin")


def test_content_that_left_the_tree_is_reused_when_it_comes_back(make):
    laptop = make("laptop")
    data = os.urandom(200_000)
    laptop.write("photo.jpg", data)
    laptop.sync_here()
    state, sha = laptop.share().state, hashlib.sha256(data).hexdigest()
    assert state.content(laptop.share_name, sha) is None  # while the tree holds it, the tree is the index
    laptop.remove("photo.jpg")
    laptop.sync_here()
    assert state.content(laptop.share_name, sha) is not None  # it left the tree: remembered
    laptop.write("again/photo.jpg", data)
    writers = []
    repo = laptop.share().repo
    real = repo.writer
    repo.writer = lambda: writers.append(real()) or writers[-1]
    laptop.sync_here()
    assert sum(w.bytes_written for w in writers) < 10_000  # two listings and a root; the content is 200 kB


# --- a pass that finds the folder as it left it -----------------------------------------------

@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The shares whose base ``State.load`` loaded, in order."""
    seen, real = [], State.load

    def load(self, name):
        seen.append(name)
        return real(self, name)

    monkeypatch.setattr(State, "load", load)
    return seen


def test_a_pass_that_finds_the_folder_as_its_last_scan_loads_no_base(make, loads):
    a = make("laptop")
    settled(a, "d/f.txt", "one")
    settled(a, "g.txt", "two")
    os.symlink("g.txt", a.path("ln"))
    assert a.sync_here().committed is not None  # what it read is what it scanned: it keeps that scan
    assert remembered_scan_holds(a.share())  # (which loads the base itself)
    n = len(loads)
    assert a.sync_here().committed is None and len(loads) == n

    settled(a, "d/f.txt", "ONE", SETTLED + 1)  # same size, another old mtime
    assert a.sync_here().committed is not None and len(loads) == n  # '' and d moved: loaded one by one
    assert head_tree(a)["d/f.txt"].sha256 == hashlib.sha256(b"ONE").hexdigest()
    os.chmod(a.path("g.txt"), 0o755)  # the exec bit alone
    assert a.sync_here().committed is not None and head_tree(a)["g.txt"].exec
    os.unlink(a.path("ln"))
    os.symlink("d/f.txt", a.path("ln"))
    assert a.sync_here().committed is not None and head_tree(a)["ln"].target == "d/f.txt"
    assert remembered_scan_holds(a.share())


def test_a_file_too_fresh_to_trust_is_read_again_though_its_stat_is_the_same(make):
    a = make("laptop")
    a.write("f.txt", "now")  # modified right before the scan: its stat proves nothing yet
    a.sync_here()
    before = os.stat(a.path("f.txt"))
    with open(a.path("f.txt"), "r+") as f:  # same file, same size, and the mtime put back
        f.write("NOW")
    os.utime(a.path("f.txt"), ns=(before.st_atime_ns, before.st_mtime_ns))
    a.sync_here()
    assert head_tree(a)["f.txt"].sha256 == hashlib.sha256(b"NOW").hexdigest()


def test_a_file_edited_between_scan_and_read_is_not_taken_for_in_step(make, monkeypatch):
    a = make("laptop")
    settled(a, "other.txt", "first")
    a.sync_here()  # a first sync walks and reads at once (``first``): the edit comes in the pass after
    settled(a, "f.txt", "one")
    real = syncmod.seal_files

    def seal_after_an_edit(*args, **kwargs):
        settled(a, "f.txt", "two!", SETTLED + 5)
        return real(*args, **kwargs)

    monkeypatch.setattr(syncmod, "seal_files", seal_after_an_edit)
    a.sync_here()
    monkeypatch.setattr(syncmod, "seal_files", real)
    assert "" not in vouched_dirs(a.share())  # f.txt's directory: the next pass looks at it again
    a.sync_here()
    assert head_tree(a)["f.txt"].sha256 == hashlib.sha256(b"two!").hexdigest()
    assert remembered_scan_holds(a.share())


@pytest.fixture
def loaded_dirs(monkeypatch) -> list[set[str]]:
    """The directories each partial load (``State.load_dirs``) loaded, in order."""
    seen, real = [], State.load_dirs

    def load_dirs(self, name, dirs):
        seen.append(set(dirs))
        return real(self, name, dirs)

    monkeypatch.setattr(State, "load_dirs", load_dirs)
    return seen


def _settled_tree(h) -> None:
    for rel in ("a/x/1", "a/x/2", "b/y/1", "b/y/2", "c/f", "d/z/1", "e/1", "top.txt"):
        settled(h, rel, f"content of {rel}")


def _full_pass_tree(h) -> dict:
    """What the head would hold after a pass that loaded and compared the whole base."""
    from fogsync.folder.ignore import Ignore
    from fogsync.folder.scan import compare, scan

    share = h.share()
    base, stats = share.state.load(share.name)
    changes = compare(scan(share.folder, Ignore.for_folder(share.folder, ()), share.clock_ns), base, stats, share.host)
    return {p: (e.type, e.sha256 if e.type == FILE else e.target) for p, e in changes.tree.items()}


def _head(h) -> dict:
    return {p: (e.type, e.sha256 if e.type == FILE else e.target) for p, e in head_tree(h).items()}


def test_a_change_loads_only_the_directories_whose_digest_moved_and_those_above(make, loads, loaded_dirs):
    a = make("laptop")
    _settled_tree(a)
    a.sync_here()
    assert remembered_scan_holds(a.share())
    n = len(loads)
    settled(a, "b/y/2", "changed", SETTLED + 1)
    assert a.sync_here().committed is not None
    assert len(loads) == n and loaded_dirs == [{"", "b", "b/y"}]
    assert _head(a)["b/y/2"] == (FILE, hashlib.sha256(b"changed").hexdigest())
    assert remembered_scan_holds(a.share())  # a settled change: every directory is vouched for again
    assert _head(a) == _full_pass_tree(a) and len(_head(a)) == 16


def test_a_partial_pass_lets_go_of_the_whole_scan_before_it_loads_rows(make, monkeypatch):
    a = make("laptop")
    _settled_tree(a)
    a.sync_here()
    settled(a, "b/y/2", "changed", SETTLED + 1)
    scans, alive_at_load = [], []
    real_scan, real_load = vouchmod.scan, State.load_dirs

    def scan(*args, **kwargs):
        snap = real_scan(*args, **kwargs)
        scans.append(weakref.ref(snap))
        return snap

    def load_dirs(self, name, dirs):
        gc.collect()
        alive_at_load.append(scans[-1]() is not None)
        return real_load(self, name, dirs)

    monkeypatch.setattr(vouchmod, "scan", scan)
    monkeypatch.setattr(State, "load_dirs", load_dirs)
    assert a.sync_here().committed is not None
    assert alive_at_load == [False]  # only the moved directories' part of it (a whole scan: 6 MB at 50,000 files)


def test_a_partial_pass_takes_removed_added_and_retyped_paths(make, loads, loaded_dirs):
    a = make("laptop")
    _settled_tree(a)
    a.sync_here()
    n = len(loads)
    a.remove("a")  # a whole subtree: its directories' digests are gone from the scan
    settled(a, "n/m/new", "new")
    a.remove("c/f")
    settled(a, "c/f/inside", "now a directory")
    assert a.sync_here().committed is not None and len(loads) == n
    assert loaded_dirs[-1] == {"", "a", "a/x", "n", "n/m", "c", "c/f"}
    head = _head(a)
    assert not [p for p in head if p.startswith("a")] and head["c/f"] == (DIR, None)
    assert head["n/m/new"] == (FILE, hashlib.sha256(b"new").hexdigest()) and "b/y/1" in head
    assert head == _full_pass_tree(a) and remembered_scan_holds(a.share())


def test_a_copy_of_a_file_in_a_directory_not_loaded_reuses_its_blocks(make, loaded_dirs):
    a = make("laptop")
    _settled_tree(a)
    data = os.urandom(200_000)
    settled(a, "b/y/photo.jpg", data)
    a.sync_here()
    assert remembered_scan_holds(a.share())
    settled(a, "a/x/copy.jpg", data)
    writers = []
    repo = a.share().repo
    real = repo.writer
    repo.writer = lambda: writers.append(real()) or writers[-1]
    a.sync_here()
    assert loaded_dirs[-1] == {"", "a", "a/x"}
    assert sum(w.bytes_written for w in writers) < 10_000  # three listings and a root; the content is 200 kB
    assert head_tree(a)["a/x/copy.jpg"].bptr == head_tree(a)["b/y/photo.jpg"].bptr


def test_a_file_too_fresh_to_trust_leaves_just_its_directory_to_look_at_again(make, loads, loaded_dirs):
    a = make("laptop")
    _settled_tree(a)
    a.sync_here()
    a.write("b/y/2", "just now")  # its stat proves nothing yet
    a.sync_here()
    assert set(vouched_dirs(a.share())) == {"", "a", "a/x", "b", "c", "d", "d/z", "e"}
    n = len(loads)
    os.utime(a.path("b/y/2"), ns=(SETTLED, SETTLED))
    a.sync_here()
    assert len(loads) == n and loaded_dirs[-1] == {"", "b", "b/y"}
    assert a.sync_here().committed is None and len(loads) == n and len(loaded_dirs) == 2
    assert remembered_scan_holds(a.share())


def test_a_directory_removed_while_no_digest_vouched_for_it_takes_its_rows_along(make, loads, loaded_dirs):
    a = make("laptop")
    _settled_tree(a)
    a.sync_here()
    a.write("b/y/new", "just now")  # too fresh to trust: b/y is not vouched for after this pass
    a.sync_here()
    assert "b/y" not in vouched_dirs(a.share())
    a.remove("b")
    n, calls = len(loads), len(loaded_dirs)
    assert a.sync_here().committed is not None and len(loads) == n
    assert loaded_dirs[calls:] == [{"", "b", "b/y"}]  # b/y is held UNSURE: loaded with b, gone from the scan
    assert not [p for p in head_tree(a) if p.startswith("b")]
    assert not [p for p in a.share().state.load(a.share().name)[0] if p.startswith("b")]
    assert remembered_scan_holds(a.share())


def test_directory_digests_no_seal_holds_are_not_trusted(make, loads, loaded_dirs):
    a = make("laptop")
    _settled_tree(a)
    a.sync_here()
    a.share().state.remember_scan(a.share().name, "not their seal")  # as an older FogSync would leave it
    n = len(loads)
    settled(a, "b/y/2", "changed", SETTLED + 1)
    assert a.sync_here().committed is not None
    assert len(loads) == n + 1 and loaded_dirs == []
    assert remembered_scan_holds(a.share())


def test_a_pass_that_pulled_vouches_for_the_directories_it_left_as_it_found_them(two, loads):
    a, b = two
    settled(a, "kept/e.txt", "from a")
    settled(a, "pulled/old.txt", "from a")
    a.sync_here()
    b.sync_here()  # a first pull into an empty folder: it vouches for what it wrote (``first_pull``)
    settled(a, "pulled/f.txt", "from a")
    settled(a, "top.txt", "from a")
    a.sync_here()
    n = len(loads)
    b.sync_here()  # pulls f.txt into pulled/ and top.txt into the top
    assert len(loads) == n  # off its base, it loads only where the head or the folder moved (``remote``)
    vouched = vouched_dirs(b.share())
    assert "kept" in vouched and "pulled" not in vouched and "" not in vouched
    assert not remembered_scan_holds(b.share())  # what it vouches for holds; not every directory
    n = len(loads)
    b.sync_here()  # loads only where it wrote, finds nothing to do, and vouches for it
    assert len(loads) == n and remembered_scan_holds(b.share())
    n = len(loads)
    assert b.sync_here().written == 0 and len(loads) == n
    assert b.read("pulled/f.txt") == b"from a" and b.read("top.txt") == b"from a"


def test_a_pass_removes_the_temporary_files_of_a_killed_pull_a_day_on_and_commits_nothing(make):
    h = make("laptop")
    h.write("sub/a.txt", "a")
    h.sync_here()
    left = prepare._temp_name(str(h.path("sub/a.txt")))  # as a pull killed before its rename leaves it
    with open(left, "wb") as f:
        f.write(b"half of a")
    h.write(".fogsync-tmp-notes", "the person's own, in our namespace")
    assert h.sync_here().committed is None and os.path.exists(left)  # a live pull could still own it
    h.share().clock_ns = lambda: time.time_ns() + syncmod.STALE_TEMP_NS + 10**9
    report = h.sync_here()
    assert not os.path.exists(left) and h.path(".fogsync-tmp-notes").exists()
    assert report.committed is None and sorted(h.tree()) == [".fogsync-tmp-notes", "sub", "sub/a.txt"]
