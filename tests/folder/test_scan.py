"""fogsync.folder.scan: walking a real folder, and comparing it with the base."""

from __future__ import annotations

import os

import pytest

from fogsync.errors import LocalError
from fogsync.folder import scan as scanmod
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import (
    STALE_TEMP_NS,
    Scanned,
    Snapshot,
    Stat,
    at_or_below,
    compare,
    scan,
)
from fogsync.format.tree import DIR, FILE, SYMLINK, Entry

T = 1_700_000_000_123_456_789
NOW = T + 100 * 10**9  # the scan's clock: well after every mtime below
SHA = "ab" * 32


def make(folder) -> None:
    (folder / "sub" / "deep").mkdir(parents=True)
    (folder / "empty-dir").mkdir()
    (folder / "a.txt").write_bytes(b"hello")
    (folder / "sub" / "deep" / "ü.txt").write_bytes(b"x" * 1000)
    (folder / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(folder / "run.sh", 0o755)
    os.chmod(folder / "a.txt", 0o644)
    os.symlink("sub/deep/ü.txt", folder / "link")
    os.symlink("/nowhere", folder / "sub" / "dangling")
    for i, p in enumerate(sorted(folder.rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(p, ns=(T + i, T + i), follow_symlinks=False)


def test_scan_types_sizes_mtimes_exec_and_symlinks(tmp_path):
    make(tmp_path)
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    assert snap.taken_ns == NOW and snap.problems == [] and snap.unreadable == set()
    assert set(snap.items) == {
        "sub", "sub/deep", "empty-dir", "a.txt", "sub/deep/ü.txt", "run.sh", "link", "sub/dangling"}
    for path, item in snap.items.items():
        s = os.lstat(tmp_path / path)
        assert item.mtime_ns == s.st_mtime_ns and item.ino == s.st_ino
    a = snap.items["a.txt"]
    assert (a.type, a.size, a.exec) == (FILE, 5, False)
    assert snap.items["run.sh"].exec is True
    assert snap.items["sub"].type == DIR and snap.items["empty-dir"].type == DIR
    link = snap.items["link"]
    assert (link.type, link.target, link.size) == (SYMLINK, "sub/deep/ü.txt", len("sub/deep/ü.txt".encode()))
    assert snap.items["sub/dangling"].target == "/nowhere"


def test_scan_leaves_out_ignored_paths_and_does_not_descend(tmp_path):
    make(tmp_path)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "keep.txt").write_text("k")
    (tmp_path / "notes.txt~").write_text("scratch")
    (tmp_path / "sub" / ".fogsync-tmp-123").write_text("ours")
    snap = scan(str(tmp_path), Ignore(["build/", "!build/keep.txt", "*.sh"]), clock=lambda: NOW)
    assert not any(p.startswith("build") for p in snap.items)  # as in git: no re-include below an excluded dir
    assert "notes.txt~" not in snap.items and "sub/.fogsync-tmp-123" not in snap.items
    assert "run.sh" not in snap.items and "a.txt" in snap.items


def test_a_pulls_temporary_file_untouched_for_a_day_is_noted_as_stale(tmp_path):
    temp = ".fogsync-tmp-41-0123abcd-3"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / temp).write_bytes(b"half a file")
    (tmp_path / ".fogsync-tmp-notes").write_bytes(b"ignored, but no name a pull writes")
    (tmp_path / ".fogsync-tmp-42-0123abcd-0").mkdir()  # the name, but not a file
    (tmp_path / "a.txt").write_bytes(b"a")
    made = max(os.lstat(p).st_ctime_ns for p in tmp_path.rglob("*"))
    day_on = scan(str(tmp_path), Ignore(), clock=lambda: made + STALE_TEMP_NS + 10**9)
    assert day_on.stale_temps == [f"sub/{temp}"]
    assert set(day_on.items) == {"sub", "a.txt"}  # still never synced
    assert scan(str(tmp_path), Ignore(), clock=lambda: made + STALE_TEMP_NS - 10**9).stale_temps == []


def test_non_utf8_name_is_skipped_with_a_problem(tmp_path):
    make(tmp_path)
    fd = os.open(os.fsencode(str(tmp_path / "sub")) + b"/bad\xff.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    assert not any("bad" in p for p in snap.items)
    assert len(snap.problems) == 1 and "UTF-8" in snap.problems[0]
    assert "sub/deep/ü.txt" in snap.items and snap.unreadable == set()


def test_symlink_with_non_utf8_target_is_skipped_with_a_problem(tmp_path):
    os.symlink(b"target\xfe", os.fsencode(str(tmp_path / "weird")))
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    assert "weird" not in snap.items
    assert len(snap.problems) == 1 and "weird" in snap.problems[0]


def test_fifo_is_skipped_with_a_problem(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    assert snap.items == {} and "pipe" in snap.problems[0]


def test_missing_folder(tmp_path):
    with pytest.raises(LocalError):
        scan(str(tmp_path / "absent"), Ignore())
    (tmp_path / "file").write_text("x")
    with pytest.raises(LocalError):
        scan(str(tmp_path / "file"), Ignore())


def _deny(monkeypatch, denied: str) -> None:
    """Listing ``denied`` fails as it would without read permission (the tests run as root)."""
    real_scandir, real_open = os.scandir, os.open

    def refuse(path) -> None:
        if not isinstance(path, int) and os.path.normpath(os.fspath(path)) == os.path.normpath(denied):
            raise PermissionError(13, "Permission denied", os.fspath(path))

    def scandir(path="."):
        refuse(path)
        return real_scandir(path)

    def open_(path, flags, *args, **kwargs):
        refuse(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(scanmod.os, "scandir", scandir)
    monkeypatch.setattr(scanmod.os, "open", open_)


def test_unreadable_dir_keeps_its_base_entries(tmp_path, monkeypatch):
    make(tmp_path)
    _deny(monkeypatch, str(tmp_path / "sub"))
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    assert snap.unreadable == {"sub"}
    assert "sub" in snap.items and not any(p.startswith("sub/") for p in snap.items)
    assert len(snap.problems) == 1 and "sub" in snap.problems[0] and "Permission denied" in snap.problems[0]

    f = Entry(FILE, 1, "h", 1000, bytes(48), SHA)
    base = {
        "sub": Entry(DIR, 1, "h"), "sub/deep": Entry(DIR, 1, "h"), "sub/deep/ü.txt": f,
        "sub/gone-or-not": f, "vanished.txt": f,
    }
    changes = compare(snap, base, {}, "me")
    # Below the unreadable dir nothing looks deleted; elsewhere a missing path is a deletion.
    for p in ("sub", "sub/deep", "sub/deep/ü.txt", "sub/gone-or-not"):
        assert changes.tree[p] == base[p]
    assert "vanished.txt" not in changes.tree
    assert not any(p.startswith("sub/") for p in changes.to_read)


def test_unreadable_top_keeps_the_whole_base(tmp_path, monkeypatch):
    make(tmp_path)
    _deny(monkeypatch, str(tmp_path))
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    assert snap.unreadable == {""} and snap.items == {}
    base = {"a.txt": Entry(FILE, 1, "h", 5, bytes(48), SHA), "d": Entry(DIR, 1, "h")}
    assert compare(snap, base, {}, "me").tree == base


# --- compare --------------------------------------------------------------------------------


def _snap(**items: Scanned) -> Snapshot:
    s = Snapshot(taken_ns=NOW)
    s.items = dict(items)
    return s


def test_compare_unchanged_file_keeps_its_base_entry_unread():
    old = Entry(FILE, T, "other", 5, bytes(48), SHA)
    snap = _snap(f=Scanned(FILE, 5, T, 3))
    ch = compare(snap, {"f": old}, {"f": Stat(5, T, 3)}, "me")
    assert ch.tree == {"f": old} and ch.to_read == []


@pytest.mark.parametrize(
    "local,stat",
    [
        (Scanned(FILE, 6, T, 3), Stat(5, T, 3)),  # size
        (Scanned(FILE, 5, T + 1, 3), Stat(5, T, 3)),  # mtime
        (Scanned(FILE, 5, T, 4), Stat(5, T, 3)),  # inode (replaced by rename)
        (Scanned(FILE, 5, T, 3, exec=True), Stat(5, T, 3)),  # exec bit
        (Scanned(FILE, 5, T, 3), None),  # no trusted stat recorded
    ],
)
def test_compare_changed_file_must_be_read(local, stat):
    old = Entry(FILE, T, "other", 5, bytes(48), SHA)
    stats = {"f": stat} if stat else {}
    ch = compare(_snap(f=local), {"f": old}, stats, "me")
    assert ch.to_read == ["f"] and "f" not in ch.tree


def test_compare_new_file_and_type_change():
    ch = compare(_snap(f=Scanned(FILE, 1, T, 1), d=Scanned(FILE, 1, T, 2)), {"d": Entry(DIR, 1, "h")},
                 {"d": Stat(1, T, 2)}, "me")
    assert sorted(ch.to_read) == ["d", "f"]


def test_compare_symlinks():
    old = Entry(SYMLINK, 1, "other", 1, target="a")
    same = compare(_snap(l=Scanned(SYMLINK, 1, T, 5, target="a")), {"l": old}, {}, "me")
    assert same.tree["l"] is old
    moved = compare(_snap(l=Scanned(SYMLINK, 1, T, 5, target="b")), {"l": old}, {}, "me")
    assert moved.tree["l"] == Entry(SYMLINK, T, "me", 1, target="b")
    new = compare(_snap(l=Scanned(SYMLINK, 2, T, 5, target="ü")), {}, {}, "me")
    assert new.tree["l"] == Entry(SYMLINK, T, "me", 2, target="ü")


def test_compare_dirs():
    old = Entry(DIR, 1, "other", 40, bytes(48), SHA)
    ch = compare(_snap(d=Scanned(DIR, 0, T, 1), n=Scanned(DIR, 0, T + 1, 2)), {"d": old}, {}, "me")
    assert ch.tree["d"] is old
    assert ch.tree["n"] == Entry(DIR, T + 1, "me")
    replaced = compare(_snap(d=Scanned(DIR, 0, T, 1)), {"d": Entry(FILE, 1, "h", 1, bytes(48), SHA)}, {}, "me")
    assert replaced.tree["d"] == Entry(DIR, T, "me")


def test_at_or_below():
    tree = {"a": 1, "a/b": 2, "ab": 3, "a/b/c": 4, "x": 5}
    assert sorted(at_or_below(tree, "a")) == ["a", "a/b", "a/b/c"]
    assert sorted(at_or_below(tree, "a/b")) == ["a/b", "a/b/c"]
    assert sorted(at_or_below(tree, "")) == sorted(tree)


def test_the_share_folder_may_be_a_symlink_but_a_directory_below_it_that_became_one_is_not_followed(tmp_path):
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "a.txt").write_text("a")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("s")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert set(scan(str(link), Ignore()).items) == {"sub", "sub/a.txt"}

    # As if "sub" were swapped for a link between its parent's listing and its own:
    (real / "sub" / "a.txt").unlink()
    (real / "sub").rmdir()
    (real / "sub").symlink_to(tmp_path / "outside")
    if scanmod._BY_FD:
        with pytest.raises(OSError):
            with scanmod._listed(str(real / "sub"), below=True):
                pass
    with scanmod._listed(str(link), below=False) as (entries, _):
        assert [de.name for de in entries] == ["sub"]


# --- digest ---------------------------------------------------------------------------------


def _digest(snap: Snapshot) -> str | None:
    """The whole scan's fingerprint, as the state seals it; None if part was unreadable."""
    dirs = snap.dir_digests()
    return scanmod.digest_of(dirs) if dirs is not None else None


def test_digest_is_the_same_for_the_same_folder(tmp_path):
    make(tmp_path)
    first = _digest(scan(str(tmp_path), Ignore(), clock=lambda: NOW))
    again = _digest(scan(str(tmp_path), Ignore(), clock=lambda: NOW + 10**9))  # the clock is no part of it
    assert first == again


def _rename(f) -> None:
    os.rename(f / "a.txt", f / "a2.txt")


def _repoint(f) -> None:
    os.unlink(f / "link")
    os.symlink("a.txt", f / "link")


@pytest.mark.parametrize(
    "change",
    [
        lambda f: (f / "a.txt").write_bytes(b"hellO"),  # same size, new mtime
        lambda f: os.utime(f / "a.txt", ns=(T - 1, T - 1), follow_symlinks=False),  # mtime alone
        lambda f: os.chmod(f / "a.txt", 0o755),  # the exec bit alone
        _rename,
        _repoint,
        lambda f: (f / "empty-dir" / "new").write_bytes(b""),
        lambda f: os.unlink(f / "sub" / "dangling"),
    ],
    ids=["content", "mtime", "exec", "rename", "link", "new", "deleted"],
)
def test_digest_changes_with_what_compare_looks_at(tmp_path, change):
    make(tmp_path)
    before = _digest(scan(str(tmp_path), Ignore(), clock=lambda: NOW))
    change(tmp_path)
    assert _digest(scan(str(tmp_path), Ignore(), clock=lambda: NOW)) != before


@pytest.mark.parametrize(
    "other",
    [
        {"f": Scanned(FILE, 5, T, 3, exec=True), "d": Scanned(DIR, 0, T, 4)},
        {"f": Scanned(FILE, 5, T, 4), "d": Scanned(DIR, 0, T, 4)},
        {"f": Scanned(FILE, 5, T + 1, 3), "d": Scanned(DIR, 0, T, 4)},
        {"f": Scanned(FILE, 6, T, 3), "d": Scanned(DIR, 0, T, 4)},
        {"f": Scanned(SYMLINK, 5, T, 3, target="abcde"), "d": Scanned(DIR, 0, T, 4)},
        {"f": Scanned(FILE, 5, T, 3), "e": Scanned(DIR, 0, T, 4)},
        {"f": Scanned(FILE, 5, T, 3)},
        {"f\0d": Scanned(FILE, 5, T, 3)},
    ],
)
def test_digest_of_any_other_snapshot_differs(other):
    one = _snap(f=Scanned(FILE, 5, T, 3), d=Scanned(DIR, 0, T, 4))
    assert _digest(_snap(**other)) != _digest(one)
    assert _digest(_snap(f=Scanned(FILE, 5, T, 3), d=Scanned(DIR, 0, T, 4))) == _digest(one)


def test_no_digest_for_a_scan_that_could_not_read_everything(tmp_path, monkeypatch):
    make(tmp_path)
    _deny(monkeypatch, str(tmp_path / "sub"))
    assert _digest(scan(str(tmp_path), Ignore(), clock=lambda: NOW)) is None


# --- directory digests ----------------------------------------------------------------------


def test_every_directory_listed_has_a_digest_and_they_make_the_scan_digest(tmp_path):
    make(tmp_path)
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    dirs = snap.dir_digests()
    assert set(dirs) == {"", "sub", "sub/deep", "empty-dir"}
    assert all(len(d) == 32 for d in dirs.values())
    assert scanmod.digest_of({**dirs, "sub": bytes(32)}) != scanmod.digest_of(dirs)
    assert scanmod.digest_of({k: v for k, v in dirs.items() if k != "empty-dir"}) != scanmod.digest_of(dirs)


@pytest.mark.parametrize("gone, added", [
    ({"sub": b"1"}, {"sub": b"9"}),  # a digest moved
    ({"empty-dir": b"3"}, {}),  # a directory gone
    ({}, {"new": b"7", "new/deeper": b""}),  # new ones, one of them UNSURE
    ({"": b"0", "sub": b"1"}, {"": b"5", "sub/x": b"6"}),
])
def test_a_seal_moved_by_what_changed_is_the_digest_of_the_result(gone, added):
    before = {"": b"0", "sub": b"1", "sub/deep": b"2", "empty-dir": b"3"}
    after = {**{d: v for d, v in before.items() if d not in gone}, **added}
    assert scanmod.resealed(scanmod.digest_of(before), gone, added) == scanmod.digest_of(after)
    assert scanmod.digest_of(after) != scanmod.digest_of(before)


def test_a_snapshot_made_by_hand_has_the_digests_a_scan_has(tmp_path):
    make(tmp_path)
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    by_hand = Snapshot(items=dict(snap.items), taken_ns=NOW)  # no ``listed``: grouped by each path's parent
    assert by_hand.dir_digests() == snap.dir_digests()
    del snap.items["a.txt"]  # ``listed`` no longer accounts for every item
    assert snap.dir_digests() == Snapshot(items=dict(snap.items)).dir_digests()


@pytest.mark.parametrize(
    "change, moved",
    [
        (lambda f: (f / "sub" / "deep" / "ü.txt").write_bytes(b"y" * 1000), {"sub/deep"}),
        (lambda f: os.chmod(f / "run.sh", 0o644), {""}),
        (lambda f: (f / "sub" / "new").write_bytes(b""), {"sub"}),
        (lambda f: (f / "empty-dir" / "d").mkdir(), {"empty-dir", "empty-dir/d"}),
        (lambda f: os.utime(f / "sub" / "deep", ns=(T, T)), {"sub"}),  # its entry in sub, not its own entries
    ],
    ids=["file", "exec", "new", "new-dir", "dir-mtime"],
)
def test_a_change_moves_the_digest_of_the_directory_it_is_in_and_no_other(tmp_path, change, moved):
    make(tmp_path)
    before = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    change(tmp_path)
    for d, item in before.items.items():  # a new or removed entry moves its directory's mtime: put it back
        if item.type == DIR and d not in ("sub/deep",):
            os.utime(tmp_path / d, ns=(item.mtime_ns, item.mtime_ns))
    before = before.dir_digests()
    after = scan(str(tmp_path), Ignore(), clock=lambda: NOW).dir_digests()
    assert {d for d in before.keys() | after.keys() if before.get(d) != after.get(d)} == moved


def test_only_keeps_the_entries_directly_in_the_directories_named(tmp_path):
    make(tmp_path)
    snap = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    part = snap.only({"", "sub/deep"})
    assert set(part.items) == {"sub", "empty-dir", "a.txt", "run.sh", "link", "sub/deep/ü.txt"}
    assert part.taken_ns == NOW and part.unreadable == set()
    assert part.dir_digests() == {d: v for d, v in snap.dir_digests().items() if d in ("", "sub/deep")}
    assert all(part.items[p] is snap.items[p] for p in part.items)


def test_a_scan_trusting_vouched_digests_keeps_only_what_a_pass_may_load(tmp_path):
    make(tmp_path)  # '' holds sub and empty-dir; sub holds deep; deep and empty-dir hold no directory
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.txt").write_bytes(b"b")
    vouched = scan(str(tmp_path), Ignore(), clock=lambda: NOW).dir_digests()
    (tmp_path / "other" / "b.txt").write_bytes(b"bee")  # other's digest moves; deep's and empty-dir's do not

    trusting = scan(str(tmp_path), Ignore(), clock=lambda: NOW, vouched=vouched)
    full = scan(str(tmp_path), Ignore(), clock=lambda: NOW)
    assert trusting.dir_digests() == full.dir_digests() != vouched
    assert sorted(where for where, _ in trusting.listed) == ["", "other", "sub"]  # moved, or holding a directory
    assert trusting.items == {p: i for p, i in full.items.items() if not p.startswith(("sub/deep/", "empty-dir/"))}
    assert trusting.only({"", "other"}).items == full.only({"", "other"}).items
