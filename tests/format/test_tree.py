"""fogsync.format.tree: entries, flat trees and listing JSON (FORMAT.md 5)."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogsync.errors import FormatError
from fogsync.format.tree import (
    DIR,
    FILE,
    SYMLINK,
    Entry,
    check_name,
    children_by_dir,
    decode_listing,
    encode_listing,
    entry_from_json,
    entry_to_json,
    join,
    name_of,
    parent_of,
    subtree,
)

BPTR = bytes(range(48))
SHA = hashlib.sha256(b"x").hexdigest()


def f(size=3, mtime=1_700_000_000_123_456_789, host="h", exec=False) -> Entry:
    return Entry(FILE, mtime, host, size, BPTR if size else None, SHA if size else None, exec)


def good(**over) -> dict:
    d = {"name": "a.txt", "type": "file", "mtime": 5, "host": "h", "size": 3,
         "bptr": BPTR.hex(), "sha256": SHA, "exec": False}
    d.update(over)
    return d


def dump(entries) -> bytes:
    return json.dumps(entries, ensure_ascii=False).encode("utf-8")


# --- paths ---------------------------------------------------------------------------------


def test_path_helpers():
    assert parent_of("a/b/c") == "a/b" and parent_of("a") == ""
    assert name_of("a/b/c") == "c" and name_of("a") == "a"
    assert join("", "a") == "a" and join("a/b", "c") == "a/b/c"
    tree = {"a": Entry(DIR, 1, "h"), "a/x": f(), "a/b": Entry(DIR, 1, "h"), "a/b/y": f(), "ab": f()}
    kids = children_by_dir(tree)
    assert sorted(kids[""]) == ["a", "ab"]
    assert sorted(kids["a"]) == ["a/b", "a/x"]
    assert kids["a/b"] == ["a/b/y"]
    assert sorted(subtree(tree, "a")) == ["a/b", "a/b/y", "a/x"]  # not "ab"


def test_empty_dir_has_its_own_children_list():
    assert children_by_dir({"e": Entry(DIR, 1, "h")}) == {"": ["e"], "e": []}


def test_children_of_only_some_directories():
    tree = {"a": Entry(DIR, 1, "h"), "a/x": f(), "a/b": Entry(DIR, 1, "h"), "a/b/y": f(), "e": Entry(DIR, 1, "h")}
    assert children_by_dir(tree, only={"a/b", "e"}) == {"": [], "a/b": ["a/b/y"], "e": []}
    assert children_by_dir(tree, only={"a/b", "e"})["a/b"] == children_by_dir(tree)["a/b"]


# --- encoding -------------------------------------------------------------------------------


def test_round_trip_every_type():
    entries = [
        ("file.txt", f(exec=True)),
        ("empty", f(size=0)),
        ("sub", Entry(DIR, 2, "h2", 2, BPTR, SHA)),
        ("ln", Entry(SYMLINK, 3, "h3", 9, target="../t/ü")),
    ]
    out = decode_listing(encode_listing(entries))
    assert sorted(out) == sorted(entries)


def test_encoding_is_compact_deterministic_utf8():
    data = encode_listing([("ü", f()), ("b", Entry(SYMLINK, 1, "h", 1, target="x"))])
    assert data == encode_listing([("b", Entry(SYMLINK, 1, "h", 1, target="x")), ("ü", f())])
    text = data.decode("utf-8")
    assert "ü" in text and "\\u" not in text and ", " not in text and ": " not in text
    first = json.loads(text)[0]
    assert list(first) == ["name", "type", "mtime", "host", "size", "target"]


def test_per_type_keys():
    empty_file, full_file = entry_to_json("e", f(size=0)), entry_to_json("f", f())
    assert "bptr" not in empty_file and "sha256" not in empty_file and empty_file["exec"] is False
    assert full_file["bptr"] == BPTR.hex() and full_file["sha256"] == SHA
    d = entry_to_json("d", Entry(DIR, 1, "h", 2, BPTR, SHA))
    assert "exec" not in d and "target" not in d and d["bptr"] == BPTR.hex()
    s = entry_to_json("s", Entry(SYMLINK, 1, "h", 1, target="t"))
    assert s["target"] == "t" and "bptr" not in s and "exec" not in s


def test_sorted_by_code_point_not_utf16():
    names = ["b", "a", "B", "\uff21", "\U0001f600", "é", "a b", "a.b", "_"]
    data = encode_listing((n, f()) for n in names)
    got = [e["name"] for e in json.loads(data)]
    assert got == sorted(names, key=lambda s: [ord(c) for c in s])
    # U+FF21 < U+1F600 by code point, though UTF-16 (D83D...) would put the emoji first.
    assert got.index("\uff21") < got.index("\U0001f600")
    # Code point order is UTF-8 byte order.
    assert got == sorted(names, key=lambda s: s.encode("utf-8"))


def test_unknown_keys_are_kept_through_a_round_trip():
    d = good(future={"nested": [1, 2]}, colour="blue")
    name, e = entry_from_json(d)
    assert dict(e.extra) == {"future": {"nested": [1, 2]}, "colour": "blue"}
    again = json.loads(encode_listing([(name, e)]))[0]
    assert again["future"] == {"nested": [1, 2]} and again["colour"] == "blue"
    # An unknown key never overrides a known one, and does not change equality.
    assert e == entry_from_json(good())[1]


# --- decoding: names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/", "/abs", "a\0b", "\0", "../x"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(FormatError):
        check_name(name)
    with pytest.raises(FormatError):
        decode_listing(dump([good(name=name)]))


@pytest.mark.parametrize("name", ["...", ".hidden", "a\\b", "ü", " space ", "a..b"])
def test_odd_but_safe_names_are_allowed(name):
    assert decode_listing(dump([good(name=name)]))[0][0] == name


@pytest.mark.parametrize("name", [None, 5, ["a"]])
def test_non_string_names_are_refused(name):
    with pytest.raises(FormatError):
        decode_listing(dump([good(name=name)]))


# --- decoding: malformed listings --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"\xff\xfe[]", b"{}", b'"a"', b"[", b"null"],
)
def test_not_a_json_array(raw):
    with pytest.raises(FormatError):
        decode_listing(raw)


def test_empty_listing():
    assert decode_listing(b"[]") == []


def _without(key):
    d = good()
    del d[key]
    return d


@pytest.mark.parametrize(
    "entry",
    [
        _without("name"),
        _without("type"),
        _without("mtime"),
        _without("size"),
        _without("bptr"),
        _without("sha256"),
        good(type="fifo"),
        good(type=None),
        good(mtime="soon"),
        good(size="big"),
        good(size=None),
        good(bptr="zz" * 48),
        good(bptr="00" * 47),
        good(bptr=5),
        good(sha256="00" * 31),
        good(sha256=None),
        {"name": "l", "type": "symlink", "mtime": 1, "host": "h", "size": 1},
        {"name": "l", "type": "symlink", "mtime": 1, "host": "h", "size": 1, "target": 5},
        {"name": "d", "type": "dir", "mtime": 1, "host": "h", "size": 2},
    ],
)
def test_malformed_entries_are_format_errors(entry):
    with pytest.raises(FormatError):
        decode_listing(dump([entry]))


def test_duplicate_names_are_refused():
    with pytest.raises(FormatError):
        decode_listing(dump([good(), good()]))


@pytest.mark.parametrize("item", [5, "a.txt", None, ["a.txt"]])
def test_non_object_entries_are_format_errors(item):
    with pytest.raises(FormatError):
        decode_listing(dump([good(), item]))


def test_file_of_size_0_needs_no_bptr():
    ((_, e),) = decode_listing(dump([{"name": "e", "type": "file", "mtime": 1, "host": "h", "size": 0}]))
    assert e.bptr is None and e.sha256 is None and e.exec is False


def test_upper_case_sha256_is_normalised():
    (_, e), = decode_listing(dump([good(sha256=SHA.upper())]))
    assert e.sha256 == SHA


# --- same_content ------------------------------------------------------------------------------


def test_same_content():
    a = f()
    assert a.same_content(a.with_(mtime=9, host="other", bptr=bytes(48)))
    assert not a.same_content(a.with_(exec=True))
    assert not a.same_content(a.with_(sha256="0" * 64))
    assert not a.same_content(None)
    assert not a.same_content(Entry(DIR, 1, "h"))
    s = Entry(SYMLINK, 1, "h", 1, target="x")
    assert s.same_content(s.with_(mtime=5)) and not s.same_content(s.with_(target="y"))
    assert Entry(DIR, 1, "h").same_content(Entry(DIR, 2, "g", 7, BPTR, SHA))


_texts = st.text(st.characters(codec="utf-8"), max_size=12)  # quotes, backslashes, controls, non-ASCII


@st.composite
def _entries(draw) -> Entry:
    kind = draw(st.sampled_from([FILE, DIR, SYMLINK]))
    size = draw(st.integers(0, 2**40))
    stored = kind != SYMLINK and size > 0
    extra = draw(st.sampled_from([(), (("colour", "blue"),), (("n", [1, 2]), ("z", None))]))
    return Entry(kind, draw(st.integers(0, 2**63)), draw(_texts), size, BPTR if stored else None,
                 draw(st.sampled_from([SHA, '"' * 64])) if stored else None, kind == FILE and draw(st.booleans()),
                 draw(_texts) if kind == SYMLINK else None, extra)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_texts.filter(bool), _entries()), max_size=6, unique_by=lambda ne: ne[0]))
def test_listing_text_is_what_json_dumps_writes(entries):
    as_dicts = [entry_to_json(n, e) for n, e in sorted(entries, key=lambda ne: ne[0])]
    assert encode_listing(entries) == json.dumps(as_dicts, ensure_ascii=False, separators=(",", ":")).encode()
