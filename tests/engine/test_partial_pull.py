"""A pass that pulls another host's commit into a share this host already synced (issue 25).

The state has a base B, the store's head is another root. Whichever way
such a pass goes (the whole tree: scan, load the whole base, load the
whole remote tree, merge; or only where the remote change and the folder
moved), it must do exactly the same: these tests pin that down
differentially. Host A (the laptop) makes the remote change; host B (the
desktop) may change its own folder too. Then B's whole world (folder,
state, store) is copied into B', whose state is made to vouch for no scan,
so B' takes the whole-tree pass whatever the code; B's pass and B''s pass
must leave the same folder, report, commit and state rows.

The last tests are what the new path must make cheap: a pull of one file
edited deep down loads no whole base, lists only the directories on the
file's way, and leaves a state the next pass needs to load nothing of.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import pytest
from helpers import (
    SETTLED,
    CountingState,
    committed_tree,
    described,
    file_rows,
    remembered_scan_holds,
    settled,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as s

from fogsync.engine.sync import Report, restore_in_place, sync_share
from fogsync.engine.vouch import DirHints, VouchMemo
from fogsync.format.tree import DIR, parent_of

SECOND = 1_000_000_000
NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=timezone.utc)  # every pass's: conflict copies are named by it
NOW_NS = SETTLED + 3600 * SECOND  # every pass's clock: the mtimes written here are all settled by then

START_DIRS = ("a", "a/b", "a/b/c", "d", "d/e", "d/e/f", "g", "g/h", "g/h/i")
START = {f"{d}/f{k}.txt": f"{d} {k}\n" for d in START_DIRS for k in range(4)}
START.update({"top.txt": "top\n", "d/run.sh": "#!/bin/sh\necho run\n"})
START_LINKS = {"a/b/link": "c/f0.txt"}
START_EMPTY = ("empty", "g/h/i/void")
START_EXEC = ("d/run.sh",)

MODES = ("a full scan", "a hinted pass")


# --- the two worlds ---------------------------------------------------------------------------------


class World:
    """Hosts A and B on one store, and B' once ``fork`` copied B's world: every write with an mtime
    of its own (settled, so no pass waits for it, and never the stat a file had before)."""

    def __init__(self, hosts, tmp_path, hinted: bool, exclude: tuple[str, ...] = (), start: dict[str, str] = START,
                 links: dict[str, str] = START_LINKS, empty: tuple[str, ...] = START_EMPTY,
                 execs: tuple[str, ...] = START_EXEC) -> None:
        self.hosts, self.tmp_path, self.hinted, self.exclude = hosts, tmp_path, hinted, exclude
        self.ticks = 0
        self.store = str(tmp_path / f"store-{uuid.uuid4().hex[:8]}")
        self.a, self.b = hosts("laptop", self.store), hosts("desktop", self.store)
        for h in (self.a, self.b):
            pin(h)
        self.b.share().exclude = exclude
        if hinted:
            self.b.share().memo = VouchMemo()  # as the daemon keeps one
        for path, text in start.items():
            self.put(self.a, path, text)
        for path, target in links.items():
            self.link(self.a, path, target)
        for path in empty:
            os.makedirs(self.a.path(path))
        for path in execs:
            self.chmod_x(self.a, path)
        self.a.sync_here()
        self.b.sync_here()
        self.b.sync_here()
        assert remembered_scan_holds(self.b.share())

    def close(self) -> None:
        for h in (self.a, self.b, getattr(self, "b2", None)):
            if h is not None:
                h.close()

    # the changes, on either host

    def put(self, h, path: str, text: str) -> None:
        self.ticks += 1
        settled(h, path, text, SETTLED + self.ticks * SECOND)

    def link(self, h, path: str, target: str) -> None:
        os.makedirs(h.path(path).parent, exist_ok=True)
        if h.path(path).is_symlink():
            h.path(path).unlink()
        os.symlink(target, h.path(path))

    def chmod_x(self, h, path: str) -> None:
        os.chmod(h.path(path), os.stat(h.path(path)).st_mode | stat.S_IXUSR)

    # the passes

    def local(self, change: Callable[[World], None]) -> DirHints:
        """``change`` made in B's folder; the hints a watcher would give for it."""
        before = watched(self.b)
        change(self)
        return hints_between(before, watched(self.b))

    def fork(self) -> None:
        """B' (``self.b2``): a copy of B's folder, state and store, whose state vouches for no scan."""
        store = self.tmp_path / f"store-copy-{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.store, store, symlinks=True)
        self.b2 = self.hosts("desktop", str(store))
        shutil.copytree(self.b.folder, self.b2.folder, symlinks=True, dirs_exist_ok=True)
        # The WAL holds what B's open connection committed; without the index beside it, SQLite
        # rebuilds that from the WAL when the copy is first opened.
        shutil.copytree(self.b.state_dir, self.b2.state_dir, ignore=shutil.ignore_patterns("*-shm"))
        db = sqlite3.connect(os.path.join(self.b2.state_dir, "state.sqlite"))
        with db:
            db.execute("UPDATE share SET scan_digest=NULL")
        db.close()
        pin(self.b2)
        self.b2.share().exclude = self.exclude

    def pass_b(self, hints: DirHints) -> Report:
        return sync_share(self.b.share(), hints) if self.hinted else sync_share(self.b.share())


def pin(h) -> None:
    h.share().now = lambda: NOW
    h.share().clock_ns = lambda: NOW_NS


def watched(h) -> dict[str, tuple]:
    """What a watcher sees change in ``h``'s folder: paths and their items, a file's mtime with it
    (a directory's moves with any change in it)."""
    return {p: item[:1] if item[0] == "dir" else item for p, item in h.tree(mtimes=True).items()}


def hints_between(before: dict[str, tuple], after: dict[str, tuple]) -> DirHints:
    """The directories whose entries changed from ``before`` to ``after``, and the directories made,
    removed or moved (as trees); nothing named twice, nothing named inside a tree named."""
    dirs, trees = set(), set()
    for path in before.keys() | after.keys():
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        dirs.add(parent_of(path))
        if is_dir(old) != is_dir(new):
            trees.add(path)
    trees = {t for t in trees if not any(t.startswith(o + "/") for o in trees)}
    dirs = {d for d in dirs if d not in trees and not any(d.startswith(t + "/") for t in trees)}
    return DirHints(frozenset(dirs), frozenset(trees))


def is_dir(item: tuple | None) -> bool:
    return item is not None and item[0] == "dir"


# --- what two passes must agree on -----------------------------------------------------------------


def report_view(h, r: Report) -> dict:
    c = r.committed
    folder = str(h.folder)
    return dict(
        committed=None if c is None else (c.version, c.host, c.date, c.prev, c.merged),
        pushed=(r.pushed, r.pushed_bytes), written=r.written, removed=r.removed,
        conflicts=[(x.path, x.kind, x.copy_path) for x in r.conflicts],
        problems=[p.replace(folder, "FOLDER") for p in r.problems], deferred=r.deferred, attempts=r.attempts)


def rows_view(h) -> tuple[dict, set]:
    """The state's rows without what sealing makes differ (bptrs, a listing's digest), and the paths
    whose stat it trusts."""
    rows, stats = file_rows(h)
    view = {p: e._replace(bptr=None, sha256=e.sha256 if e.type != DIR else None) for p, e in rows.items()}
    return view, set(stats)


def base_of(h) -> bytes | None:
    return h.share().state.share(h.share().name).base


def head_of(h) -> bytes | None:
    return h.share().repo.read_head().root


def assert_same(w: World, r: Report, r2: Report) -> None:
    b, b2 = w.b, w.b2
    assert b.tree(mtimes=True) == b2.tree(mtimes=True)  # every path's mtime too, directories' as well
    assert report_view(b, r) == report_view(b2, r2)
    assert described(committed_tree(b.share().repo)) == described(committed_tree(b2.share().repo))
    assert rows_view(b) == rows_view(b2)
    assert base_of(b) == head_of(b) and base_of(b2) == head_of(b2)


def differential(w: World, remote: Callable[[World], None], local: Callable[[World], None] | None):
    """A's change committed, B's made; B's pass and B''s: asserted the same, and in step after.
    Returns B's report."""
    remote(w)
    w.a.sync_here()
    hints = w.local(local) if local is not None else DirHints()
    w.fork()
    r = w.pass_b(hints)
    r2 = sync_share(w.b2.share())
    assert_same(w, r, r2)
    for h in (w.b, w.b2):  # what each vouches for after the pull holds (where it wrote it vouches for nothing yet)
        remembered_scan_holds(h.share())
    again, again2 = w.pass_b(DirHints()), sync_share(w.b2.share())
    assert again.committed is None and again.written == again.removed == 0 and not again.conflicts
    assert report_view(w.b, again) == report_view(w.b2, again2)
    assert sync_share(w.b.share()).committed is None  # nothing a hinted pass left for a full one
    assert_same(w, r, r2)
    assert remembered_scan_holds(w.b.share()) and remembered_scan_holds(w.b2.share())
    return r


# --- the scenarios: a remote change on A, a local change on B ------------------------------------


@dataclass(frozen=True)
class Case:
    remote: Callable[[World], None]
    local: Callable[[World], None] | None = None  # None: B's folder as it was
    check: Callable[[World, Report], None] = lambda w, r: None  # the case did what it says
    exclude: tuple[str, ...] = ()  # B's exclude rules


def files_with(h, text: str) -> list[str]:
    return [p for p, item in h.tree().items() if item[0] == "file" and item[1] == text.encode()]


def under(h, top: str) -> list[str]:
    return [p for p in h.tree() if p.startswith(top + "/")]


def rm(*paths: str):
    def change(w: World) -> None:
        for path in paths:
            w.a.remove(path)
    return change


def most_deleted(w: World) -> None:
    w.a.share().allow_mass_delete = True  # A's own deletion, as its person confirmed
    rm("a", "d", "g")(w)


def new_tree(w: World) -> None:
    for path in ("n/n1/n2/x.txt", "n/n1/y.txt", "n/z.txt"):
        w.put(w.a, path, f"new {path}\n")


def dir_to_file(w: World) -> None:
    w.a.remove("d")
    w.put(w.a, "d", "d is a file now\n")


def file_to_dir(w: World) -> None:
    w.a.remove("a/f0.txt")
    w.put(w.a, "a/f0.txt/inner.txt", "inside\n")
    w.put(w.a, "a/f0.txt/sub/deeper.txt", "deeper\n")


def empty_c(w: World) -> None:
    for k in range(4):
        w.a.remove(f"a/b/c/f{k}.txt")


def edit_and_undo(w: World) -> None:
    mtime = os.lstat(w.a.path("a/f0.txt")).st_mtime_ns
    w.put(w.a, "a/f0.txt", "for a moment\n")
    w.a.sync_here()
    settled(w.a, "a/f0.txt", "a 0\n", mtime)


def edit_and_restore(w: World) -> None:
    before = head_of(w.a)
    w.put(w.a, "a/f0.txt", "for a moment\n")
    w.a.sync_here()
    restore_in_place(w.a.share(), before.hex(), None)


def edit(host: str, path: str, text: str):
    return lambda w: w.put(getattr(w, host), path, text)


def both(*changes):
    def change(w: World) -> None:
        for c in changes:
            c(w)
    return change


def check_excluded(w: World, r: Report) -> None:
    assert w.b.read("d/f2.txt") == b"y by A\n" and not w.b.path("d/x.tmp").exists()
    assert w.a.sync_here().committed is None and w.a.read("d/x.tmp") == b"x by A\n"
    assert "d/x.tmp" in committed_tree(w.a.share().repo)


def check_nothing_written(w: World, r: Report) -> None:
    assert r.written == r.removed == 0 and w.b.read("a/f0.txt") == b"a 0\n"
    repo = w.a.share().repo
    assert repo.read_root(r.root).version >= 3  # B pulled from v1 (its base) past A's v2 and v3


def check(cond: Callable[[World, Report], bool]) -> Callable[[World, Report], None]:
    def holds(w: World, r: Report) -> None:
        assert cond(w, r), f"B's folder: {sorted(w.b.tree())}; {r}"
    return holds


CASES = {
    "a remote edit deep down": Case(
        edit("a", "a/b/c/f1.txt", "edited by A\n"),
        check=check(lambda w, r: w.b.read("a/b/c/f1.txt") == b"edited by A\n" and r.written == 1)),
    "a remote new tree, a local edit elsewhere": Case(
        new_tree, edit("b", "g/f0.txt", "edited by B\n"),
        check=check(lambda w, r: len(under(w.b, "n")) == 5 and r.committed is not None)),
    "a remote tree deleted": Case(
        rm("d"), check=check(lambda w, r: not w.b.path("d").exists() and r.removed == 16)),
    "a remote tree deleted, a local edit in it": Case(
        rm("d"), edit("b", "d/e/f0.txt", "edited by B\n"),
        check=check(lambda w, r: files_with(w.b, "edited by B\n") != [])),
    "a local tree deleted, a remote edit in it": Case(
        edit("a", "g/h/f1.txt", "edited by A\n"), lambda w: w.b.remove("g"),
        check=check(lambda w, r: files_with(w.b, "edited by A\n") != [])),
    "a remote directory replaced by a file": Case(
        dir_to_file, check=check(lambda w, r: w.b.read("d") == b"d is a file now\n")),
    "a remote directory replaced by a file, a local edit in it": Case(
        dir_to_file, edit("b", "d/e/f/f2.txt", "edited by B\n"),
        check=check(lambda w, r: files_with(w.b, "edited by B\n") != [] and files_with(w.b, "d is a file now\n") != [])),
    "a remote file replaced by a directory": Case(
        file_to_dir, check=check(lambda w, r: w.b.read("a/f0.txt/sub/deeper.txt") == b"deeper\n")),
    "both edit one file": Case(
        edit("a", "g/h/i/f3.txt", "edited by A\n"), edit("b", "g/h/i/f3.txt", "edited by B\n"),
        check=check(lambda w, r: len(r.conflicts) == 1 and w.b.read(r.conflicts[0].copy_path) == b"edited by B\n")),
    "both add one path": Case(
        edit("a", "a/b/new.txt", "added by A\n"), edit("b", "a/b/new.txt", "added by B\n"),
        check=check(lambda w, r: len(r.conflicts) == 1 and w.b.read("a/b/new.txt") == b"added by A\n")),
    "both add one directory": Case(
        edit("a", "new/x/from-a.txt", "added by A\n"), edit("b", "new/x/from-b.txt", "added by B\n"),
        check=check(lambda w, r: not r.conflicts and len(under(w.b, "new/x")) == 2)),
    "a remote rename of a tree": Case(
        lambda w: w.a.move("d", "dd"),
        check=check(lambda w, r: not w.b.path("d").exists() and w.b.read("dd/e/f/f3.txt") == b"d/e/f 3\n")),
    "a remote directory emptied": Case(
        empty_c, check=check(lambda w, r: os.listdir(w.b.path("a/b/c")) == [])),
    "a remote exec bit": Case(
        lambda w: w.chmod_x(w.a, "a/f1.txt"), check=check(lambda w, r: w.b.tree()["a/f1.txt"][2])),
    "a remote symlink's target": Case(
        lambda w: w.link(w.a, "a/b/link", "c/f1.txt"),
        check=check(lambda w, r: os.readlink(w.b.path("a/b/link")) == "c/f1.txt")),
    "a remote edit beside a local one": Case(
        edit("a", "g/h/f0.txt", "edited by A\n"), edit("b", "g/h/f1.txt", "edited by B\n"),
        check=check(lambda w, r: w.b.read("g/h/f0.txt") == b"edited by A\n" and r.committed is not None)),
    "a remote change to what B excludes": Case(
        both(edit("a", "d/x.tmp", "x by A\n"), edit("a", "d/f2.txt", "y by A\n")),
        check=check_excluded, exclude=("*.tmp",)),
    "most files deleted remotely": Case(
        most_deleted, check=check(lambda w, r: r.removed == 48 and not under(w.b, "g"))),
    "a remote change undone": Case(edit_and_undo, check=check_nothing_written),
    "a remote change restored away, a local edit elsewhere": Case(
        edit_and_restore, edit("b", "g/f0.txt", "edited by B\n"), check=check_nothing_written),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_pull_does_what_the_whole_tree_pass_does(hosts, tmp_path, mode, case):
    spec = CASES[case]
    w = World(hosts, tmp_path, hinted=mode == "a hinted pass", exclude=spec.exclude)
    r = differential(w, spec.remote, spec.local)
    spec.check(w, r)


# --- a property: random changes on both sides, B' the oracle ----------------------------------------

# A small world, so changes collide: "p" is a file on one host while "p/q/x" is written on the other.
PATHS = ("x", "y.txt", "p", "p/x", "p/y.txt", "p/q", "p/q/x", "p/q/y.txt", "q", "q/x", "q/p", "q/p/y.txt")
PROPERTY_START = {p: f"start {p}\n" for p in ("y.txt", "p/x", "p/y.txt", "p/q/x", "p/q/y.txt", "q/x", "q/p/y.txt")}
OP = s.tuples(s.sampled_from(("write", "write", "delete", "mkdir", "rmtree", "rename", "chmod")),
              s.sampled_from(PATHS), s.sampled_from(PATHS))


def kind_at(h, path: str) -> str | None:
    """"dir", "file" (a symlink counts as one) or None; "blocked" where a file stands above ``path``."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        above = h.path("/".join(parts[:i]))
        if above.is_symlink() or above.is_file():
            return "blocked"
    p = h.path(path)
    if p.is_symlink() or p.is_file():
        return "file"
    return "dir" if p.is_dir() else None


def do(w: World, h, op: tuple[str, str, str]) -> None:
    """``op`` in ``h``'s folder where it can be done; nothing where it cannot."""
    kind, path, other = op
    at = kind_at(h, path)
    if kind == "write" and at in (None, "file"):
        w.put(h, path, f"{h.name} {w.ticks}\n")
    elif kind == "delete" and at == "file":
        h.remove(path)
    elif kind == "mkdir" and at is None:
        os.makedirs(h.path(path))
    elif kind == "rmtree" and at == "dir":
        h.remove(path)
    elif kind == "chmod" and at == "file":
        w.chmod_x(h, path)
    elif kind == "rename" and at in ("file", "dir") and kind_at(h, other) is None and not (
            other + "/").startswith(path + "/"):
        h.move(path, other)


def run_property(hosts, tmp_path, hinted: bool, remote: list, local: list) -> None:
    w = World(hosts, tmp_path, hinted, start=PROPERTY_START, links={}, empty=(), execs=())
    try:
        differential(w, lambda w: [do(w, w.a, op) for op in remote], lambda w: [do(w, w.b, op) for op in local])
    finally:
        w.close()


PROPERTY = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=60, **PROPERTY)
@given(hinted=s.booleans(), remote=s.lists(OP, min_size=1, max_size=6), local=s.lists(OP, max_size=6))
def test_any_pull_does_what_the_whole_tree_pass_does(hosts, tmp_path, hinted, remote, local):
    run_property(hosts, tmp_path, hinted, remote, local)


@pytest.mark.slow
@settings(max_examples=1000, **PROPERTY)
@given(hinted=s.booleans(), remote=s.lists(OP, min_size=1, max_size=10), local=s.lists(OP, max_size=10))
def test_any_pull_does_what_the_whole_tree_pass_does_long(hosts, tmp_path, hinted, remote, local):
    run_property(hosts, tmp_path, hinted, remote, local)


# --- what a pull must cost: only what the remote change touched --------------------------------------

WIDE_DIRS = [f"s{i}/t{j}/u{k}" for i in range(4) for j in range(3) for k in range(2)]  # 40 directories in all
DEEP = "s2/t1/u0/f1.txt"
DEEP_WAY = 4  # the top, s2, s2/t1, s2/t1/u0


@pytest.fixture
def wide(laptop, desktop):
    """A and B in step on a share of 40 directories, B's state vouching for its scan; A's one-file
    edit deep down committed. B's share keeps a memo between passes, as the daemon's does."""
    for h in (laptop, desktop):
        pin(h)
    desktop.share().memo = VouchMemo()
    for d in WIDE_DIRS:
        for k in range(2):
            settled(laptop, f"{d}/f{k}.txt", f"{d} {k}\n")
    laptop.sync_here()
    desktop.sync_here()
    desktop.sync_here()
    assert remembered_scan_holds(desktop.share())
    settled(laptop, DEEP, "edited by A\n", SETTLED + SECOND)
    laptop.sync_here()
    return laptop, desktop


def pulled(laptop, desktop, report: Report) -> None:
    """The edit arrived, and B is in step with the head."""
    assert desktop.read(DEEP) == b"edited by A\n" and report.written == 1 and report.removed == 0
    assert report.committed is None and base_of(desktop) == head_of(desktop) == head_of(laptop)
    assert desktop.tree() == laptop.tree()


@pytest.fixture
def counting(desktop):
    """B's share on its own connection to the state, counting what each pass loads of it."""
    state = CountingState(desktop.share().state.path)
    yield dataclasses.replace(desktop.share(), state=state)
    state.close()


def test_a_pull_of_one_file_loads_no_whole_base(wide, counting):
    report = sync_share(counting)
    pulled(*wide, report)
    assert counting.state.loads == 0


def test_a_hinted_pull_of_one_file_lists_only_the_directories_on_its_way(wide, scandirs):
    laptop, desktop = wide
    report = scandirs.during(lambda: sync_share(desktop.share(), DirHints()))
    pulled(laptop, desktop, report)
    assert scandirs.calls == DEEP_WAY


def test_the_pass_after_a_pull_loads_only_where_it_wrote_and_the_next_nothing(wide, counting):
    laptop, desktop = wide
    pulled(laptop, desktop, sync_share(desktop.share()))
    for loaded in ({"", "s2", "s2/t1", "s2/t1/u0"}, set()):  # the pull's directory is held UNSURE, then vouched
        counting.state.dirs_loaded = set()
        report = sync_share(counting)
        assert report.committed is None and report.written == report.removed == 0
        assert counting.state.loads == 0 and counting.state.dirs_loaded == loaded
    assert remembered_scan_holds(desktop.share())


def test_a_host_that_excludes_most_of_the_share_loads_only_what_it_syncs(laptop, desktop):
    """B syncs only ``mine/`` of a share whose bulk (``s*``) it excludes: its passes, saving or pulling,
    load the rows of what it syncs and of where the head moved, never the excluded subtrees'."""
    for h in (laptop, desktop):
        pin(h)
    desktop.share().exclude = ("s*",)
    for d in WIDE_DIRS:
        settled(laptop, f"{d}/f.txt", f"{d}\n")
    settled(laptop, "mine/notes.txt", "A's notes\n")
    laptop.sync_here()
    desktop.sync_here()
    assert desktop.tree() == {"mine": ("dir",), "mine/notes.txt": ("file", b"A's notes\n", False)}
    state = CountingState(desktop.share().state.path)
    counting = dataclasses.replace(desktop.share(), state=state)
    try:
        settled(desktop, "mine/notes.txt", "B's notes\n", SETTLED + SECOND)
        assert sync_share(counting).committed is not None
        assert state.loads == 0 and state.dirs_loaded == {"", "mine"}
        settled(laptop, DEEP, "edited by A\n", SETTLED + 2 * SECOND)  # in what B excludes
        laptop.sync_here()
        state.dirs_loaded = set()
        report = sync_share(counting)
        assert report.committed is None and report.written == 0
        assert state.loads == 0 and state.dirs_loaded == {"", "s2", "s2/t1", "s2/t1/u0"}  # where the head moved
    finally:
        state.close()
    rows, _ = file_rows(desktop)
    assert rows[DEEP].sha256 == committed_tree(laptop.share().repo)[DEEP].sha256  # in its rows, not its folder
    assert not desktop.path("s2").exists()
    laptop.sync_here()
    assert laptop.read("mine/notes.txt") == b"B's notes\n"
