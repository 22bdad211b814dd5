"""fogsync.format.blocks: bptrs, cutting sealed blobs into 64 KiB blocks, shared
partial blocks for tails, block lists of depth 1 and 2 (FORMAT.md 3-4)."""

from __future__ import annotations

import hashlib
import os
import struct
import threading

import pytest

from fogsync.errors import FormatError
from fogsync.format import crypto
from fogsync.format.blocks import (
    BLOCK_SIZE,
    BPTR_LEN,
    BlobWriter,
    Bptr,
    Pending,
    block_hash,
    iter_blob,
    pack_bptrs,
    read_pieces,
    unpack_bptrs,
)

KEYS = crypto.ShareKeys.derive(bytes(range(32)))


class Blocks(dict):
    """An in-memory block store: put_block / get_block, with every block checked on the way in."""

    def put(self, h: bytes, data: bytes) -> None:
        assert hashlib.sha256(data).digest() == h
        assert 0 < len(data) <= BLOCK_SIZE
        self[h] = data

    def get_block(self, h: bytes) -> bytes:
        return self[h]


@pytest.fixture
def blocks() -> Blocks:
    return Blocks()


@pytest.fixture
def writer(blocks: Blocks) -> BlobWriter:
    return BlobWriter(KEYS, blocks.put)


def reassemble(ref: bytes, blocks: Blocks) -> bytes:
    pieces = read_pieces(KEYS, Bptr.unpack(ref), blocks.get_block)
    return b"".join(iter_blob(pieces, blocks.get_block))


# --- Bptr ---------------------------------------------------------------------------


def test_bptr_pack_layout_and_round_trip():
    h = bytes(range(32))
    b = Bptr(h, 10, 65536, 3)
    raw = b.pack()
    assert len(raw) == BPTR_LEN == 48
    assert raw == h + struct.pack(">IIII", 10, 65536, 3, 0)
    assert Bptr.unpack(raw) == b
    assert str(b) == raw.hex() and len(str(b)) == 96
    assert b.length == 65526


@pytest.mark.parametrize("start,end", [(0, 1), (0, 65536), (65535, 65536), (100, 200)])
def test_bptr_accepts_ranges_inside_a_block(start, end):
    raw = bytes(32) + struct.pack(">IIII", start, end, 0, 0)
    assert Bptr.unpack(raw) == Bptr(bytes(32), start, end, 0)


@pytest.mark.parametrize("start,end", [(0, 0), (5, 5), (6, 5), (0, 65537), (65536, 65536), (70000, 70001)])
def test_bptr_refuses_ranges_outside_a_block(start, end):
    raw = bytes(32) + struct.pack(">IIII", start, end, 0, 0)
    with pytest.raises(FormatError):
        Bptr.unpack(raw)


@pytest.mark.parametrize("n", [0, 47, 49, 96])
def test_bptr_refuses_wrong_length(n):
    with pytest.raises(FormatError):
        Bptr.unpack(bytes(n))


def test_bptr_refuses_nonzero_reserved_field():
    raw = bytes(32) + struct.pack(">IIII", 0, 10, 0, 1)
    with pytest.raises(FormatError):
        Bptr.unpack(raw)


def test_pack_unpack_bptrs():
    bs = [Bptr(bytes([i]) * 32, i, i + 1, 1) for i in range(5)]
    assert unpack_bptrs(pack_bptrs(bs)) == bs
    assert unpack_bptrs(b"") == []
    with pytest.raises(FormatError):
        unpack_bptrs(pack_bptrs(bs) + b"x")


# --- cutting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,full,tail",
    [(1, 0, 1), (65535, 0, 65535), (65536, 1, 0), (65537, 1, 1), (3 * 65536, 3, 0), (3 * 65536 + 7, 3, 7)],
)
def test_write_cuts_at_exact_65536_boundaries(writer, blocks, n, full, tail):
    data = os.urandom(n)
    pending = writer.write_bytes(data)
    assert pending.length == n
    assert len(pending.full) == full
    assert (pending.tail is None) == (tail == 0)
    writer.flush()
    pieces = pending.pieces()
    for i, b in enumerate(pieces[:full]):
        assert (b.start, b.end, b.depth) == (0, BLOCK_SIZE, 0)
        assert blocks[b.hash] == data[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]
    assert len(pieces) == full + (1 if tail else 0)
    if tail:
        assert pieces[-1].length == tail
    assert b"".join(iter_blob(pieces, blocks.get_block)) == data


def test_cut_points_do_not_depend_on_chunking(writer, blocks):
    data = os.urandom(3 * BLOCK_SIZE + 12345)
    sizes = [1, 65535, 3, 70000, 100, 65536 * 2]
    chunks, at = [], 0
    for s in sizes:
        chunks.append(data[at : at + s])
        at += s
    chunks.append(data[at:])
    p1 = writer.write(iter(chunks))
    p2 = writer.write_bytes(data)
    writer.flush()
    assert p1.pieces()[:-1] == p2.pieces()[:-1]  # same full blocks, same hashes
    assert b"".join(iter_blob(p1.pieces(), blocks.get_block)) == data


def test_tails_are_packed_first_fit_into_shared_partial_blocks(writer, blocks):
    a, b, c, d = (os.urandom(n) for n in (40000, 30000, 20000, 5000))
    pa, pb, pc, pd = (writer.write_bytes(x) for x in (a, b, c, d))
    assert not blocks  # nothing closed yet: tails wait in open partial blocks
    with pytest.raises(RuntimeError):
        pa.pieces()
    writer.flush()
    (ra,), (rb,), (rc,), (rd,) = pa.pieces(), pb.pieces(), pc.pieces(), pd.pieces()
    # a opens block 1; b does not fit beside it and opens block 2; c fits block 1 after a;
    # d fits block 1 after c (first fit, not best fit).
    assert (ra.start, ra.end) == (0, 40000)
    assert (rb.start, rb.end) == (0, 30000)
    assert ra.hash == rc.hash == rd.hash != rb.hash
    assert (rc.start, rc.end) == (40000, 60000)
    assert (rd.start, rd.end) == (60000, 65000)
    assert len(blocks) == 2
    assert blocks[ra.hash] == a + c + d
    for ref, data in ((ra, a), (rb, b), (rc, c), (rd, d)):
        assert b"".join(iter_blob([ref], blocks.get_block)) == data


def test_nearly_full_partial_block_is_closed_at_once(writer, blocks):
    p = writer.write_bytes(os.urandom(65300))  # leaves < 256 bytes free
    (ref,) = p.pieces()  # its hash is known before any flush
    assert len(blocks) == 1
    assert (ref.start, ref.end) == (0, 65300)


def test_too_many_open_partial_blocks_closes_the_fullest(blocks):
    w = BlobWriter(KEYS, blocks.put, max_open=2)
    sizes = [40000, 40001, 40002]
    pendings = [w.write_bytes(os.urandom(n)) for n in sizes]
    closed = pendings[-1].pieces()  # the third is the fullest (40002 bytes), so it is closed
    assert closed[0].end == 40002
    assert w.blocks_written == 1
    w.flush()
    assert w.blocks_written == 3
    assert w.bytes_written == sum(sizes)


def test_many_small_blobs_share_few_blocks(writer, blocks):
    datas = [os.urandom(n) for n in range(100, 1100, 5)]  # 200 blobs, ~120 KB
    pendings = [writer.write_bytes(d) for d in datas]
    refs = writer.resolve(pendings)
    assert len(blocks) <= 3
    for ref, d in zip(refs, datas):
        b = Bptr.unpack(ref)
        assert b.depth == 0
        assert blocks[b.hash][b.start : b.end] == d


def test_concurrent_writers(blocks):
    w = BlobWriter(KEYS, blocks.put)
    results: dict[int, tuple[bytes, Pending]] = {}

    def work(k: int) -> None:
        for i in range(20):
            d = os.urandom(1 + (k * 7919 + i * 104729) % 150000)
            results[k * 100 + i] = (d, w.write_bytes(d))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = list(results.values())
    refs = w.resolve([p for _, p in items])
    for (d, _), ref in zip(items, refs):
        assert reassemble(ref, blocks) == d


# --- resolve and block lists ------------------------------------------------------------------


def test_resolve_single_piece_is_its_own_bptr(writer, blocks):
    sealed = crypto.seal(KEYS, b"hello", compress=False)
    (ref,) = writer.resolve([writer.write_bytes(sealed)])
    b = Bptr.unpack(ref)
    assert b.depth == 0 and b.length == len(sealed)
    assert crypto.open_blob(KEYS, reassemble(ref, blocks)) == b"hello"


def test_resolve_exactly_one_block_is_depth_0(writer, blocks):
    sealed = crypto.seal(KEYS, os.urandom(BLOCK_SIZE - 64), compress=False)
    assert len(sealed) == BLOCK_SIZE
    (ref,) = writer.resolve([writer.write_bytes(sealed)])
    assert Bptr.unpack(ref) == Bptr(block_hash(sealed), 0, BLOCK_SIZE, 0)


def test_resolve_several_pieces_makes_a_depth_1_block_list(writer, blocks):
    plain = os.urandom(5 * BLOCK_SIZE + 999)
    sealed = crypto.seal(KEYS, plain, compress=False)
    pending = writer.write_bytes(sealed)
    (ref,) = writer.resolve([pending])
    b = Bptr.unpack(ref)
    assert b.depth == 1
    # The block list is a sealed, uncompressed blob of the pieces' bptrs.
    listing = crypto.open_blob(KEYS, b"".join(iter_blob([b], blocks.get_block)))
    assert listing == pack_bptrs(pending.pieces())
    assert b"".join(iter_blob([b], blocks.get_block))[24:32] == bytes(8)
    pieces = read_pieces(KEYS, b, blocks.get_block)
    assert pieces == pending.pieces() and all(p.depth == 0 for p in pieces)
    assert crypto.open_blob(KEYS, reassemble(ref, blocks)) == plain


def _fake_full(n: int) -> list[Bptr]:
    return [Bptr(hashlib.sha256(i.to_bytes(4, "big")).digest(), 0, BLOCK_SIZE, 0) for i in range(n)]


def test_1364_pieces_fit_one_list_block_exactly(writer, blocks):
    # 1364 * 48 + 64 = 65536: the depth-1 list is one full block.
    full = _fake_full(1364)
    (ref,) = writer.resolve([Pending(0, full, None, 0, 1364 * BLOCK_SIZE)])
    b = Bptr.unpack(ref)
    assert (b.start, b.end, b.depth) == (0, BLOCK_SIZE, 1)
    assert read_pieces(KEYS, b, blocks.get_block) == full


@pytest.mark.parametrize("n", [1365, 1366, 3000])
def test_more_than_1364_pieces_need_a_depth_2_block_list(writer, blocks, n):
    full = _fake_full(n)  # the data blocks themselves are never fetched by read_pieces
    (ref,) = writer.resolve([Pending(0, full, None, 0, n * BLOCK_SIZE)])
    b = Bptr.unpack(ref)
    assert b.depth == 2
    level1 = unpack_bptrs(crypto.open_blob(KEYS, b"".join(iter_blob([b], blocks.get_block))))
    assert len(level1) == -(-(n * 48 + 64) // BLOCK_SIZE)
    assert all(p.depth == 1 for p in level1)
    assert read_pieces(KEYS, b, blocks.get_block) == full


def test_resolve_many_at_once_in_order(writer, blocks):
    plains = [os.urandom(n) for n in (10, 70000, 5, 200000, 65536 - 64)]
    pendings = [writer.write_bytes(crypto.seal(KEYS, p, compress=False)) for p in plains]
    refs = writer.resolve(pendings)
    assert [Bptr.unpack(r).depth for r in refs] == [0, 1, 0, 1, 0]
    for ref, p in zip(refs, plains):
        assert crypto.open_blob(KEYS, reassemble(ref, blocks)) == p


# --- reading errors -------------------------------------------------------------------------


def test_iter_blob_refuses_a_block_shorter_than_its_bptr(blocks):
    blocks.put(block_hash(b"short"), b"short")
    with pytest.raises(FormatError):
        list(iter_blob([Bptr(block_hash(b"short"), 0, 10)], blocks.get_block))


def test_read_pieces_refuses_wrong_depths_in_a_list(writer, blocks):
    bad = [Bptr(bytes(32), 0, 10, 0), Bptr(bytes(32), 0, 10, 1)]  # depth 0 and 1 mixed
    sealed = crypto.seal(KEYS, pack_bptrs(bad), compress=False)
    (ref,) = writer.resolve([writer.write_bytes(sealed, depth=1)])
    with pytest.raises(FormatError):
        read_pieces(KEYS, Bptr.unpack(ref), blocks.get_block)


def test_read_pieces_refuses_an_empty_block_list(writer, blocks):
    sealed = crypto.seal(KEYS, b"", compress=False)
    (ref,) = writer.resolve([writer.write_bytes(sealed, depth=1)])
    with pytest.raises(FormatError):
        read_pieces(KEYS, Bptr.unpack(ref), blocks.get_block)
