"""The history of FORMAT.md 8 (fogsync.repo.repository): the chain to the last root with ``kept``,
then the kept list; versions strictly decreasing; ``find_root`` and ``descends`` over it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from chain import T0, Chain

from fogsync.engine.forget import Policy, forget_share
from fogsync.errors import FogsyncError, IntegrityError
from fogsync.format import crypto
from fogsync.format.roots import KeptRoot, Root, encode_kept, format_date
from fogsync.repo.repository import Repo
from fogsync.store.memory import MemoryStore

KEYS = crypto.ShareKeys.derive(bytes(range(32)))


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__("memory://history")
        self.gets = 0

    def get(self, key: str) -> bytes:
        self.gets += 1
        return super().get(key)


@pytest.fixture
def repo(tmp_path):
    r = Repo(CountingStore(), KEYS, "docs", spool_dir=str(tmp_path))
    yield r
    r.close()


def commits(repo: Repo, n: int) -> Chain:
    c = Chain(repo)
    for i in range(n):
        c.commit({f"f{i}.txt": b"x" * i})
    return c


def forget(repo: Repo, policy: Policy, now: datetime | None = None):
    return forget_share(repo, policy, "forgetter", lambda: now or T0 + timedelta(days=1), tz=timezone.utc)


def seal_root(repo: Repo, root: Root) -> bytes:
    w = repo.writer()
    (ref,) = w.resolve([w.write_bytes(crypto.seal(repo.keys, root.encode(), compress=False))])
    repo.wait_uploads()
    return ref


def point_head(repo: Repo, ref: bytes) -> None:
    repo.swap_head(ref, repo.read_head().tag)


def test_without_kept_the_history_is_the_whole_chain(repo):
    c = commits(repo, 4)
    assert [ref for ref, _ in repo.history(c.refs[-1])] == c.refs[::-1]


def test_the_history_stops_at_the_first_kept_and_then_reads_the_kept_list(repo):
    c = commits(repo, 5)
    result = forget(repo, Policy(last=2))
    assert [i.ref for i, _ in result.kept] == [c.refs[4], c.refs[3]]
    assert [i.ref for i in result.forgotten] == c.refs[2::-1]
    after = c.commit({"new.txt": b"new"})
    items = list(repo.history_items(after))
    assert [i.ref for i in items] == [after, result.root, c.refs[4], c.refs[3]]
    assert [i.version for i in items] == [7, 6, 5, 4]
    assert [i.root is None for i in items] == [False, False, True, True]  # kept roots are not read
    assert [r.version for _, r in repo.history(after)] == [7, 6, 5, 4]


def test_the_kept_list_costs_one_read_not_one_per_root(repo):
    c = commits(repo, 30)
    forget(repo, Policy(last=25))
    head = repo.read_head().root
    fresh = Repo(repo.store, KEYS, "docs")
    before = repo.store.gets
    assert len(list(fresh.history_items(head))) == 26
    assert repo.store.gets - before <= 3  # the forget root, its kept list (one block each, or two)
    assert c.refs[-1] in [i.ref for i in fresh.history_items(head)]


def test_a_forged_prev_to_a_newer_root_stops_with_an_error(repo):
    c = commits(repo, 3)
    head_root = repo.read_root(c.refs[-1])
    forged = seal_root(repo, Root(4, c.refs[-1], format_date(T0), "evil", head_root.root))
    looping = seal_root(repo, Root(2, forged, format_date(T0), "evil", head_root.root))  # v2 -> v4
    point_head(repo, looping)
    with pytest.raises(IntegrityError, match="history .* is broken.*version 4 after version 2"):
        list(repo.history(looping))
    for call in (lambda: repo.find_root(looping, prefix="ff"), lambda: repo.find_root(looping, at=T0 - timedelta(days=9))):
        with pytest.raises(IntegrityError):
            call()


def test_equal_versions_are_not_a_decrease(repo):
    c = commits(repo, 2)
    same = seal_root(repo, Root(2, c.refs[-1], format_date(T0), "evil", repo.read_root(c.refs[-1]).root))
    with pytest.raises(IntegrityError, match="version 2 after version 2"):
        list(repo.history_items(same))


def test_a_kept_list_out_of_order_or_lying_about_a_version_is_an_error(repo):
    c = commits(repo, 3)
    top = repo.read_root(c.refs[-1]).root
    w = repo.writer()

    def forget_root(kept: list[KeptRoot]) -> bytes:
        (kref,) = w.resolve([w.write_bytes(crypto.seal(repo.keys, encode_kept(kept), compress=True))])
        return seal_root(repo, Root(4, c.refs[-1], format_date(T0), "f", top, kept=kref))

    r1, r2, r3 = (repo.read_root(r) for r in c.refs)
    k = [KeptRoot(ref, r.version, r.date, r.host) for ref, r in zip(c.refs, (r1, r2, r3))]
    out_of_order = forget_root([k[2], k[0], k[1]])
    with pytest.raises(IntegrityError, match="version 2 after version 1"):
        list(repo.history_items(out_of_order))
    lying = forget_root([KeptRoot(c.refs[2], 3, r3.date, "h"), KeptRoot(c.refs[1], 1, r2.date, "h")])
    assert [i.version for i in repo.history_items(lying)] == [4, 3, 1]
    with pytest.raises(IntegrityError, match="kept list says 1"):
        list(repo.history(lying))


def test_a_prev_naming_a_deleted_root_is_not_followed(repo):
    c = commits(repo, 4)
    forget(repo, Policy(last=2))
    for ref in c.refs[:2]:  # what a sweep would do to the forgotten roots' own blocks
        for p in repo.pieces(ref):
            repo.store.delete(repo.block_key(p.hash))
    head = repo.read_head().root
    assert [i.version for i in repo.history_items(head)] == [5, 4, 3]
    assert [r.version for _, r in repo.history(head)] == [5, 4, 3]


def test_find_root_sees_only_the_history(repo):
    c = commits(repo, 4)
    forget(repo, Policy(last=2))
    head = repo.read_head().root
    assert repo.find_root(head, prefix=c.refs[3].hex()[:10]) == c.refs[3]
    with pytest.raises(FogsyncError, match="no root"):
        repo.find_root(head, prefix=c.refs[0].hex()[:20])
    # at a time between the forgotten roots: none of them, nor anything older, is in the history
    with pytest.raises(FogsyncError, match="no root at or before"):
        repo.find_root(head, at=T0 + timedelta(hours=1, minutes=30))
    assert repo.find_root(head, at=T0 + timedelta(hours=3, minutes=30)) == c.refs[2]


def test_descends_through_the_chain_the_kept_list_and_forgotten_roots(repo):
    c = commits(repo, 5)
    r = [repo.read_root(ref) for ref in c.refs]
    forget(repo, Policy(last=2))
    c.commit({"later.txt": b"later"})
    head = repo.read_head().root
    assert repo.descends(head, c.refs[4], r[4].version)  # a kept root
    assert repo.descends(head, c.refs[3], r[3].version)  # a kept root, from the list
    assert repo.descends(head, c.refs[1], r[1].version)  # forgotten: the forget root names it
    assert repo.descends(head, head, repo.read_root(head).version)
    # a root of another fork, and one newer than the head (the store was rolled back)
    other = seal_root(repo, Root(3, c.refs[1], format_date(T0), "fork", r[2].root))
    assert not repo.descends(head, other, 3)
    newer = seal_root(repo, Root(99, head, format_date(T0), "x", r[2].root))
    assert not repo.descends(head, newer, 99)


def test_descends_stops_reading_once_versions_fall_below(repo):
    c = commits(repo, 20)
    head = repo.read_head().root
    before = repo.store.gets
    assert repo.descends(head, c.refs[17], 18)
    assert repo.store.gets - before <= 4
    assert not repo.descends(head, b"\x00" * 48, 19)


def test_history_of_a_new_share_is_empty(repo):
    assert list(repo.history_items(None)) == [] and list(repo.history(None)) == []
