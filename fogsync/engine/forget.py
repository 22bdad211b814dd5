"""Forget: choose the roots a retention policy keeps (restic's rules), and commit the choice.

``apply_policy`` is pure: restic's ``ApplyPolicy`` (internal/data/snapshot_policy.go)
for ``--keep-last/hourly/daily/weekly/monthly/yearly N`` and ``--keep-within``,
over roots instead of snapshots. Periods are counted in a time zone given
(the machine's local one by default); ``-1`` means no limit; the newest root
not dated in the future is what ``--keep-within`` counts back from; the
oldest root is kept while a rule still has counts left. The head is always
kept, whatever the policy says.

``forget_share`` commits the choice as FORMAT.md 8 says: one root with the
head's tree on top of the head, whose ``kept`` lists the roots kept and
``forgot`` the ones forgotten; a lost swap reads the new head and chooses
again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Callable, Sequence

from fogsync.engine.history import commit_meta, seal_small
from fogsync.errors import ConfigError, FogsyncError, SwapConflict
from fogsync.format.roots import (
    KeptRoot,
    check_writable,
    encode_bptrs,
    encode_kept,
    parse_date,
)
from fogsync.repo.repository import HistoryItem, Repo

MAX_ATTEMPTS = 8
UNLIMITED = -1
# A forget names, besides the roots it forgets, those that the forget roots it forgets had named,
# so a host whose newest root went two forgets ago still finds it ("Descent"); the newest this many.
CARRIED_MAX = 50_000


@dataclass(frozen=True)
class Duration:
    """restic's duration: years, months, days and hours, as ``2d3h`` or ``1y2m``."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __bool__(self) -> bool:
        return any((self.years, self.months, self.days, self.hours))

    def __str__(self) -> str:
        parts = [(self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h")]
        return "".join(f"{n}{u}" for n, u in parts if n) or "0h"


_DURATION_PART = re.compile(r"(\d+)([ymdh])")


def parse_duration(text: str) -> Duration:
    """``2d3h``, ``1y2m``, ``36h``: units y, m (months), d, h, each at most once."""
    s = text.strip()
    values: dict[str, int] = {}
    pos = 0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos or m.group(2) in values:
            break
        values[m.group(2)] = int(m.group(1))
        pos = m.end()
    if not s or pos != len(s):
        raise ConfigError(f"{text!r} is not a duration like 2d3h (units y, m, d, h)")
    return Duration(values.get("y", 0), values.get("m", 0), values.get("d", 0), values.get("h", 0))


@dataclass(frozen=True)
class Policy:
    """Which roots to keep; counts of 0 are off, -1 keeps every one of that kind."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration = field(default_factory=Duration)

    def empty(self) -> bool:
        return not any((self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly, self.within))

    def describe(self) -> str:
        parts = [f"keep-{f.name} {getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name)]
        return ", ".join(parts) or "empty"


COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class Dated:
    """What the policy needs of a root: an id and its date."""

    ref: bytes
    when: datetime


@dataclass(frozen=True)
class Decision:
    item: Dated
    keep: bool
    reasons: tuple[str, ...]


def _bucket(rule: str, when: datetime, nr: int) -> object:
    if rule == "last":
        return nr
    if rule == "hourly":
        return (when.year, when.month, when.day, when.hour)
    if rule == "daily":
        return (when.year, when.month, when.day)
    if rule == "weekly":
        return when.isocalendar()[:2]
    if rule == "monthly":
        return (when.year, when.month)
    return when.year


def apply_policy(
    items: Sequence[Dated], policy: Policy, now: datetime, tz: tzinfo | None = None,
) -> list[Decision]:
    """restic's rules over ``items`` (any order): a decision for each, newest date first.

    ``tz`` is the zone periods are counted in (None: this machine's local
    zone); ``now`` only tells which roots are dated in the future.
    """
    ordered = sorted(items, key=lambda d: d.when, reverse=True)  # stable: equal dates keep their order
    local = [d.when.astimezone(tz) if tz is not None else d.when.astimezone() for d in ordered]
    counts = {rule: getattr(policy, rule) for rule in COUNT_RULES}
    last_bucket: dict[str, object] = {}
    within_since = _within_since(local, policy.within, now) if policy.within else None
    decisions = []
    for nr, (item, when) in enumerate(zip(ordered, local)):
        reasons = []
        if within_since is not None and when > within_since:
            reasons.append(f"within {policy.within}")
        oldest = nr == len(ordered) - 1
        for rule in COUNT_RULES:
            if counts[rule] == 0:
                continue
            value = _bucket(rule, when, nr)
            if value != last_bucket.get(rule, _NONE) or oldest:
                reasons.append(f"{'oldest ' if value == last_bucket.get(rule, _NONE) else ''}{rule}")
                last_bucket[rule] = value
                if counts[rule] > 0:
                    counts[rule] -= 1
        decisions.append(Decision(item, bool(reasons), tuple(reasons)))
    return decisions


_NONE = object()


def _within_since(local: list[datetime], within: Duration, now: datetime) -> datetime | None:
    """The instant ``--keep-within`` keeps roots after: the newest root not in the future, less the
    duration (years, months and days on the wall clock, as Go's AddDate; hours as elapsed time).
    None when every root is in the future: then it keeps them all, as restic does."""
    past = [w for w in local if w < now]
    if not past:
        return datetime.min.replace(tzinfo=timezone.utc)
    latest = max(past)
    months = latest.year * 12 + (latest.month - 1) - within.years * 12 - within.months
    year, month = divmod(months, 12)
    try:
        day = date(year, month + 1, 1) + timedelta(days=latest.day - 1 - within.days)
    except (ValueError, OverflowError):
        return datetime.min.replace(tzinfo=timezone.utc)
    wall = datetime.combine(day, latest.timetz()).replace(tzinfo=latest.tzinfo)
    return wall.astimezone(timezone.utc) - timedelta(hours=within.hours)


# --- the forget commit ------------------------------------------------------------------


@dataclass
class ForgetResult:
    kept: list[tuple[HistoryItem, tuple[str, ...]]]
    forgotten: list[HistoryItem]
    root: bytes | None = None  # the forget root, once swapped in (None: dry run, or nothing to forget)


def choose(items: list[HistoryItem], policy: Policy, now: datetime, tz: tzinfo | None = None) -> ForgetResult:
    """Which roots of the history (newest first, the head first) the policy keeps; the head always."""
    by_ref = {item.ref: item for item in items}
    dated = [Dated(item.ref, parse_date(item.date)) for item in items]
    reasons = {d.item.ref: d.reasons for d in apply_policy(dated, policy, now, tz) if d.keep}
    if items:
        reasons.setdefault(items[0].ref, ("head",))
    kept = [(by_ref[d.ref], reasons[d.ref]) for d in dated if d.ref in reasons]
    forgotten = [by_ref[d.ref] for d in dated if d.ref not in reasons]
    return ForgetResult(kept, forgotten)


def forgot_list(repo: Repo, forgotten: Sequence[HistoryItem]) -> list[bytes]:
    """The roots a forget names in ``forgot``: those it forgets, newest first, then what the forget
    roots among them had forgotten, carried on; a root named twice is named once."""
    out = [i.ref for i in forgotten]
    seen = set(out)
    for item in forgotten:
        for ref in repo.forgotten(item.ref, item.root or repo.read_root(item.ref)):
            if ref not in seen and len(out) < CARRIED_MAX:
                seen.add(ref)
                out.append(ref)
    return out


def forget_share(
    repo: Repo, policy: Policy, host: str, now: Callable[[], datetime],
    tz: tzinfo | None = None, dry_run: bool = False, before_swap: Callable[[bytes], None] = lambda ref: None,
) -> ForgetResult:
    """Apply ``policy`` to the share's history and commit what it forgets (FORMAT.md 8).

    ``before_swap(ref)`` is told of the forget root before the head names it
    (the host records it as its own, so a pass does not take it for a namesake's).
    """
    if policy.empty():
        raise ConfigError("no retention policy: give at least one --keep option, or set retention in the config")
    for _ in range(MAX_ATTEMPTS):
        head = repo.read_head()
        head_ref = repo.find_root(head.root)
        head_root = repo.read_root(head_ref)
        result = choose(list(repo.history_items(head_ref)), policy, now(), tz)
        if dry_run or not result.forgotten:
            return result
        check_writable(head_root, f"share {repo.name!r}")
        writer = repo.writer()
        kept = [KeptRoot(i.ref, i.version, i.date, i.host) for i, _ in result.kept]
        kept_ref = seal_small(repo, writer, encode_kept(kept), compress=True)
        forgot_ref = seal_small(repo, writer, encode_bptrs(forgot_list(repo, result.forgotten)), compress=True)
        ref, _ = commit_meta(repo, writer, head_ref, head_root, host, now(), kept=kept_ref, forgot=forgot_ref)
        repo.wait_uploads()
        before_swap(ref)
        try:
            repo.swap_head(ref, head.tag)
        except SwapConflict:
            continue  # another host committed: choose again over the history as it is now
        result.root = ref
        return result
    raise FogsyncError(f"share {repo.name!r}: other hosts kept committing; forget not done (try again)")
