"""Prune (fogsync.engine.prune): mark and sweep per FORMAT.md 8, on memory, a local directory and
S3 (moto over HTTP): what is deleted, what stays (partial blocks shared with live tails, block
lists of depth 2, blocks a commit made live again after the mark), grace, dry runs, a sweep cut
short and finished by the next prune, and lost swaps."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from chain import Chain

from fogsync.engine.check import check_share
from fogsync.engine.forget import Policy, forget_share
from fogsync.engine.prune import blob_blocks, live_blocks, prune_share, stored_blocks
from fogsync.errors import FormatError, StoreError, SwapConflict
from fogsync.format import crypto
from fogsync.format.blocks import BLOCK_SIZE, Bptr, block_hash, pack_bptrs
from fogsync.format.roots import decode_candidates
from fogsync.format.tree import FILE, Entry
from fogsync.repo.repository import Repo
from fogsync.store import open_store
from fogsync.store.faulty import FaultyStore

KEYS = crypto.ShareKeys.derive(bytes(range(32)))


def real_now() -> datetime:
    return datetime.now(timezone.utc)


class Clock:
    """The wall clock moved on by ``after``: blocks written now look as old as a test needs, and
    every root (commits, forgets, marks, sweeps) is dated in the order it was made."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return real_now() + self.offset

    def after(self, hours: float) -> "Clock":
        self.offset += timedelta(hours=hours)
        return self


CLOCK = Clock()


@pytest.fixture(autouse=True)
def clock_at_now():
    CLOCK.offset = timedelta(0)


def later(hours: float) -> Clock:
    return CLOCK.after(hours)


@pytest.fixture(params=["memory", "local", "s3"])
def store_url(request, tmp_path):
    if request.param == "memory":
        return f"memory://prune-{os.urandom(6).hex()}"
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_url")


def open_repo(url: str, faulty: bool = False) -> Repo:
    store = open_store(url)
    return Repo(FaultyStore(store) if faulty else store, KEYS, "docs")


@pytest.fixture
def repo():
    r = open_repo(f"memory://prune-{os.urandom(6).hex()}")
    yield r
    r.close()


def chain_of(repo: Repo, host: str = "h") -> Chain:
    return Chain(repo, host, clock=CLOCK)


def forget_all_but_head(repo: Repo) -> None:
    forget_share(repo, Policy(last=1), "forgetter", later(0), tz=timezone.utc)


def blocks_of(repo: Repo, ref: bytes) -> set[bytes]:
    out: set[bytes] = set()
    blob_blocks(repo, ref, out)
    return out


def entry(repo: Repo, chain: Chain, path: str) -> Entry:
    return repo.load_tree(repo.read_root(repo.read_head().root).root).get(path) or chain.tree[path]


def test_forget_then_prune_deletes_what_only_forgotten_roots_needed(store_url):
    repo = open_repo(store_url)
    c = chain_of(repo)
    c.commit({"big.bin": os.urandom(200_000), "small.txt": b"small", "dir/kept.txt": b"kept" * 5000})
    big = blocks_of(repo, c.tree["big.bin"].bptr)
    c.commit({"big.bin": None, "other.txt": b"other"})
    forget_all_but_head(repo)
    before = stored_blocks(repo)
    result = prune_share(repo, "pruner", later(2), timedelta(0))
    after = stored_blocks(repo)
    gone = before.keys() - after.keys()
    live = live_blocks(repo, repo.read_head().root)
    assert big - live <= gone and len(big - live) >= 3  # its full blocks; its tail shares a live partial block
    assert (result.deleted, result.deleted_bytes) == (len(gone), sum(before[h].size for h in gone))
    assert result.marked == result.deleted and (result.epoch, result.state) == (1, "swept")
    head = repo.read_root(repo.read_head().root)
    assert head.gc.state == "swept" and head.gc.candidates is None and "gc1" in head.requires
    assert check_share(repo).problems == []
    with repo.verified(c.tree["dir/kept.txt"].bptr, "kept", size=c.tree["dir/kept.txt"].size) as chunks:
        assert b"".join(chunks) == b"kept" * 5000
    again = prune_share(repo, "pruner", later(2), timedelta(0))  # only the spent candidates blob is left
    assert (again.marked, again.deleted, again.epoch) == (1, 1, 2)
    repo.close()


def test_grace_spares_young_blocks_and_the_sweep_waits_for_the_mark_to_age(repo):
    c = chain_of(repo)
    c.commit({"a.bin": os.urandom(100_000)})
    c.commit({"a.bin": None})
    forget_all_but_head(repo)
    young = prune_share(repo, "p", later(0))  # default grace 1h: every block was written just now
    assert (young.marked, young.deleted, young.state) == (0, 0, None)
    marked = prune_share(repo, "p", later(2))
    assert marked.marked > 0 and marked.deleted == 0 and marked.state == "marked"
    assert marked.waiting_until is None  # it marked; the next run sweeps once the mark is an hour old
    waiting = prune_share(repo, "p", later(0.5))
    assert waiting.deleted == 0 and waiting.waiting_until is not None
    swept = prune_share(repo, "p", later(0.6))
    assert swept.deleted == marked.marked and swept.state == "swept"
    assert check_share(repo).problems == []


def test_a_partial_block_stays_while_any_tail_in_it_is_live(repo):
    c = chain_of(repo)
    c.commit({"a.txt": b"a" * 300, "b.txt": b"b" * 300})
    a, b = c.tree["a.txt"], c.tree["b.txt"]
    shared = Bptr.unpack(a.bptr).hash
    assert Bptr.unpack(b.bptr).hash == shared  # one partial block holds both tails
    c.commit({"a.txt": None})
    forget_all_but_head(repo)
    prune_share(repo, "p", later(2), timedelta(0))
    assert shared in stored_blocks(repo)
    with repo.verified(b.bptr, "b", size=b.size) as chunks:
        assert b"".join(chunks) == b"b" * 300
    c.commit({"b.txt": None})
    forget_all_but_head(repo)
    prune_share(repo, "p", later(2), timedelta(0))
    assert shared not in stored_blocks(repo)


def deep_blob(repo: Repo, pieces: int = 1500) -> tuple[bytes, set[bytes]]:
    """A reference through block lists of depth 2: 1,500 tiny data blocks need 72,000 bytes of bptrs,
    more than one block, so the depth-1 list is itself listed at depth 2. Not valid content: prune
    reads only the block lists."""
    data_blocks = []
    for i in range(pieces):
        block = f"piece {i}".encode()
        h = block_hash(block)
        repo.store.put(repo.block_key(h), block)
        data_blocks.append(Bptr(h, 0, len(block), 0))
    w = repo.writer()
    listing = crypto.seal(repo.keys, pack_bptrs(data_blocks), compress=False)
    assert len(listing) > BLOCK_SIZE
    (ref,) = w.resolve([w.write_bytes(listing, depth=1)])
    repo.wait_uploads()
    assert Bptr.unpack(ref).depth == 2
    return ref, {p.hash for p in data_blocks}


def test_block_lists_of_depth_2_keep_every_block_they_reach(repo):
    c = chain_of(repo)
    ref, data = deep_blob(repo)
    c.commit({}, raw={"deep.bin": Entry(FILE, 1, "h", 10_000, ref, "00" * 32)})
    everything = blocks_of(repo, ref)
    assert data < everything and len(everything) >= len(data) + 3  # two depth-1 pieces, one depth-2
    assert everything <= live_blocks(repo, repo.read_head().root)
    forget_all_but_head(repo)
    prune_share(repo, "p", later(2), timedelta(0))
    assert everything <= stored_blocks(repo).keys()
    c.commit({"deep.bin": None})
    forget_all_but_head(repo)
    result = prune_share(repo, "p", later(2), timedelta(0))
    assert not everything & stored_blocks(repo).keys() and result.deleted >= len(everything)


def test_a_block_made_live_again_after_the_mark_is_not_swept(repo):
    c = chain_of(repo)
    c.commit({"old.bin": os.urandom(70_000)})
    old = c.tree["old.bin"]
    c.commit({"old.bin": None})
    forget_all_but_head(repo)
    marked = prune_share(repo, "p", later(2))
    candidates = repo.read_root(repo.read_head().root).gc.candidates
    assert marked.state == "marked" and blocks_of(repo, old.bptr) <= set(
        decode_candidates(repo.read_small(candidates, "candidates")))
    c.commit({}, raw={"back.bin": old})  # a commit that refers to the candidate blocks again
    swept = prune_share(repo, "p", later(2))
    assert swept.state == "swept" and blocks_of(repo, old.bptr) <= stored_blocks(repo).keys()
    assert check_share(repo).problems == []


def test_a_sweep_cut_short_is_finished_by_the_next_prune(tmp_path):
    repo = open_repo(str(tmp_path / "store"), faulty=True)
    c = chain_of(repo)
    c.commit({f"f{i}.bin": os.urandom(70_000 + i) for i in range(4)})
    c.commit({f"f{i}.bin": None for i in range(4)})
    forget_all_but_head(repo)
    before = stored_blocks(repo)
    repo.store.fail_on("delete", StoreError("disk went away"), after=2)
    with pytest.raises(StoreError, match="disk went away"):
        prune_share(repo, "p", later(2), timedelta(0))
    assert repo.read_root(repo.read_head().root).gc.state == "marked"
    repo.store.heal()
    finished = prune_share(repo, "p", later(2), timedelta(0))
    assert finished.state == "swept" and finished.deleted > 0
    gone = before.keys() - stored_blocks(repo).keys()
    assert len(gone) == finished.deleted + 2
    assert check_share(repo).problems == []
    repo.close()


def test_dry_run_changes_nothing(repo):
    c = chain_of(repo)
    c.commit({"a.bin": os.urandom(100_000)})
    c.commit({"a.bin": None})
    forget_all_but_head(repo)
    head, before = repo.read_head(), stored_blocks(repo)
    dry = prune_share(repo, "p", later(2), timedelta(0), dry_run=True)
    assert dry.deleted > 0 and dry.deleted == dry.marked and dry.deleted_bytes > 100_000
    assert repo.read_head() == head and stored_blocks(repo) == before
    real = prune_share(repo, "p", later(2), timedelta(0))
    assert (real.deleted, real.deleted_bytes) == (dry.deleted, dry.deleted_bytes)


def test_a_lost_swap_is_retried_on_the_new_head(tmp_path):
    repo = open_repo(str(tmp_path / "store"), faulty=True)
    other = Repo(repo.store.inner, KEYS, "docs")
    c = chain_of(repo)
    c.commit({"a.bin": os.urandom(100_000)})
    c.commit({"a.bin": None})
    forget_all_but_head(repo)
    rival = chain_of(other, host="rival")

    def commit_first(key: str) -> Exception:
        rival.commit({"rival.txt": b"r"})  # another host's commit lands between our read and our swap
        return SwapConflict(f"{key} changed")

    repo.store.fail_on("put_if", commit_first, key_contains="head")
    result = prune_share(repo, "p", later(2), timedelta(0))
    assert result.state == "swept" and result.deleted > 0
    head = repo.read_root(repo.read_head().root)
    assert "rival.txt" in repo.load_tree(head.root)
    assert check_share(repo).problems == []
    repo.close()


def test_prune_refuses_a_head_requiring_an_unknown_feature(repo):
    c = chain_of(repo)
    c.commit({"a.txt": b"a"}, requires=("gc1", "gc9"))
    with pytest.raises(FormatError, match="upgrade"):
        prune_share(repo, "p", later(2), timedelta(0))
    assert prune_share(repo, "p", later(2), timedelta(0), dry_run=True).deleted == 0  # reading is fine


def test_one_listing_of_the_store_for_a_mark_and_sweep_in_one_run(tmp_path):
    repo = open_repo(str(tmp_path / "store"), faulty=True)
    c = chain_of(repo)
    c.commit({"a.bin": os.urandom(100_000)})
    c.commit({"a.bin": None})
    forget_all_but_head(repo)
    result = prune_share(repo, "p", later(2), timedelta(0))
    assert result.state == "swept" and result.deleted > 0
    assert repo.store.calls["list_objects"] == 1 and repo.store.calls["list"] == 0
    repo.close()
