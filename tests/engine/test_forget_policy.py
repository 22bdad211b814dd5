"""The retention policy (fogsync.engine.forget.apply_policy) against restic's known answers, and
what restic's tests do not show: time zones, roots dated in the future, durations."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fogsync.engine.forget import Dated, Duration, Policy, apply_policy, parse_duration
from fogsync.errors import ConfigError

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "restic_policy.json").read_text())
NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def policy_of(d: dict) -> Policy:
    within = parse_duration(d["within"]) if "within" in d else Duration()
    return Policy(**{k: v for k, v in d.items() if k != "within"}, within=within)


def kept_times(items, policy, tz=timezone.utc, now=NOW) -> list[str]:
    return [d.item.when for d in apply_policy(items, policy, now, tz) if d.keep]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"restic{c['restic_case']}-{c['policy']}")
def test_restic_known_answers(case):
    items = [Dated(i.to_bytes(48, "big"), when(t)) for i, t in enumerate(VECTORS["snapshots"])]
    got = kept_times(items, policy_of(case["policy"]))
    assert got == [when(t) for t in case["keep"]]


def test_every_root_gets_one_decision_newest_first():
    items = [Dated(i.to_bytes(48, "big"), when(t)) for i, t in enumerate(VECTORS["snapshots"])]
    decisions = apply_policy(items, Policy(daily=3), NOW, timezone.utc)
    assert len(decisions) == len(items)
    assert [d.item.when for d in decisions] == sorted((d.item.when for d in decisions), reverse=True)
    assert [d.reasons for d in decisions if d.keep] == [("daily",)] * 3


def _roots(*texts: str) -> list[Dated]:
    return [Dated(i.to_bytes(48, "big"), when(t)) for i, t in enumerate(texts)]


def test_days_are_counted_in_the_given_time_zone():
    # 23:30 UTC on the 1st is 00:30 on the 2nd in Berlin (UTC+1 in winter)
    items = _roots("2026-01-02T09:00:00Z", "2026-01-01T23:30:00Z", "2026-01-01T22:30:00Z")
    assert kept_times(items, Policy(daily=2), timezone.utc) == [when("2026-01-02T09:00:00Z"), when("2026-01-01T23:30:00Z")]
    assert kept_times(items, Policy(daily=2), ZoneInfo("Europe/Berlin")) == [
        when("2026-01-02T09:00:00Z"), when("2026-01-01T22:30:00Z")]
    # and in New York (UTC-5) 03:00 UTC on the 2nd is still the 1st
    ny = _roots("2026-01-02T06:00:00Z", "2026-01-02T03:00:00Z", "2026-01-01T12:00:00Z")
    assert kept_times(ny, Policy(daily=2), ZoneInfo("America/New_York")) == [
        when("2026-01-02T06:00:00Z"), when("2026-01-02T03:00:00Z")]
    assert kept_times(ny, Policy(daily=2), timezone.utc) == [when("2026-01-02T06:00:00Z"), when("2026-01-01T12:00:00Z")]


def test_weeks_are_iso_weeks_in_the_zone():
    # Sunday January 4 23:30 UTC is Monday in Tokyo: ISO week 2 there, week 1 in UTC
    items = _roots("2026-01-11T10:00:00Z", "2026-01-04T23:30:00Z", "2026-01-04T10:00:00Z")
    assert kept_times(items, Policy(weekly=2), timezone.utc) == [when("2026-01-11T10:00:00Z"), when("2026-01-04T23:30:00Z")]
    assert kept_times(items, Policy(weekly=2), ZoneInfo("Asia/Tokyo")) == [
        when("2026-01-11T10:00:00Z"), when("2026-01-04T10:00:00Z")]


def test_the_oldest_root_is_kept_while_a_rule_has_counts_left():
    items = _roots("2026-01-02T09:00:00Z", "2026-01-02T08:00:00Z", "2026-01-02T07:00:00Z")
    decisions = apply_policy(items, Policy(daily=5), NOW, timezone.utc)
    assert [d.keep for d in decisions] == [True, False, True]
    assert decisions[2].reasons == ("oldest daily",)


def test_keep_within_counts_back_from_the_newest_root_not_in_the_future():
    items = _roots("2026-12-05T12:00:00Z", "2026-12-04T13:00:00Z", "2026-12-03T11:00:00Z", "2027-06-01T00:00:00Z")
    # the root of 2027 is in the future: 1d back from 2026-12-05 12:00, not from 2027
    assert kept_times(items, Policy(within=parse_duration("1d")), timezone.utc) == [
        when("2027-06-01T00:00:00Z"), when("2026-12-05T12:00:00Z"), when("2026-12-04T13:00:00Z")]
    # keep-last still counts the future root as the newest
    assert kept_times(items, Policy(last=1), timezone.utc) == [when("2027-06-01T00:00:00Z")]


def test_keep_within_when_every_root_is_in_the_future_keeps_them_all():
    items = _roots("2030-01-01T00:00:00Z", "2029-01-01T00:00:00Z")
    assert len(kept_times(items, Policy(within=parse_duration("1h")), timezone.utc)) == 2


def test_keep_within_months_follow_the_calendar_like_go_add_date():
    # 1m back from March 31 is "February 31", which Go normalises to March 3
    items = _roots("2026-03-31T12:00:00Z", "2026-03-03T12:00:01Z", "2026-03-03T11:59:59Z")
    assert kept_times(items, Policy(within=parse_duration("1m")), timezone.utc) == [
        when("2026-03-31T12:00:00Z"), when("2026-03-03T12:00:01Z")]


def test_keep_within_days_are_wall_clock_days_in_the_zone():
    # across the spring change in Berlin (March 29, 2026) a day back is 23 hours: 13:00 UTC on the 28th
    items = _roots("2026-03-29T12:00:00Z", "2026-03-28T12:30:00Z")
    assert len(kept_times(items, Policy(within=parse_duration("1d")), ZoneInfo("Europe/Berlin"))) == 1
    assert len(kept_times(items, Policy(within=parse_duration("1d")), timezone.utc)) == 2


@pytest.mark.parametrize("text,expected", [
    ("2d3h", Duration(days=2, hours=3)), ("1y2m3d4h", Duration(1, 2, 3, 4)), ("36h", Duration(hours=36)),
    ("1m14d", Duration(months=1, days=14)), (" 7d ", Duration(days=7)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "d", "2x", "2d2d", "1.5d", "-1d", "2d 3h", "1s"])
def test_parse_duration_refuses(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_empty_policy():
    assert Policy().empty() and not Policy(last=-1).empty() and not Policy(within=Duration(hours=1)).empty()
