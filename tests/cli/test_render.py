"""Short IDs and local times (restic's conventions, pinned in CLI.md)."""

from __future__ import annotations

import os
import time

import pytest

from fogsync.cli.render import local_time, short_ids


def test_an_id_shows_8_hex_characters_when_that_is_unique():
    a, b = bytes.fromhex("12345678" + "00" * 44), bytes.fromhex("abcdef01" + "00" * 44)
    assert short_ids([a, b]) == {a: "12345678", b: "abcdef01"}


def test_ids_sharing_8_characters_show_one_more_than_they_share():
    a = bytes.fromhex("1234567890" + "00" * 43)
    b = bytes.fromhex("1234567891" + "00" * 43)
    c = bytes.fromhex("ff" * 48)
    ids = short_ids([a, b, c])
    assert ids == {a: "1234567890", b: "1234567891", c: "ffffffff"}


@pytest.fixture
def tz_tokyo():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_a_root_date_shows_in_local_time(tz_tokyo):
    assert local_time("2026-11-21T23:34:58.123456Z") == "2026-11-22 08:34:58"
