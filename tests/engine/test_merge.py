"""Tests for fogsync.merge: the per-path rules, conflict names, and properties over random trees."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogsync.engine.merge import Conflict, conflict_name, merge
from fogsync.format.tree import DIR, FILE, SYMLINK, Entry, parent_of

NOW = datetime(2026, 11, 21, 23, 34, 56, tzinfo=timezone.utc)
TAG = "conflict from laptop 2026-11-21 2334"


# --- building entries and trees -------------------------------------------------


def file(content: str, *, host: str = "base", mtime: int = 1, exec: bool = False) -> Entry:
    """A well-formed file entry: 48-byte bptr and 64-hex sha256 derived from the content."""
    data = content.encode()
    return Entry(
        FILE,
        mtime,
        host,
        size=len(data) + 1,
        bptr=hashlib.sha384(b"bptr:" + data).digest(),
        sha256=hashlib.sha256(data).hexdigest(),
        exec=exec,
    )


def folder(*, host: str = "base", mtime: int = 1) -> Entry:
    return Entry(DIR, mtime, host)


def link(target: str, *, host: str = "base", mtime: int = 1) -> Entry:
    return Entry(SYMLINK, mtime, host, target=target)


def tree(entries: dict[str, Entry], *, host: str = "base") -> dict[str, Entry]:
    """``entries`` plus any missing parent directories."""
    out = dict(entries)
    for path in entries:
        parent = parent_of(path)
        while parent and parent not in out:
            out[parent] = folder(host=host)
            parent = parent_of(parent)
    return out


def run(base, local, remote):
    return merge(base, local, remote, host="laptop", now=NOW)


def content(e: Entry) -> tuple:
    return (e.type, e.sha256, e.size, e.exec, e.target)


def contents_by_path(t) -> dict[str, tuple]:
    return {p: content(e) for p, e in t.items()}


def contents(t) -> set[tuple]:
    return {content(e) for e in t.values() if e.type != DIR}


def assert_parents_present(t) -> None:
    for path in t:
        parent = parent_of(path)
        assert parent == "" or t[parent].type == DIR, path


# --- one side, both sides, neither ------------------------------------------------


def test_unchanged_on_both_keeps_the_remote_entry():
    base = {"a.txt": file("x")}
    local = {"a.txt": file("x", host="laptop", mtime=2)}
    remote = {"a.txt": file("x", host="desk", mtime=3)}
    result = run(base, local, remote)
    assert result.tree["a.txt"] is remote["a.txt"]
    assert result.conflicts == ()


def test_change_on_local_only_wins_with_its_metadata():
    base = {"a.txt": file("x")}
    local = {"a.txt": file("y", host="laptop", mtime=7)}
    result = run(base, local, dict(base))
    assert result.tree == {"a.txt": local["a.txt"]}
    assert result.tree["a.txt"].host == "laptop" and result.tree["a.txt"].mtime == 7


def test_change_on_remote_only_wins_with_its_metadata():
    base = {"a.txt": file("x")}
    remote = {"a.txt": file("y", host="desk", mtime=9)}
    result = run(base, dict(base), remote)
    assert result.tree["a.txt"] is remote["a.txt"]


def test_exec_bit_change_counts_as_a_change():
    base = {"run.sh": file("x")}
    local = {"run.sh": file("x", exec=True, host="laptop")}
    assert run(base, local, base).tree["run.sh"].exec


def test_same_change_on_both_sides_gives_one_copy_from_remote():
    base = {"a.txt": file("x")}
    local = {"a.txt": file("y", host="laptop")}
    remote = {"a.txt": file("y", host="desk")}
    result = run(base, local, remote)
    assert result.tree == {"a.txt": remote["a.txt"]}
    assert result.tree["a.txt"].host == "desk"
    assert result.conflicts == ()


def test_added_on_one_side_appears_with_its_parents():
    local = tree({"new/deep/n.txt": file("n", host="laptop")}, host="laptop")
    result = run({}, local, {})
    assert result.tree == local


def test_added_on_both_sides_identically_gives_one_copy():
    local = tree({"d/n.txt": file("n", host="laptop")}, host="laptop")
    remote = tree({"d/n.txt": file("n", host="desk")}, host="desk")
    result = run({}, local, remote)
    assert result.tree == remote
    assert result.conflicts == ()


def test_siblings_changed_on_different_sides_are_merged_path_by_path():
    base = tree({"d/a.txt": file("a"), "d/b.txt": file("b")})
    local = {**base, "d/a.txt": file("a2", host="laptop"), "d/l.txt": file("l", host="laptop")}
    remote = {**base, "d/b.txt": file("b2", host="desk"), "d/r.txt": file("r", host="desk")}
    result = run(base, local, remote)
    assert contents_by_path(result.tree) == contents_by_path(
        tree({"d/a.txt": file("a2"), "d/b.txt": file("b2"), "d/l.txt": file("l"), "d/r.txt": file("r")})
    )
    assert result.conflicts == ()


# --- changed differently on both sides --------------------------------------------------


def test_different_changes_on_both_sides_keep_both():
    base = tree({"docs/report.txt": file("x")})
    local = tree({"docs/report.txt": file("mine", host="laptop")})
    remote = tree({"docs/report.txt": file("theirs", host="desk")})
    result = run(base, local, remote)
    copy = f"docs/report ({TAG}).txt"
    assert result.tree["docs/report.txt"] is remote["docs/report.txt"]
    assert result.tree[copy] is local["docs/report.txt"]
    assert result.conflicts == (Conflict("docs/report.txt", "both-changed", copy),)


def test_added_on_both_sides_differently_is_a_conflict():
    local = {"n.txt": file("mine", host="laptop")}
    remote = {"n.txt": file("theirs", host="desk")}
    result = run({}, local, remote)
    copy = f"n ({TAG}).txt"
    assert result.tree == {"n.txt": remote["n.txt"], copy: local["n.txt"]}
    assert result.conflicts == (Conflict("n.txt", "both-added", copy),)


def test_symlinks_retargeted_differently_keep_both():
    base = {"ln": link("a")}
    result = run(base, {"ln": link("b", host="laptop")}, {"ln": link("c", host="desk")})
    assert result.tree["ln"].target == "c"
    assert result.tree[f"ln ({TAG})"].target == "b"


# --- deletions ----------------------------------------------------------------------


def test_deleted_locally_changed_remotely_comes_back_with_parents():
    base = tree({"a/b/f.txt": file("x")})
    remote = tree({"a/b/f.txt": file("y", host="desk")}, host="desk")
    result = run(base, {}, remote)
    assert result.tree == remote
    assert result.conflicts == ()


def test_deleted_remotely_changed_locally_comes_back_with_parents():
    base = tree({"a/b/f.txt": file("x")})
    local = tree({"a/b/f.txt": file("y", host="laptop")}, host="laptop")
    result = run(base, local, {})
    assert result.tree == local


@pytest.mark.parametrize("deleting_side", ["local", "remote"])
def test_deleted_on_one_side_unchanged_on_the_other_is_deleted(deleting_side):
    base = tree({"keep.txt": file("k"), "d/gone.txt": file("g")})
    smaller = {"keep.txt": base["keep.txt"]}
    local, remote = (smaller, base) if deleting_side == "local" else (base, smaller)
    assert run(base, local, remote).tree == smaller


def test_deleted_on_both_sides_is_gone():
    base = tree({"d/gone.txt": file("g")})
    assert run(base, {}, {}).tree == {}


def test_directory_deleted_locally_survives_with_what_remote_added_inside():
    base = tree({"d/old.txt": file("o"), "d/sub/x.txt": file("x")})
    remote = {**base, "d/new.txt": file("n", host="desk")}
    result = run(base, {}, remote)
    assert set(result.tree) == {"d", "d/new.txt"}
    assert result.tree["d"] is remote["d"]


def test_directory_deleted_remotely_survives_with_what_local_changed_inside():
    base = tree({"d/old.txt": file("o"), "d/sub/x.txt": file("x")})
    local = {**base, "d/sub/x.txt": file("x2", host="laptop")}
    result = run(base, local, {})
    assert set(result.tree) == {"d", "d/sub", "d/sub/x.txt"}
    assert result.tree["d/sub/x.txt"] is local["d/sub/x.txt"]


def test_missing_parent_is_taken_from_the_side_that_kept_the_directory():
    base = tree({"d/x.txt": file("x")})
    remote = tree({"d/x.txt": file("x2", host="desk")}, host="desk")
    local = tree({"d/x.txt": file("x2", host="laptop")}, host="laptop")
    assert run(base, {}, remote).tree["d"] is remote["d"]
    assert run(base, local, {}).tree["d"] is local["d"]
    assert run(base, local, remote).tree["d"] is remote["d"]


# --- type conflicts -------------------------------------------------------------------


def test_local_file_where_remote_has_a_directory_moves_the_file():
    local = {"x": file("mine", host="laptop")}
    remote = tree({"x/inner.txt": file("theirs", host="desk")}, host="desk")
    result = run({}, local, remote)
    copy = f"x ({TAG})"
    assert result.tree == {**remote, copy: local["x"]}
    assert result.conflicts == (Conflict("x", "type", copy),)


def test_local_directory_where_remote_has_a_file_moves_the_whole_subtree():
    local = tree({"x.d/a.txt": file("a", host="laptop"), "x.d/s/b.txt": file("b", host="laptop")}, host="laptop")
    remote = {"x.d": file("theirs", host="desk")}
    result = run({}, local, remote)
    copy = f"x ({TAG}).d"
    assert result.tree == {
        "x.d": remote["x.d"],
        copy: local["x.d"],
        f"{copy}/a.txt": local["x.d/a.txt"],
        f"{copy}/s": local["x.d/s"],
        f"{copy}/s/b.txt": local["x.d/s/b.txt"],
    }
    assert result.conflicts == (Conflict("x.d", "type", copy),)


def test_new_empty_local_directory_where_remote_has_a_file_is_kept():
    result = run({}, {"x": folder(host="laptop")}, {"x": file("theirs", host="desk")})
    assert result.tree[f"x ({TAG})"].type == DIR
    assert result.tree["x"].type == FILE


def test_file_against_symlink_is_a_type_conflict():
    base = {"x": file("old")}
    result = run(base, {"x": link("t", host="laptop")}, {"x": file("new", host="desk")})
    assert result.tree["x"].type == FILE and result.tree[f"x ({TAG})"].type == SYMLINK
    assert [c.kind for c in result.conflicts] == ["type"]


def test_remote_replaced_a_directory_local_changed_inside_keeps_local_changes_in_a_copy():
    base = tree({"d/changed.txt": file("c"), "d/same.txt": file("s")})
    local = {**base, "d/changed.txt": file("c2", host="laptop")}
    remote = {"d": file("now a file", host="desk")}
    result = run(base, local, remote)
    copy = f"d ({TAG})"
    assert result.tree == {"d": remote["d"], copy: local["d"], f"{copy}/changed.txt": local["d/changed.txt"]}
    assert result.conflicts == (Conflict("d", "type", copy),)


def test_local_replaced_a_directory_remote_changed_inside_keeps_the_directory():
    base = tree({"d/changed.txt": file("c"), "d/same.txt": file("s")})
    local = {"d": file("now a file", host="laptop")}
    remote = {**base, "d/changed.txt": file("c2", host="desk")}
    result = run(base, local, remote)
    copy = f"d ({TAG})"
    assert result.tree == {"d": remote["d"], "d/changed.txt": remote["d/changed.txt"], copy: local["d"]}
    assert result.conflicts == (Conflict("d", "type", copy),)


def test_directory_replaced_by_file_without_changes_inside_is_replaced():
    base = tree({"d/same.txt": file("s")})
    remote = {"d": file("now a file", host="desk")}
    assert run(base, base, remote).tree == remote
    assert run(base, remote, base).tree == remote


# --- conflict names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, expected",
    [
        ("report.txt", f"report ({TAG}).txt"),
        ("archive.tar.gz", f"archive.tar ({TAG}).gz"),
        (".bashrc", f".bashrc ({TAG})"),
        (".config.bak", f".config ({TAG}).bak"),
        ("Makefile", f"Makefile ({TAG})"),
        ("odd.", f"odd. ({TAG})"),
        ("a/b c/report.txt", f"a/b c/report ({TAG}).txt"),
        ("a/b.d/Makefile", f"a/b.d/Makefile ({TAG})"),
    ],
)
def test_conflict_name(path, expected):
    assert conflict_name(path, "laptop", NOW, set()) == expected


def test_conflict_name_counts_up_inside_the_parentheses_when_taken():
    taken = {f"d/report ({TAG}).txt", f"d/report ({TAG} 2).txt"}
    assert conflict_name("d/report.txt", "laptop", NOW, taken) == f"d/report ({TAG} 3).txt"


def test_conflict_name_shows_utc_and_keeps_names_one_component():
    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    assert conflict_name("r.txt", "laptop", plus_two, ()) == f"r ({TAG}).txt"
    assert conflict_name("r.txt", "a/b", NOW, ()) == "r (conflict from a-b 2026-11-21 2334).txt"


def test_a_conflict_name_of_a_255_byte_name_fits_cut_on_a_character_boundary():
    name = "€" * 85 + ".txt"  # 259 bytes: over the limit itself, as a file system would not hold it
    for path in ("€" * 85, "d/" + "€" * 84 + ".txt"):
        copy = conflict_name(path, "laptop", NOW, set())
        last = copy.rpartition("/")[2]
        assert len(last.encode()) <= 255
        assert f" ({TAG})" in last and last.startswith("€")
        assert copy.startswith(path.rpartition("/")[0])
    assert conflict_name("d/" + "€" * 84 + ".txt", "laptop", NOW, set()).endswith(f"€ ({TAG}).txt")
    assert len(conflict_name(name, "laptop", NOW, set()).encode()) <= 255


def test_a_cut_conflict_name_still_counts_up_when_taken():
    path = "x" * 250 + ".txt"
    first = conflict_name(path, "laptop", NOW, set())
    second = conflict_name(path, "laptop", NOW, {first})
    assert first != second and second.endswith(f" ({TAG} 2).txt")
    assert max(len(first.encode()), len(second.encode())) <= 255


def test_an_extension_too_long_for_any_stem_is_cut_with_the_stem():
    copy = conflict_name("a." + "é" * 126, "laptop", NOW, set())  # 254 bytes, nearly all extension
    assert len(copy.encode()) <= 255 and copy.startswith("a.é") and copy.endswith(f" ({TAG})")
    long_ext = "report." + "x" * 210  # the extension and the tag fit, leaving room for "repor"
    assert conflict_name(long_ext, "laptop", NOW, set()) == f"repor ({TAG})." + "x" * 210


def test_a_long_host_name_is_cut_in_the_tag():
    copy = conflict_name("r.txt", "h" * 300, NOW, set())
    assert len(copy.encode()) <= 255 and copy.startswith("r (conflict from hhh") and copy.endswith(".txt")


def test_conflict_copies_sort_beside_the_original():
    names = ["a.txt", "report.txt", "report2.txt", "reports.txt", "zebra.txt"]
    first = conflict_name("report.txt", "laptop", NOW, set(names))
    second = conflict_name("report.txt", "laptop", NOW, set(names) | {first})
    ordered = sorted(names + [first, second])
    i = ordered.index("report.txt")
    assert set(ordered[i - 2 : i]) == {first, second}


def test_merge_avoids_copy_names_taken_in_any_tree():
    base = {"r.txt": file("x"), f"r ({TAG}).txt": file("old copy")}
    local = {"r.txt": file("mine", host="laptop")}
    remote = {"r.txt": file("theirs", host="desk")}
    result = run(base, local, remote)
    assert result.conflicts[0].copy_path == f"r ({TAG} 2).txt"
    assert set(result.tree) == {"r.txt", f"r ({TAG} 2).txt"}


# --- determinism and helpers ----------------------------------------------------------


def test_merge_is_deterministic_regardless_of_dict_order():
    base = tree({"a/x.txt": file("x"), "b/y.txt": file("y"), "c": file("c")})
    local = tree({"a/x.txt": file("x1", host="laptop"), "b": file("bf", host="laptop"), "n": file("n1")})
    remote = tree({"a/x.txt": file("x2", host="desk"), "b/y.txt": file("y2"), "n": file("n2"), "c/z": file("z")})
    forward = run(base, local, remote)
    backward = run(*(dict(reversed(list(t.items()))) for t in (base, local, remote)))
    assert forward == backward
    assert list(forward.tree) == list(backward.tree) == sorted(forward.tree)
    assert [c.path for c in forward.conflicts] == ["a/x.txt", "b", "n"]


# --- properties over random trees ---------------------------------------------------------

NAMES = ("a", "b", "c.txt")
PATHS = ["/".join(parts) for depth in (1, 2, 3) for parts in product(NAMES, repeat=depth)]
LEAVES = st.one_of(
    st.tuples(st.just(FILE), st.integers(0, 3), st.booleans()),
    st.tuples(st.just(SYMLINK), st.sampled_from(["t0", "t1"])),
    st.just((DIR,)),
)
LEAF_MAPS = st.dictionaries(st.sampled_from(PATHS), LEAVES, max_size=8)
EDITS = st.dictionaries(st.sampled_from(PATHS), st.one_of(st.none(), LEAVES), max_size=4)


def make_entry(leaf: tuple, host: str) -> Entry:
    if leaf[0] == FILE:
        return file(f"content {leaf[1]}", host=host, exec=leaf[2])
    if leaf[0] == SYMLINK:
        return link(leaf[1], host=host)
    return folder(host=host)


def build(leaves: dict[str, tuple], host: str) -> dict[str, Entry]:
    """A well-formed tree from leaves; a leaf below a file or symlink is dropped."""
    out: dict[str, Entry] = {}
    for path in sorted(leaves, key=lambda p: (p.count("/"), p)):
        ancestors = [path[:i] for i, ch in enumerate(path) if ch == "/"]
        if any(a in out and out[a].type != DIR for a in ancestors):
            continue
        for a in ancestors:
            out.setdefault(a, folder(host=host))
        out[path] = make_entry(leaves[path], host)
    return out


def edited(leaves: dict[str, tuple], edits: dict[str, tuple | None]) -> dict[str, tuple]:
    out = dict(leaves)
    for path, leaf in edits.items():
        if leaf is None:
            out = {p: v for p, v in out.items() if p != path and not p.startswith(path + "/")}
        else:
            out[path] = leaf
    return out


@st.composite
def three_trees(draw):
    """base, local, remote: the sides are usually edits of base, sometimes unrelated trees."""
    base = draw(LEAF_MAPS)
    sides = [draw(st.one_of(EDITS.map(lambda e: edited(base, e)), LEAF_MAPS)) for _ in range(2)]
    return build(base, "base"), build(sides[0], "laptop"), build(sides[1], "desk")


PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(three_trees())
def test_property_same_tree_on_both_sides_is_the_result(trees):
    base, side, _ = trees
    assert contents_by_path(run(base, side, side).tree) == contents_by_path(side)


@PROPERTY
@given(three_trees())
def test_property_a_side_alone_changed_is_the_result(trees):
    base, local, remote = trees
    assert contents_by_path(run(base, base, remote).tree) == contents_by_path(remote)
    assert contents_by_path(run(base, local, base).tree) == contents_by_path(local)


@PROPERTY
@given(three_trees())
def test_property_no_new_content_is_lost_or_invented(trees):
    base, local, remote = trees
    result = run(base, local, remote).tree
    new = {e.sha256 for t in (local, remote) for e in t.values() if e.type == FILE}
    new -= {e.sha256 for e in base.values() if e.type == FILE}
    assert new <= {e.sha256 for e in result.values() if e.type == FILE}
    assert contents(result) <= contents(local) | contents(remote)


@PROPERTY
@given(three_trees())
def test_property_parents_always_present_and_conflicts_consistent(trees):
    base, local, remote = trees
    result = run(base, local, remote)
    assert_parents_present(result.tree)
    for c in result.conflicts:
        assert c.path in result.tree and c.copy_path in result.tree
        assert all(c.copy_path not in t for t in (base, local, remote))
        assert result.tree[c.copy_path] is local[c.path]


@PROPERTY
@given(three_trees())
def test_property_swapping_sides_keeps_the_same_contents(trees):
    base, local, remote = trees
    assert contents(run(base, local, remote).tree) == contents(run(base, remote, local).tree)
