"""fogsync.folder.state: the SQLite base per share, on a real file."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Mapping

import pytest

from fogsync.folder.scan import Stat
from fogsync.folder.state import PAGE_SIZE, ShareState, State, stat_of
from fogsync.format.tree import DIR, FILE, SYMLINK, Entry

B1, B2 = bytes([1]) * 48, bytes([2]) * 48
SHA = hashlib.sha256(b"x").hexdigest()


@pytest.fixture
def db(tmp_path):
    s = State(str(tmp_path / "deep" / "state.sqlite"))
    yield s
    s.close()


def sample() -> dict:
    return {
        "a": (Entry(DIR, 5, "h", 40, B2, SHA), None),
        "a/f.txt": (Entry(FILE, 1_700_000_000_123_456_789, "hôst", 3, B1, SHA, True), Stat(3, 1_700_000_000_123_456_789, 42)),
        "a/empty": (Entry(FILE, 7, "h", 0, None, None, False), Stat(0, 7, 43)),
        "ln": (Entry(SYMLINK, 8, "h", 4, target="a/ü"), None),
        "x": (Entry(FILE, 9, "h", 3, B1, SHA, extra=(("colour", "blue"), ("n", [1, 2]))), None),
    }


def test_new_share_has_no_base(db):
    assert db.share("s") is None
    db.ensure_share("s", "id1")
    assert db.share("s") == ShareState("id1", None, None)
    assert db.load("s") == ({}, {})


def test_save_load_round_trip(db, tmp_path):
    db.ensure_share("s", "id1")
    rows = sample()
    db.save("s", B1, "tag1", rows, [], [(SHA, 3, B1)])
    assert db.share("s") == ShareState("id1", B1, "tag1")
    tree, stats = db.load("s")
    assert tree == {p: e for p, (e, _) in rows.items()}
    assert stats == {p: s for p, (_, s) in rows.items() if s is not None}
    assert dict(tree["x"].extra) == {"colour": "blue", "n": [1, 2]}
    assert tree["a/f.txt"].exec is True and tree["a/empty"].bptr is None
    assert db.content("s", SHA) == B1 and db.content("s", "0" * 64) is None
    assert db.content_sizes("s") == {3}
    # survives reopening the file
    db.close()
    again = State(str(tmp_path / "deep" / "state.sqlite"))
    try:
        assert again.load("s")[0] == tree and again.share("s").base == B1
    finally:
        again.close()


def test_incremental_save_replaces_and_removes(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t1", sample(), [])
    newer = Entry(FILE, 10, "h2", 3, B2, SHA)
    db.save("s", B2, "t2", {"x": (newer, Stat(3, 10, 1))}, ["ln", "a/empty"])
    tree, stats = db.load("s")
    assert tree["x"] == newer and stats["x"] == Stat(3, 10, 1)
    assert "ln" not in tree and "a/empty" not in tree and "a/empty" not in stats
    assert "a/f.txt" in tree
    assert db.share("s").base == B2


def test_shares_are_separate(db):
    db.ensure_share("s", "id1")
    db.ensure_share("t", "id2")
    db.save("s", B1, "t", sample(), [], [(SHA, 3, B1)])
    assert db.load("t") == ({}, {})
    assert db.content("t", SHA) is None


class _Exploding(Mapping):
    """Rows that fail half way through being written."""

    def __init__(self, first: dict) -> None:
        self._first = first

    def __getitem__(self, key):
        return self._first[key]

    def __len__(self) -> int:
        return len(self._first) + 1

    def __iter__(self):
        yield from self._first
        raise RuntimeError("crash half way")

    def items(self):
        yield from self._first.items()
        raise RuntimeError("crash half way")


def test_save_is_atomic(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t1", sample(), [], [(SHA, 3, B1)])
    before = db.load("s")
    new = {"new": (Entry(FILE, 1, "h", 3, B2, SHA), None)}
    with pytest.raises(RuntimeError):
        db.save("s", B2, "t2", _Exploding(new), ["x"], [("1" * 64, 9, B2)])
    with pytest.raises(TypeError):  # an unserialisable extra, after the base and deletions
        db.save("s", B2, "t2", {"bad": (Entry(FILE, 1, "h", 3, B2, SHA, extra=(("k", object()),)), None)}, ["x"])
    assert db.share("s") == ShareState("id1", B1, "t1")
    assert db.load("s") == before
    assert db.content("s", "1" * 64) is None
    # and the database is still usable afterwards
    db.save("s", B2, "t2", new, ["x"])
    tree, _ = db.load("s")
    assert "new" in tree and "x" not in tree and db.share("s").base == B2


def test_forget(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [], [(SHA, 3, B1)])
    db.forget("s")
    assert db.share("s") is None
    assert db.load("s") == ({}, {})
    assert db.content("s", SHA) is None


def test_ensure_share_same_id_keeps_the_base(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [])
    db.ensure_share("s", "id1")
    assert db.share("s").base == B1 and db.load("s")[0]


def test_ensure_share_with_another_id_starts_over(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [], [(SHA, 3, B1)])
    db.ensure_share("s", "id2")
    assert db.share("s") == ShareState("id2", None, None)
    assert db.load("s") == ({}, {})
    assert db.content("s", SHA) is None


def test_two_handles_on_one_file(tmp_path):
    path = str(tmp_path / "s.sqlite")
    a, b = State(path), State(path)
    try:
        a.ensure_share("s", "id1")
        a.save("s", B1, "t", sample(), [])
        assert b.share("s").base == B1 and b.load("s")[0] == a.load("s")[0]
    finally:
        a.close()
        b.close()


def test_own_roots(db, monkeypatch):
    from fogsync.folder import state as statemod

    db.ensure_share("s", "id1")
    db.ensure_share("t", "id9")
    refs = [bytes([i]) * 48 for i in range(1, 6)]
    for r in refs[:2]:
        db.add_own_root("s", r)
    db.add_own_root("s", refs[0])  # twice is fine
    assert db.own_roots("s", refs) == set(refs[:2])
    assert db.own_roots("t", refs) == set()
    monkeypatch.setattr(statemod, "OWN_ROOTS_KEPT", 3)
    for r in refs[2:]:
        db.add_own_root("s", r)
    assert db.own_roots("s", refs) == set(refs[2:])  # only the newest are kept
    db.ensure_share("s", "id2")  # another share id: starts over
    assert db.own_roots("s", refs) == set()


def test_stat_of_shares_the_entry_ints_only_where_they_agree():
    entry = Entry(FILE, 1_700_000_000_123_456_789, "h", 70_000, None, None)
    size, mtime = int("70000"), int("1700000000123456789")  # equal, but other objects (as a stat's are)
    assert size is not entry.size and mtime is not entry.mtime
    same = stat_of(entry, size, mtime, 42)
    assert same == Stat(70_000, 1_700_000_000_123_456_789, 42)
    assert same.size is entry.size and same.mtime_ns is entry.mtime
    assert stat_of(entry, 70_001, 5, 42) == Stat(70_001, 5, 42)


def test_a_remembered_scan_lasts_until_the_next_save(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [], scan_digest="d1")
    assert db.share("s").scan_digest == "d1"
    db.remember_scan("s", "d2")
    assert db.share("s") == ShareState("id1", B1, "t", "d2")
    db.save("s", B2, "t2", {}, ["x"])  # new rows: that scan says nothing about them
    assert db.share("s").scan_digest is None


def test_a_database_from_before_the_scan_digest_gains_the_column(tmp_path):
    path = str(tmp_path / "old.sqlite")
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE share (name TEXT PRIMARY KEY, share_id TEXT NOT NULL, base BLOB, head_tag TEXT, synced_at TEXT);"
        "INSERT INTO share(name, share_id, base, head_tag) VALUES ('s', 'id1', x'01', 'tag');")
    old.close()
    for seen, remember in ((None, "d"), ("d", "d2")):  # and opened again, the column is there
        s = State(path)
        try:
            assert s.share("s") == ShareState("id1", b"\x01", "tag", seen)
            s.remember_scan("s", remember)
        finally:
            s.close()


def test_a_save_by_a_fogsync_that_knows_no_scan_digest_forgets_it(tmp_path):
    path = str(tmp_path / "s.sqlite")
    s = State(path)
    try:
        s.ensure_share("s", "id1")
        s.save("s", B1, "t", sample(), [], scan_digest="d1")
        old = sqlite3.connect(path)  # an older FogSync's save, which sets no scan_digest
        with old:
            old.execute("UPDATE share SET base=?, head_tag=?, synced_at=datetime('now') WHERE name=?", (B2, "t2", "s"))
        old.close()
        assert s.share("s") == ShareState("id1", B2, "t2", None)
        s.save("s", B1, "t3", {}, [], scan_digest="d2")
        s.save("s", B2, "t4", {}, [], scan_digest="d2")  # this one names the seal it keeps, though it is the same
        assert s.share("s") == ShareState("id1", B2, "t4", "d2")
    finally:
        s.close()


def test_load_dirs_loads_just_the_entries_directly_in_each_directory(db):
    db.ensure_share("s", "id1")
    f = (Entry(FILE, 1, "h", 3, B1, SHA), Stat(3, 1, 7))
    d = (Entry(DIR, 1, "h", 40, B2, SHA), None)
    rows = {"a": d, "a/b": d, "a/b/c": f, "a/f": f, "a-b": d, "a-b/f": f, "a0": f, "ab": f, "a/ü": f, "z": f}
    db.save("s", B1, "t", rows, [])
    db.save("other", B1, "t", {"a/f": f}, [])  # another share's rows are no part of it
    tree, stats = db.load_dirs("s", ["a"])
    assert set(tree) == {"a/b", "a/f", "a/ü"} and stats == {"a/f": f[1], "a/ü": f[1]}
    assert set(db.load_dirs("s", [""])[0]) == {"a", "a-b", "a0", "ab", "z"}
    assert set(db.load_dirs("s", ["a/b", "a-b"])[0]) == {"a/b/c", "a-b/f"}
    assert db.load_dirs("s", ["nowhere"]) == ({}, {})
    full, full_stats = db.load("s")
    assert db.load_dirs("s", ["", "a", "a/b", "a-b"]) == (full, full_stats)


def test_directory_digests_are_replaced_with_each_scan_remembered(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [], scan_digest="d1", scan_dirs={"": b"1", "a": b"2"})
    assert db.scan_dirs("s") == {"": b"1", "a": b"2"}
    db.save("s", B2, "t2", {}, ["x"])  # no digests: they stay, and no seal vouches for them
    assert db.scan_dirs("s") == {"": b"1", "a": b"2"} and db.share("s").scan_digest is None
    db.remember_scan("s", "d2", {"": b"3", "b": b"4"})
    assert db.scan_dirs("s") == {"": b"3", "b": b"4"} and db.share("s").scan_digest == "d2"
    db.forget("s")
    assert db.scan_dirs("s") == {}


def test_a_change_to_the_directory_digests_is_written_only_while_the_seal_it_changes_holds(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [], scan_digest="d1", scan_dirs={"": b"1", "a": b"2"})
    db.remember_scan("s", "d2", delta=("d1", {"b": b"3", "": b"5"}, ["a"]))
    assert db.scan_dirs("s") == {"": b"5", "b": b"3"} and db.share("s").scan_digest == "d2"
    other = State(db.path)  # another process saves in between
    other.remember_scan("s", "d3", {"": b"7"})
    other.close()
    db.save("s", B2, "t2", {}, ["x"], scan_digest="d4", scan_delta=("d2", {"c": b"4"}, ["b"]))
    assert db.scan_dirs("s") == {"": b"7"} and db.share("s").scan_digest is None  # not sealed: not trusted
    assert db.share("s").base == B2 and "x" not in db.load("s")[0]  # the rest of the save stands
    db.remember_scan("s", "d5", delta=("d3", {"c": b"4"}, []))
    assert db.scan_dirs("s") == {"": b"7"} and db.share("s").scan_digest is None


def test_contents_of_sizes_finds_base_files_of_those_sizes(db):
    db.ensure_share("s", "id1")
    rows = {f"f{n}": (Entry(FILE, 1, "h", n, n.to_bytes(48, "big"), f"{n:064x}"), None) for n in range(1, 1200)}
    rows["empty"] = (Entry(FILE, 1, "h", 0), None)
    rows["d"] = (Entry(DIR, 1, "h", 5, B2, SHA), None)
    db.save("s", B1, "t", rows, [])
    found = db.contents_of_sizes("s", [5, 7, 7, 0, 1100, 5000])
    assert sorted(found) == sorted((f"{n:064x}", n, n.to_bytes(48, "big")) for n in (5, 7, 1100))
    many = db.contents_of_sizes("s", range(1, 1200))  # in several queries
    assert len(many) == 1199


def test_a_new_database_has_big_pages_and_an_old_one_keeps_its_own(tmp_path):
    new = State(str(tmp_path / "new.sqlite"))
    try:
        assert new._db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    finally:
        new.close()
    path = str(tmp_path / "old.sqlite")
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE keep (x)")
    old.close()
    s = State(path)
    try:
        assert s._db.execute("PRAGMA page_size").fetchone()[0] == 4096
        s.ensure_share("s", "id1")
        s.save("s", B1, "t", sample(), [])
        assert s.load("s")[0]["a/f.txt"] == sample()["a/f.txt"][0]
    finally:
        s.close()


def test_a_database_from_before_the_seen_root_gains_the_columns_empty(tmp_path):
    path = str(tmp_path / "old.sqlite")
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE share (name TEXT PRIMARY KEY, share_id TEXT NOT NULL, base BLOB, head_tag TEXT, synced_at TEXT,"
        " scan_digest TEXT);"
        "INSERT INTO share(name, share_id, base, head_tag) VALUES ('s', 'id1', x'01', 'tag');")
    old.close()
    s = State(path)
    try:
        info = s.share("s")
        assert (info.base, info.seen_root, info.seen_version, info.folder_marked) == (b"\x01", None, None, False)
        s.remember_seen("s", B2, 7)
        s.mark_folder("s")
        info = s.share("s")
        assert (info.seen_root, info.seen_version, info.folder_marked) == (B2, 7, True)
    finally:
        s.close()


def test_counting_and_listing_the_files_of_the_base(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [])
    assert sorted(db.file_paths("s")) == ["a/empty", "a/f.txt", "ln", "x"] and db.count_files("s") == 4


def test_a_rebase_replaces_the_base_and_forgets_stats_contents_and_scan(db):
    db.ensure_share("s", "id1")
    db.save("s", B1, "t", sample(), [], [(SHA, 3, B1)], scan_digest="d", scan_dirs={"": b"1"})
    tree = {"n.txt": Entry(FILE, 3, "h", 3, B2, SHA)}
    db.rebase("s", B2, tree, 4)
    info = db.share("s")
    assert (info.base, info.head_tag, info.scan_digest, info.seen_root, info.seen_version) == (B2, None, None, B2, 4)
    assert db.load("s") == (tree, {})  # no stat: the next pass reads every file
    assert db.content("s", SHA) is None and db.scan_dirs("s") == {}


def test_load_dirs_of_the_top_finds_every_top_path_and_nothing_below(db):
    db.ensure_share("s", "id1")
    db.ensure_share("t", "id2")
    names = ["a", "a-b", "a.txt", "a/x", "a/x/y", "a0", "b", "b/c", "z/d/e", "z", "ü", "ü/ä"]
    rows = {p: (Entry(FILE, 1, "h", 3, B1, SHA) if p in ("a-b", "a.txt", "a0", "b/c", "z/d/e", "a/x/y") else
                Entry(DIR, 1, "h"), None) for p in names}
    db.save("s", B1, "t1", rows, [])
    db.save("t", B1, "t1", {"a1": (Entry(FILE, 1, "h", 3, B1, SHA), None)}, [])
    tree, _ = db.load_dirs("s", [""])
    assert set(tree) == {"a", "a-b", "a.txt", "a0", "b", "z", "ü"}
    assert set(db.load_dirs("s", ["", "a"])[0]) == set(tree) | {"a/x"}
