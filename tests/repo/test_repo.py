"""fogsync.repo.repository on a MemoryStore: head, history, finding roots, loading trees,
and content handed out only once its tag has verified."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone

import pytest

from fogsync.engine.push import write_listings, write_root
from fogsync.errors import FogsyncError, IntegrityError, SwapConflict
from fogsync.format import crypto
from fogsync.format.blocks import BLOCK_SIZE, Bptr
from fogsync.format.tree import DIR, FILE, Entry
from fogsync.repo import repository as repomod
from fogsync.repo.repository import Head, Repo
from fogsync.store.memory import MemoryStore

KEY = bytes(range(32))
KEYS = crypto.ShareKeys.derive(KEY)
T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__("memory://counting")
        self.gets: list[str] = []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return super().get(key)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def repo(store, tmp_path):
    r = Repo(store, KEYS, "share ✈", spool_dir=str(tmp_path))
    yield r
    r.close()


def fresh(repo: Repo) -> Repo:
    """Another handle on the same store (an empty block cache)."""
    return Repo(repo.store, repo.keys, repo.name, spool_dir=repo.spool_dir)


def put_content(repo: Repo, data: bytes, compress: bool = False) -> Entry:
    w = repo.writer()
    pending = w.write(crypto.seal_stream(repo.keys, [data], compress=compress))
    (ref,) = w.resolve([pending])
    repo.wait_uploads()
    return Entry(FILE, 1, "h", len(data), ref, hashlib.sha256(data).hexdigest())


def commit(repo: Repo, tree: dict, previous: dict, prev, tag, now: datetime):
    """Listings, root and head swap; returns (ref, root, final tree, head tag)."""
    w = repo.writer()
    top, final = write_listings(w, tree, previous, "h")
    ref, root = write_root(w, top, prev, "h", now)
    repo.wait_uploads()
    return ref, root, final, repo.swap_head(ref, tag)


def files(prefix: str, n: int) -> dict:
    return {f"{prefix}f{i}.txt": Entry(FILE, i, "h", 0) for i in range(n)}  # empty files: no blobs


# --- head --------------------------------------------------------------------------------------


def test_head_of_a_new_share(repo):
    assert repo.read_head() == Head(None, None)
    assert repo.head_key == f"{KEYS.share_id('share ✈')}/head"


def test_head_swap_and_read(repo, store):
    ref1 = bytes([1]) * 48
    tag1 = repo.swap_head(ref1, None)
    assert repo.read_head() == Head(ref1, tag1)
    assert repo.read_head(unless_tag=tag1) is None  # not modified
    # the head object is a sealed, uncompressed blob of the 48-byte bptr
    raw = store.get(repo.head_key)
    assert raw[24:32] == bytes(8) and crypto.open_blob(KEYS, raw) == ref1

    with pytest.raises(SwapConflict):
        repo.swap_head(bytes([2]) * 48, None)  # the share exists already
    tag2 = repo.swap_head(bytes([2]) * 48, tag1)
    with pytest.raises(SwapConflict):
        repo.swap_head(bytes([3]) * 48, tag1)  # stale tag
    assert repo.read_head() == Head(bytes([2]) * 48, tag2)
    assert repo.read_head(unless_tag=tag1).root == bytes([2]) * 48


def test_head_with_the_wrong_key(repo, store):
    repo.swap_head(bytes(48), None)
    other = Repo(store, crypto.ShareKeys.derive(bytes(32)), "share ✈")
    other_head_key = other.head_key
    store.put(other_head_key, store.get(repo.head_key))  # same object, different key
    with pytest.raises(IntegrityError, match="wrong key"):
        other.read_head()


def test_object_names(repo):
    h = bytes.fromhex("ab" * 32)
    assert repo.block_key(h) == f"{repo.share_id}/blocks/ab/{'ab' * 32}"
    assert len(repo.share_id) == 32


# --- history and find_root --------------------------------------------------------------------------


@pytest.fixture
def three_commits(repo):
    roots, tree, prev, tag = [], {}, None, None
    for i in range(3):
        new = dict(tree)
        new[f"v{i}.txt"] = Entry(FILE, i, "h", 0)
        ref, root, tree, tag = commit(repo, new, tree, prev, tag, T0 + timedelta(hours=i))
        prev = (ref, root)
        roots.append((ref, root))
    return roots


def test_history_newest_first(repo, three_commits):
    head = repo.read_head().root
    got = list(repo.history(head))
    assert [r.version for _, r in got] == [3, 2, 1]
    assert [ref for ref, _ in got] == [ref for ref, _ in reversed(three_commits)]
    assert got[0][1].prev == got[1][0] and got[2][1].prev is None
    assert list(repo.history(None)) == []


def test_find_root_by_prefix(repo, three_commits):
    head = repo.read_head().root
    assert repo.find_root(head) == head
    for ref, _ in three_commits:
        assert repo.find_root(head, prefix=ref.hex()[:12]) == ref
        assert repo.find_root(head, prefix=ref.hex()[:12].upper()) == ref
        assert repo.find_root(head, prefix=ref.hex()) == ref
    with pytest.raises(FogsyncError, match="no root"):
        repo.find_root(head, prefix="not-hex")
    with pytest.raises(FogsyncError, match="3 roots"):
        repo.find_root(head, prefix="")
    with pytest.raises(FogsyncError, match="no commits"):
        repo.find_root(None, prefix="ab")


def test_find_root_ambiguous_prefix(repo, three_commits):
    head = repo.read_head().root
    a, b = sorted(ref.hex() for ref, _ in three_commits)[:2]
    common = os.path.commonprefix([a, b])
    hits = [ref for ref, _ in three_commits if ref.hex().startswith(common)]
    with pytest.raises(FogsyncError, match=f"{len(hits)} roots"):
        repo.find_root(head, prefix=common)


def test_find_root_at_a_time(repo, three_commits):
    head = repo.read_head().root
    (r1, _), (r2, _), (r3, _) = three_commits
    assert repo.find_root(head, at=T0) == r1
    assert repo.find_root(head, at=T0 + timedelta(hours=1)) == r2  # at or before
    assert repo.find_root(head, at=T0 + timedelta(hours=1, minutes=59)) == r2
    assert repo.find_root(head, at=T0 + timedelta(days=9)) == r3
    plus2 = timezone(timedelta(hours=2))
    assert repo.find_root(head, at=(T0 + timedelta(hours=1)).astimezone(plus2)) == r2
    with pytest.raises(FogsyncError, match="no root at or before"):
        repo.find_root(head, at=T0 - timedelta(seconds=1))


# --- load_tree -----------------------------------------------------------------------------------


def test_load_tree_and_pruning_with_known(repo, store):
    tree = {"a": Entry(DIR, 1, "h"), "b": Entry(DIR, 1, "h"), "b/c": Entry(DIR, 1, "h"),
            "e": Entry(DIR, 1, "h"), "top.txt": Entry(FILE, 1, "h", 0)}
    tree |= files("a/", 30) | files("b/c/", 3)
    tree["b/c/data"] = put_content(repo, b"payload")
    ref1, root1, tree1, tag = commit(repo, tree, {}, None, None, T0)

    tree2 = dict(tree1)
    tree2["b/c/data"] = put_content(repo, b"payload 2")
    ref2, root2, tree2, tag = commit(repo, tree2, tree1, (ref1, root1), tag, T0 + timedelta(hours=1))
    assert tree2["a"].bptr == tree1["a"].bptr and tree2["b"].bptr != tree1["b"].bptr

    reads: list[bytes] = []
    r = fresh(repo)
    real = r.read_small
    r.read_small = lambda ref, what: reads.append(ref) or real(ref, what)

    full = r.load_tree(root2.root)
    assert full == tree2
    assert len(reads) == 5  # top, a, b, b/c, e

    reads.clear()
    store.gets.clear()
    pruned = fresh(repo)
    pruned.read_small = lambda ref, what: reads.append(ref) or Repo.read_small(pruned, ref, what)
    assert pruned.load_tree(root2.root, known=tree1) == tree2
    assert sorted(reads) == sorted([root2.root, tree2["b"].bptr, tree2["b/c"].bptr])  # not a, not e
    # Only the blocks of those three listings were fetched from the store.
    assert set(store.gets) == {pruned.block_key(Bptr.unpack(ref).hash) for ref in reads}

    # A known tree whose directory differs is not trusted for it.
    stale = dict(tree1)
    stale["a"] = stale["a"].with_(bptr=bytes(48))
    reads.clear()
    assert pruned.load_tree(root2.root, known=stale) == tree2
    assert tree2["a"].bptr in reads


def test_load_tree_includes_empty_dirs(repo):
    tree = {"empty": Entry(DIR, 1, "h"), "d": Entry(DIR, 1, "h"), "d/empty": Entry(DIR, 1, "h")}
    _, root, final, _ = commit(repo, tree, {}, None, None, T0)
    got = fresh(repo).load_tree(root.root)
    assert set(got) == {"empty", "d", "d/empty"}
    assert got["empty"].size == 2  # "[]"


def test_read_listing_with_the_wrong_key(repo, store):
    _, root, _, _ = commit(repo, {"x": Entry(FILE, 1, "h", 0)}, {}, None, None, T0)
    other = Repo(store, crypto.ShareKeys.derive(bytes(32)), "share ✈")
    for key in list(store.list(repo.share_id + "/")):  # the same objects under the other share id
        store.put(other.share_id + key[len(repo.share_id):], store.get(key))
    with pytest.raises(IntegrityError, match="listing"):
        other.read_listing(root.root)


# --- verified -----------------------------------------------------------------------------------


def read_all(repo: Repo, e: Entry) -> bytes:
    with repo.verified(e.bptr, "/x", size=e.size) as chunks:
        return b"".join(chunks)


@pytest.mark.parametrize("n,compress", [(1, False), (70_000, False), (300_000, True), (BLOCK_SIZE - 64, False)])
def test_verified_round_trip(repo, n, compress):
    data = (b"compressible text " * (n // 18 + 1))[:n] if compress else os.urandom(n)
    e = put_content(repo, data, compress)
    assert read_all(fresh(repo), e) == data


def tamper_last_piece(repo: Repo, ref: bytes) -> None:
    """Flip one byte inside the last piece's range of its block, leaving the block's name as it was."""
    last = repo.pieces(ref)[-1]
    key = repo.block_key(last.hash)
    block = bytearray(repo.store.get(key))
    block[last.end - 1] ^= 0x01
    repo.store.put(key, bytes(block))


@pytest.mark.parametrize("n", [500, 3 * BLOCK_SIZE])
def test_verified_refuses_a_tampered_blob_before_yielding_anything(repo, n):
    e = put_content(repo, os.urandom(n))
    tamper_last_piece(repo, e.bptr)
    entered = []
    with pytest.raises(IntegrityError, match="/x"):
        with fresh(repo).verified(e.bptr, "/x", size=e.size) as chunks:
            entered.append(True)
            for _ in chunks:
                entered.append(True)
    assert entered == []


def _spools_open_in(directory) -> int:
    """How many files this process holds open in ``directory`` (a spool is unlinked, not gone, while open)."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sum(1 for link in links if link.startswith(f"{directory}/"))


def test_big_blobs_are_spooled_and_small_ones_are_not(repo, tmp_path):
    small = put_content(repo, os.urandom(1 << 20))
    data = os.urandom(repomod.IN_MEMORY_LIMIT + 1024 * 1024)
    big = put_content(repo, data)
    assert Bptr.unpack(big.bptr).depth == 1
    no_spool_dir = Repo(repo.store, KEYS, repo.name, spool_dir=str(tmp_path / "missing"))
    assert len(read_all(no_spool_dir, small)) == 1 << 20  # held in memory: the spool dir is never used
    with pytest.raises(FileNotFoundError):
        read_all(no_spool_dir, big)  # spooled, to the spool dir only

    with fresh(repo).verified(big.bptr, "/big", size=big.size) as chunks:
        assert _spools_open_in(tmp_path) == 1
        got = b"".join(chunks)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert _spools_open_in(tmp_path) == 0  # the spool is gone afterwards
    assert os.listdir(tmp_path) == []


def test_spooled_tampered_blob_is_refused_before_yielding(repo, tmp_path):
    e = put_content(repo, os.urandom(repomod.IN_MEMORY_LIMIT + 200_000))
    tamper_last_piece(repo, e.bptr)
    entered = []
    with pytest.raises(IntegrityError):
        with fresh(repo).verified(e.bptr, "/big", size=e.size) as chunks:
            entered.append(chunks)
    assert entered == [] and _spools_open_in(tmp_path) == 0


def test_every_read_catches_a_block_that_does_not_match_its_name(repo):
    e = put_content(repo, os.urandom(100))
    tamper_last_piece(repo, e.bptr)
    with pytest.raises(IntegrityError, match=f"block {repo.pieces(e.bptr)[0].hash.hex()}.*hash does not match"):
        read_all(fresh(repo), e)
    with pytest.raises(IntegrityError, match="hash does not match"):
        b"".join(fresh(repo).streamed(e.bptr, "/x", size=e.size))


def test_sealed_chunks_fetch_each_block_once_and_join_them_in_order(repo, store):
    data = os.urandom(3 * repomod.READ_CHUNK + 12345)
    e = put_content(repo, data)
    reader = fresh(repo)
    pieces = reader.pieces(e.bptr)
    store.gets.clear()
    chunks = list(reader.sealed_chunks(pieces))
    assert b"".join(chunks) == b"".join(reader.store.get(reader.block_key(p.hash))[p.start : p.end] for p in pieces)
    assert all(len(c) >= repomod.READ_CHUNK for c in chunks[:-1])
    assert len(chunks) == 4
    assert sorted(store.gets[: len(pieces)]) == sorted(reader.block_key(p.hash) for p in pieces)
    assert b"".join(reader.streamed(e.bptr, "/x", size=e.size)) == data


def test_streamed_names_a_missing_block_and_stops_fetching(repo, store):
    e = put_content(repo, os.urandom(40 * BLOCK_SIZE))
    pieces = repo.pieces(e.bptr)
    store.delete(repo.block_key(pieces[20].hash))
    with pytest.raises(FogsyncError, match=f"block {pieces[20].hash.hex()}.* is missing"):
        b"".join(fresh(repo).streamed(e.bptr, "/x", size=e.size))


def test_streamed_refuses_a_tampered_many_block_blob_at_the_end(repo):
    e = put_content(repo, os.urandom(3 * repomod.READ_CHUNK))
    tamper_last_piece(repo, e.bptr)
    with pytest.raises(IntegrityError, match="/x"):
        for _ in fresh(repo).streamed(e.bptr, "/x", size=e.size):
            pass


def test_a_partial_block_filled_to_the_last_byte_is_fetched_once(repo, store):
    w = repo.writer()
    a, b = os.urandom(40_000), os.urandom(BLOCK_SIZE - 40_000)  # two tails fill one block exactly
    refs = w.resolve([w.write_bytes(a), w.write_bytes(b)])
    repo.wait_uploads()
    pa, pb = (Bptr.unpack(r) for r in refs)
    assert pa.hash == pb.hash and pb.end == BLOCK_SIZE
    reader = fresh(repo)
    store.gets.clear()
    assert (reader.piece(pa), reader.piece(pb), reader.piece(pa)) == (a, b, a)
    assert store.gets == [reader.block_key(pa.hash)]


@pytest.mark.parametrize("concurrency", [2, 16], ids=["local", "network"])
def test_files_in_block_order_read_each_block_once_and_leave_nothing_cached(repo, store, concurrency):
    w = repo.writer()
    blobs = {f"d{i % 7}/f{i}": os.urandom(1000 + 37 * i) for i in range(150)}  # tails filling several partial blocks
    refs = w.resolve([w.write_bytes(b) for b in blobs.values()])
    repo.wait_uploads()
    tree = {p: Entry(FILE, 0, "h", len(b), ref) for (p, b), ref in zip(blobs.items(), refs)}
    listed = sorted(tree)  # a tree lists files in another order than they were packed in
    blocks = {Bptr.unpack(ref).hash for ref in refs}
    store.read_concurrency = concurrency
    reader = fresh(repo)
    store.gets.clear()

    order = repomod.by_block(tree, listed)
    assert sorted(order) == listed
    assert list(reader.pieces_ahead(Bptr.unpack(tree[p].bptr) for p in order)) == [blobs[p] for p in order]
    assert len(blocks) > 2 and sorted(store.gets) == sorted(reader.block_key(h) for h in blocks)
    reader.piece(Bptr.unpack(tree[order[0]].bptr))
    assert len(store.gets) == len(blocks) + 1  # not kept in the cache


@pytest.mark.parametrize("concurrency", [2, 16], ids=["local", "network"])
def test_pieces_ahead_come_in_order_and_a_shared_block_is_fetched_once(repo, store, concurrency):
    w = repo.writer()
    blobs = [os.urandom(n) for n in (100, 5_000, 40_000, 300, 20_000, 60_000, 7)]  # tails share partial blocks
    bptrs = [Bptr.unpack(r) for r in w.resolve([w.write_bytes(b) for b in blobs])]
    repo.wait_uploads()
    store.read_concurrency = concurrency
    reader = fresh(repo)
    store.gets.clear()
    assert list(reader.pieces_ahead(bptrs)) == blobs
    assert sorted(store.gets) == sorted({reader.block_key(p.hash) for p in bptrs})
    store.delete(reader.block_key(bptrs[-1].hash))
    with pytest.raises(FogsyncError, match="is missing"):
        list(fresh(repo).pieces_ahead(bptrs))
