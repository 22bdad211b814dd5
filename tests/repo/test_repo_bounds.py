"""Reads that a lying listing or a swapping store cannot stretch (issue 22, cases 2 and 10).

A file's content comes out no longer than its entry's size says, and every
block read is checked against its name, so another valid blob's bytes put
in its place are caught at that block.
"""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest
from helpers import KEYS

from fogsync.errors import IntegrityError
from fogsync.format import crypto
from fogsync.format.tree import FILE, Entry
from fogsync.repo.repository import Repo
from fogsync.store.faulty import FaultyStore
from fogsync.store.memory import MemoryStore

MIB = 1 << 20


@pytest.fixture
def repo(tmp_path):
    r = Repo(FaultyStore(MemoryStore()), KEYS, "share", spool_dir=str(tmp_path))
    yield r
    r.close()


def fresh(repo: Repo) -> Repo:
    return Repo(repo.store, repo.keys, repo.name, spool_dir=repo.spool_dir)


def put(repo: Repo, data: bytes, compress: bool = False, declared: int | None = None) -> Entry:
    w = repo.writer()
    (ref,) = w.resolve([w.write(crypto.seal_stream(repo.keys, [data], compress=compress))])
    repo.wait_uploads()
    size = len(data) if declared is None else declared
    return Entry(FILE, 1, "h", size, ref, hashlib.sha256(data[:size]).hexdigest())


def read_each_way(repo: Repo, e: Entry) -> dict[str, int]:
    """How many plaintext bytes each reader handed out before it raised (or finished)."""
    out = {}
    for way in ("streamed", "open_into", "verified"):
        got = [0]
        reader = fresh(repo)
        with pytest.raises(IntegrityError, match=f"/x: content is longer than the {e.size} bytes"):
            if way == "streamed":
                for chunk in reader.streamed(e.bptr, "/x", size=e.size):
                    got[0] += len(chunk)
            elif way == "open_into":
                reader.open_into(e.bptr, "/x", lambda b: got.__setitem__(0, got[0] + len(b)), size=e.size)
            else:
                with reader.verified(e.bptr, "/x", size=e.size) as chunks:
                    for chunk in chunks:
                        got[0] += len(chunk)
        out[way] = got[0]
    return out


def test_a_100_byte_entry_pointing_at_10_mb_is_refused_before_its_blocks_are_read(repo):
    e = put(repo, os.urandom(10 * MIB), declared=100)
    gets = repo.store.calls["get"]
    assert read_each_way(repo, e) == {"streamed": 0, "open_into": 0, "verified": 0}
    assert repo.store.calls["get"] - gets <= 3 * 4  # the block list and the first block, per way: not 160 blocks


def test_a_gzip_bomb_comes_out_no_longer_than_its_entry_declares(repo):
    data = bytes(10 * MIB)
    e = put(repo, data, compress=True, declared=200_000)
    assert len(zlib.compress(data)) < e.size  # the sealed blob is shorter than the lie: only its output tells
    handed_out = read_each_way(repo, e)
    assert all(n <= e.size for n in handed_out.values()), handed_out


def test_content_of_the_declared_size_still_reads_whole(repo):
    for data, compress in ((os.urandom(3 * MIB), False), (b"abc" * 100_000, True), (b"x", False)):
        e = put(repo, data, compress)
        assert b"".join(fresh(repo).streamed(e.bptr, "/x", size=e.size)) == data
        with fresh(repo).verified(e.bptr, "/x", size=e.size) as chunks:
            assert b"".join(chunks) == data
        out = bytearray()
        assert fresh(repo).open_into(e.bptr, "/x", out.extend, size=e.size)[1] == len(data) and out == data


def test_a_block_swapped_for_another_valid_blobs_bytes_is_caught_at_that_block(repo):
    a = put(repo, os.urandom(1000))
    b = put(repo, os.urandom(1000))
    (pa,), (pb,) = repo.pieces(a.bptr), repo.pieces(b.bptr)
    assert (pa.start, pa.end) == (pb.start, pb.end) and pa.hash != pb.hash  # B's bytes would open as a valid blob
    repo.store.put(repo.block_key(pa.hash), repo.store.get(repo.block_key(pb.hash)))
    with pytest.raises(IntegrityError, match=f"block {pa.hash.hex()} .*hash does not match its name"):
        b"".join(fresh(repo).streamed(a.bptr, "/x", size=a.size))
    with pytest.raises(IntegrityError, match=f"block {pa.hash.hex()} "):
        fresh(repo).read_small(a.bptr, "root")
