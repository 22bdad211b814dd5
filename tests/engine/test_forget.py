"""The forget commit (fogsync.engine.forget.forget_share): one root on top of the head with the
head's tree, ``kept`` and ``forgot``; the head always kept; dry runs; lost swaps; refusals."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from chain import T0, Chain

from fogsync.engine.forget import Policy, forget_share, parse_duration
from fogsync.engine.prune import prune_share
from fogsync.errors import ConfigError, FormatError, SwapConflict
from fogsync.format import crypto
from fogsync.format.roots import decode_bptrs, decode_kept
from fogsync.repo.repository import Repo
from fogsync.store.faulty import FaultyStore
from fogsync.store.memory import MemoryStore

KEYS = crypto.ShareKeys.derive(bytes(range(32)))
NOW = T0 + timedelta(days=1)


@pytest.fixture
def repo():
    r = Repo(FaultyStore(MemoryStore(f"memory://forget-{os.urandom(4).hex()}")), KEYS, "docs")
    yield r
    r.close()


def forget(repo: Repo, policy: Policy, **kw):
    return forget_share(repo, policy, "forgetter", lambda: NOW, tz=timezone.utc, **kw)


def six_hourly(repo: Repo) -> Chain:
    c = Chain(repo)
    for i in range(6):
        c.commit({f"f{i}.txt": b"%d" % i})
    return c


def test_the_forget_root_keeps_the_heads_tree_and_lists_kept_and_forgotten(repo):
    c = six_hourly(repo)
    head_before = repo.read_head().root
    result = forget(repo, Policy(last=2))
    root = repo.read_root(result.root)
    head = repo.read_root(head_before)
    assert (root.prev, root.version, root.root, root.host) == (head_before, 7, head.root, "forgetter")
    assert root.requires == ("gc1",) and root.gc is None
    kept = decode_kept(repo.read_small(root.kept, "kept"))
    assert [(k.ref, k.version, k.host) for k in kept] == [(c.refs[5], 6, "h"), (c.refs[4], 5, "h")]
    assert kept[0].date == head.date
    assert decode_bptrs(repo.read_small(root.forgot, "forgot")) == c.refs[3::-1]
    assert repo.read_head().root == result.root


def test_the_head_is_kept_whatever_the_policy(repo):
    c = Chain(repo)
    c.commit({"a": b"a"}, when=T0)
    c.commit({"b": b"b"}, when=T0 - timedelta(days=400))  # a host with its clock a year behind
    result = forget(repo, Policy(within=parse_duration("1h")))
    assert [i.ref for i, _ in result.kept] == [c.refs[1], c.refs[0]]
    assert result.kept[0][1] == ("head",)


def test_keep_daily_in_a_time_zone_through_the_commit(repo):
    c = Chain(repo)
    for hour in (0, 1, 23):  # 00:00 and 01:00 UTC are the day before in New York
        c.commit({f"f{hour}": b"x"}, when=T0.replace(hour=hour))
    from zoneinfo import ZoneInfo

    ny = forget_share(repo, Policy(daily=1), "f", lambda: NOW, tz=ZoneInfo("America/New_York"), dry_run=True)
    utc = forget_share(repo, Policy(daily=1), "f", lambda: NOW, tz=timezone.utc, dry_run=True)
    assert len(ny.kept) == 1 and len(utc.kept) == 1
    assert [i.ref for i in ny.forgotten] == [i.ref for i in utc.forgotten] == c.refs[1::-1]


def test_a_dry_run_and_a_policy_that_forgets_nothing_commit_nothing(repo):
    six_hourly(repo)
    head = repo.read_head()
    dry = forget(repo, Policy(last=2), dry_run=True)
    assert dry.root is None and len(dry.forgotten) == 4 and repo.read_head() == head
    keep_all = forget(repo, Policy(last=-1))
    assert keep_all.root is None and keep_all.forgotten == [] and repo.read_head() == head


def test_an_empty_policy_is_refused(repo):
    six_hourly(repo)
    with pytest.raises(ConfigError, match="no retention policy"):
        forget(repo, Policy())


def test_a_second_forget_walks_only_to_the_first_and_copies_gc(repo):
    c = six_hourly(repo)
    forget(repo, Policy(last=4))
    prune_share(repo, "p", lambda: datetime.now(timezone.utc) + timedelta(hours=2), timedelta(0))
    c.commit({"later": b"later"}, when=datetime.now(timezone.utc) + timedelta(hours=3))
    result = forget_share(repo, Policy(last=2), "f", lambda: datetime.now(timezone.utc) + timedelta(hours=4),
                          tz=timezone.utc)
    root = repo.read_root(result.root)
    assert root.gc is not None and (root.gc.epoch, root.gc.state) == (1, "swept")
    assert [i.version for i, _ in result.kept] == [10, 9]  # 7 forget, 8 mark, 9 sweep, 10 commit
    assert 7 in [i.version for i in result.forgotten]  # the first forget root is forgotten too


def test_a_lost_swap_chooses_again_over_the_new_head(repo):
    c = six_hourly(repo)
    rival = Chain(Repo(repo.store.inner, KEYS, "docs"), host="rival")
    rival.refs = list(c.refs)
    rival.tree = dict(c.tree)
    rival.when = c.when

    def commit_first(key: str) -> Exception:
        rival.commit({"rival.txt": b"r"})
        return SwapConflict(f"{key} changed")

    repo.store.fail_on("put_if", commit_first, key_contains="head")
    result = forget(repo, Policy(last=2))
    kept = [i.ref for i, _ in result.kept]
    assert kept == [rival.refs[-1], c.refs[5]]
    assert repo.read_root(result.root).prev == rival.refs[-1]


def test_forget_refuses_a_head_requiring_an_unknown_feature_but_a_dry_run_reads(repo):
    c = six_hourly(repo)
    c.commit({"x": b"x"}, requires=("gc1", "zstd9"))
    with pytest.raises(FormatError, match="requires zstd9.*upgrade"):
        forget(repo, Policy(last=1))
    assert len(forget(repo, Policy(last=1), dry_run=True).forgotten) == 6


def test_a_host_whose_root_two_forgets_dropped_still_descends(repo):
    """A second forget that drops the first names what the first forgot, so "Descent" still holds."""
    c = six_hourly(repo)
    seen = c.refs[1]  # the newest root a host offline since then has seen: v2
    first = forget(repo, Policy(last=2))
    assert seen in decode_bptrs(repo.read_small(repo.read_root(first.root).forgot, "forgot"))
    c.commit({"later": b"later"}, when=NOW + timedelta(hours=1))
    second = forget_share(repo, Policy(last=1), "f", lambda: NOW + timedelta(hours=2), tz=timezone.utc)
    assert 7 in [i.version for i in second.forgotten]  # the first forget root went too
    forgot = decode_bptrs(repo.read_small(repo.read_root(second.root).forgot, "forgot"))
    assert seen in forgot and len(forgot) == len(set(forgot))
    assert repo.descends(repo.read_head().root, seen, 2)
    assert not repo.descends(repo.read_head().root, os.urandom(32) + bytes(16), 2)  # not any root at all
