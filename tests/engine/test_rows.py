"""The state rows a pass saves (engine/rows.py): which stats are trusted, which content is remembered."""

from __future__ import annotations

from fogsync.engine.pull import Applied
from fogsync.engine.rows import contents_outside, keep_base_for, state_rows
from fogsync.folder.scan import RACY_NS, Scanned, Stat
from fogsync.format.tree import DIR, FILE, Entry

NOW = 1_700_000_000_123_456_789  # when the scan was taken


def _file(n: int, bptr: bytes | None = b"p" * 48) -> Entry:
    return Entry(FILE, 1, "h", n, bptr, f"{n:064x}")


def test_a_stat_too_fresh_to_trust_is_not_kept():
    final = {p: _file(1) for p in ("old", "edge", "fresh", "future")}
    seen = {
        "old": Scanned(FILE, 1, NOW - RACY_NS - 1, 7),
        "edge": Scanned(FILE, 1, NOW - RACY_NS, 8),
        "fresh": Scanned(FILE, 1, NOW - 5, 9),
        "future": Scanned(FILE, 1, NOW + 10**9, 10),
    }
    rows, removed = state_rows(final, {}, {}, seen, {}, NOW, Applied())
    assert rows["old"] == (final["old"], Stat(1, NOW - RACY_NS - 1, 7))
    assert [rows[p][1] for p in ("edge", "fresh", "future")] == [None, None, None]
    assert removed == []


def test_a_file_the_pass_did_not_see_keeps_no_stat_and_a_gone_path_is_removed():
    base = {"a": _file(1), "gone": _file(2)}
    final = {"a": base["a"], "new": _file(3)}
    rows, removed = state_rows(final, base, {"a": Stat(1, 5, 7)}, {"a": Scanned(FILE, 1, 5, 7)}, {}, NOW, Applied())
    assert rows == {"new": (final["new"], None)}  # "a" is as its row says: no row to write
    assert removed == ["gone"]


def test_a_path_left_alone_keeps_its_base_and_its_directories_lose_their_bptr():
    base = {"d": Entry(DIR, 1, "h", bptr=b"d" * 48), "d/f": _file(1)}
    final = {"d": Entry(DIR, 2, "h", bptr=b"e" * 48), "d/f": _file(2)}
    rows = {"d/f": (final["d/f"], None)}
    removed: list[str] = []
    keep_base_for({"d/f"}, rows, removed, base, final)
    assert rows == {"d": (final["d"].with_bptr(None), None)}


def test_content_the_final_tree_no_longer_holds_is_remembered():
    base = {"a": _file(1), "b": _file(2)}
    final = {"b": base["b"], "c": _file(1)}  # a's content moved to c: still in the tree
    assert contents_outside(final, base, {}, [], {}, ["a"]) == []
    assert contents_outside({"c": _file(3)}, base, {}, [], {}, ["a", "b"]) == [
        (base["a"].sha256, 1, base["a"].bptr), (base["b"].sha256, 2, base["b"].bptr)]
