"""fogsync.format.roots: root JSON, dates and the head's plaintext (FORMAT.md 6-7)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from fogsync.errors import FormatError
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
