"""fogsync.format.roots: root JSON, dates and the head's plaintext (FORMAT.md 6-7)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from fogsync.errors import FormatError
from fogsync.format import roots as rootsmod
from fogsync.format.roots import Root, decode_head, format_date, parse_date

P1, P2, P3 = bytes([1]) * 48, bytes([2]) * 48, bytes([3]) * 48
DATE = "2026-11-21T23:34:58.123456Z"


def test_first_root_json():
    r = Root(1, None, DATE, "laptop", P1)
    d = json.loads(r.encode())
    assert d == {"version": 1, "prev": None, "date": DATE, "host": "laptop", "root": P1.hex()}
    assert b" " not in r.encode()
    assert Root.decode(r.encode()) == r


def test_round_trip_with_prev_merged_and_unknown_keys():
    r = Root(7, P2, DATE, "hôst ✈", P1, merged=(P3,), extra=(("restored", "abc"), ("z", [1])))
    d = json.loads(r.encode().decode("utf-8"))
    assert d["prev"] == P2.hex() and d["merged"] == [P3.hex()] and d["restored"] == "abc"
    back = Root.decode(r.encode())
    assert back == r and dict(back.extra) == {"restored": "abc", "z": [1]}
    assert back.encode() == r.encode()


def test_unknown_keys_cannot_override_known_ones():
    r = Root(1, None, DATE, "h", P1, extra=(("version", 99),))
    assert json.loads(r.encode())["version"] == 1


def test_decode_ignores_unknown_keys():
    raw = json.dumps({"version": 2, "prev": P1.hex(), "date": DATE, "host": "h", "root": P2.hex(),
                      "from_the_future": {"x": 1}}).encode()
    r = Root.decode(raw)
    assert (r.version, r.prev, r.root) == (2, P1, P2)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        b"[]",
        b"null",
        b'{"version": 1}',
        json.dumps({"prev": None, "date": DATE, "host": "h", "root": P1.hex()}).encode(),
        json.dumps({"version": 1, "prev": None, "date": DATE, "host": "h"}).encode(),
        json.dumps({"version": "one", "prev": None, "date": DATE, "host": "h", "root": P1.hex()}).encode(),
        json.dumps({"version": 1, "prev": "zz", "date": DATE, "host": "h", "root": P1.hex()}).encode(),
        json.dumps({"version": 1, "prev": None, "date": DATE, "host": "h", "root": P1.hex()[:-2]}).encode(),
        json.dumps({"version": 1, "prev": P1.hex() + "00", "date": DATE, "host": "h", "root": P1.hex()}).encode(),
        json.dumps({"version": 1, "prev": None, "date": DATE, "host": "h", "root": 5}).encode(),
        json.dumps({"version": 1, "prev": None, "date": DATE, "host": "h", "root": P1.hex(),
                    "merged": ["00"]}).encode(),
    ],
)
def test_malformed_roots_are_format_errors(raw):
    with pytest.raises(FormatError):
        Root.decode(raw)


# --- dates -------------------------------------------------------------------------------


def test_format_date_is_rfc3339_utc_with_z_and_microseconds():
    when = datetime(2026, 11, 21, 23, 34, 58, 123456, tzinfo=timezone.utc)
    assert format_date(when) == DATE
    assert format_date(when.replace(microsecond=0)) == "2026-11-21T23:34:58.000000Z"
    plus2 = when.astimezone(timezone(timedelta(hours=2)))
    assert format_date(plus2) == DATE
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", format_date(datetime.now(timezone.utc)))


def test_parse_date():
    when = datetime(2026, 11, 21, 23, 34, 58, 123456, tzinfo=timezone.utc)
    assert parse_date(DATE) == when
    assert parse_date("2026-11-22T01:34:58.123456+02:00") == when
    assert parse_date("2026-11-21T23:34:58") == when.replace(microsecond=0)  # naive: UTC
    assert parse_date(format_date(when)) == when
    assert Root(1, None, DATE, "h", P1).datetime == when


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", "21/11/2026"])
def test_bad_dates(text):
    with pytest.raises(FormatError):
        parse_date(text)


# --- head -------------------------------------------------------------------------------------


def test_decode_head():
    assert decode_head(P1) == P1
    for n in (0, 47, 49, 96):
        with pytest.raises(FormatError):
            decode_head(bytes(n))


# --- FORMAT.md 8: requires, kept, forgot, gc ---------------------------------------------------

def test_section_8_keys_round_trip_and_are_absent_when_unset():
    gc = rootsmod.GcState(3, "marked", DATE, P3)
    r = Root(5, P2, DATE, "h", P1, requires=("gc1",), kept=P2, forgot=P3, gc=gc)
    d = json.loads(r.encode())
    assert d["requires"] == ["gc1"] and d["kept"] == P2.hex() and d["forgot"] == P3.hex()
    assert d["gc"] == {"epoch": 3, "state": "marked", "date": DATE, "candidates": P3.hex()}
    assert Root.decode(r.encode()) == r
    plain = json.loads(Root(1, None, DATE, "h", P1).encode())
    assert not {"requires", "kept", "forgot", "gc"} & plain.keys()


@pytest.mark.parametrize("key,value", [
    ("requires", "gc1"), ("requires", [1]), ("kept", "abcd"), ("forgot", 7),
    ("gc", {"epoch": 0, "state": "marked", "date": DATE, "candidates": None}),
    ("gc", {"epoch": 1, "state": "deleting", "date": DATE, "candidates": None}),
    ("gc", {"epoch": 1, "state": "swept", "date": "yesterday", "candidates": None}),
    ("gc", "swept"),
])
def test_malformed_section_8_keys_are_refused(key, value):
    d = json.loads(Root(1, None, DATE, "h", P1).encode())
    d[key] = value
    with pytest.raises(FormatError):
        Root.decode(json.dumps(d).encode())


def test_a_new_root_copies_requires_and_gc_and_a_merge_takes_the_union_and_the_newer_gc():
    marked = rootsmod.GcState(2, "marked", DATE, P3)
    swept2 = rootsmod.GcState(2, "swept", DATE, None)
    a = Root(4, None, DATE, "h", P1, requires=("gc1", "zz"), gc=marked, kept=P2, forgot=P2)
    assert rootsmod.inherited(a) == {"requires": ("gc1", "zz"), "gc": marked}  # not kept, not forgot
    assert rootsmod.inherited(None) == {}
    b = Root(4, None, DATE, "h", P1, requires=("aa",), gc=swept2)
    assert rootsmod.merged_keys(a, b) == {"requires": ("aa", "gc1", "zz"), "gc": swept2}
    assert rootsmod.newer_gc(rootsmod.GcState(3, "marked", DATE, P3), swept2).epoch == 3
    assert rootsmod.newer_gc(None, marked) == marked and rootsmod.newer_gc(None, None) is None
    assert rootsmod.with_gc1(("zz",)) == ("gc1", "zz")


def test_a_writer_refuses_a_head_requiring_an_unknown_feature_in_one_line():
    rootsmod.check_writable(Root(1, None, DATE, "h", P1, requires=("gc1",)), "share 'docs'")
    rootsmod.check_writable(None, "share 'docs'")
    with pytest.raises(FormatError, match="share 'docs' requires gc9, .*upgrade fogsync") as e:
        rootsmod.check_writable(Root(1, None, DATE, "h", P1, requires=("gc1", "gc9")), "share 'docs'")
    assert "\n" not in str(e.value)


def test_kept_forgot_and_candidates_plaintexts():
    kept = [rootsmod.KeptRoot(P1, 9, DATE, "hôst"), rootsmod.KeptRoot(P2, 3, DATE, "b")]
    assert rootsmod.decode_kept(rootsmod.encode_kept(kept)) == kept
    assert json.loads(rootsmod.encode_kept(kept))[0] == {"ref": P1.hex(), "version": 9, "date": DATE, "host": "hôst"}
    assert rootsmod.decode_bptrs(rootsmod.encode_bptrs([P1, P2])) == [P1, P2]
    hashes = [bytes([9]) * 32, bytes([1]) * 32]
    assert rootsmod.encode_candidates(hashes) == bytes([1]) * 32 + bytes([9]) * 32
    assert rootsmod.decode_candidates(rootsmod.encode_candidates(hashes)) == sorted(hashes)
    for bad in (lambda: rootsmod.decode_kept(b'{"a":1}'), lambda: rootsmod.decode_kept(b'[{"ref":"00"}]'),
                lambda: rootsmod.decode_bptrs(b"x" * 47), lambda: rootsmod.decode_candidates(b"x" * 33)):
        with pytest.raises(FormatError):
            bad()
