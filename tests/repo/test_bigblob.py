"""fogsync.repo.bigblob: a big blob a chunk per thread gives exactly the bytes of the one-stream path."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from fogsync.errors import FormatError, IntegrityError
from fogsync.format import crypto
from fogsync.format.blocks import BLOCK_SIZE, BlobWriter, Bptr, iter_blob, read_pieces
from fogsync.repo import bigblob

KEYS = crypto.ShareKeys.derive(bytes(range(32)))
NONCE = bytes(range(100, 124))
MIB = bigblob.CHUNK

# Around every edge: the tag alone in the last chunk, the tag cut across two
# chunks, the ciphertext ending exactly on a chunk or a block.
SIZES = [
    bigblob.MIN_SIZE, bigblob.MIN_SIZE + 1, 3 * MIB - 32, 3 * MIB - 33, 3 * MIB - 31,
    3 * MIB - 64, 3 * MIB - 65, 3 * MIB - 48, 2 * MIB + BLOCK_SIZE - 32, 5 * MIB + 12345,
]


class Blocks(dict):
    def put(self, h: bytes, data: bytes) -> None:
        self[h] = data


def seal_with_bigblob(tmp_path, data: bytes) -> tuple[str, bytes]:
    path = tmp_path / "f"
    path.write_bytes(data)
    blocks = Blocks()
    writer = BlobWriter(KEYS, blocks.put)
    fd = os.open(path, os.O_RDONLY)
    try:
        sha, pending = bigblob.seal_file(KEYS, fd, len(data), writer, nonce=NONCE)
    finally:
        os.close(fd)
    (ref,) = writer.resolve([pending])
    pieces = read_pieces(KEYS, Bptr.unpack(ref), blocks.__getitem__)
    assert all(p.length == BLOCK_SIZE for p in pieces[:-1])
    return sha, b"".join(iter_blob(pieces, blocks.__getitem__))


def chunks(blob: bytes, size: int = MIB, writable: bool = False):
    """The blob in pieces: bytes, or fresh bytearrays as the repository hands them out."""
    kind = bytearray if writable else bytes
    return iter([kind(blob[i : i + size]) for i in range(0, len(blob), size)])


def open_to_bytes(blob: bytes, pieces=None, writable: bool = False) -> tuple[bytes, str, int]:
    out = bytearray()
    sha, n = bigblob.open_into(KEYS, pieces or chunks(blob, writable=writable), len(blob), out.extend)
    return bytes(out), sha, n


@pytest.mark.parametrize("size", SIZES)
def test_seal_file_gives_the_bytes_of_seal_stream(tmp_path, size):
    data = os.urandom(size)
    sha, sealed = seal_with_bigblob(tmp_path, data)
    assert sealed == b"".join(crypto.seal_stream(KEYS, [data], compress=False, nonce=NONCE))
    assert sha == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("writable", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_open_into_gives_back_the_plaintext(size, writable):
    data = os.urandom(size)
    blob = crypto.seal(KEYS, data, compress=False)
    plain, sha, n = open_to_bytes(blob, writable=writable)
    assert plain == data and n == size and sha == hashlib.sha256(data).hexdigest()


def test_pieces_of_bytes_are_left_as_they_were():
    blob = crypto.seal(KEYS, os.urandom(3 * MIB), compress=False)
    pieces = list(chunks(blob))
    open_to_bytes(blob, iter(pieces))
    assert b"".join(pieces) == blob  # a cached block is shared: decrypted in a copy, never in place


def test_a_gzipped_blob_is_opened_in_order():
    data = b"a line that gzip shrinks\n" * 200_000
    blob = crypto.seal(KEYS, data, compress=True)
    plain, sha, n = open_to_bytes(blob)
    assert plain == data and sha == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("writable", [False, True])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("where", [0, 24, 27, 5000, MIB - 1, MIB, -33, -32, -1])
def test_any_flipped_byte_fails_authentication(compress, where, writable):
    data = os.urandom(3 * MIB) if not compress else os.urandom(3 * MIB // 2).hex().encode()  # gzips to ~60%
    blob = bytearray(crypto.seal(KEYS, data, compress=compress))
    blob[where] ^= 0x10
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_to_bytes(bytes(blob), writable=writable)


def test_the_wrong_key_fails_authentication():
    blob = crypto.seal(crypto.ShareKeys.derive(bytes(32)), os.urandom(3 * MIB), compress=False)
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_to_bytes(blob)


def test_pieces_that_are_not_whole_chunks_are_a_format_error():
    blob = crypto.seal(KEYS, os.urandom(3 * MIB), compress=False)
    odd = iter([blob[:MIB], blob[MIB : 2 * MIB - 16], blob[2 * MIB - 16 :]])
    with pytest.raises(FormatError, match="not whole blocks"):
        open_to_bytes(blob, odd)


def test_a_short_stream_is_a_format_error():
    blob = crypto.seal(KEYS, os.urandom(3 * MIB), compress=False)
    with pytest.raises(FormatError, match="not the"):
        bigblob.open_into(KEYS, chunks(blob[: 2 * MIB]), len(blob), lambda data: None)


def test_a_file_that_shrinks_while_it_is_read_is_a_short_read(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * MIB))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(bigblob.ShortRead):
            bigblob.seal_file(KEYS, fd, 4 * MIB, BlobWriter(KEYS, Blocks().put))
    finally:
        os.close(fd)


def test_a_failing_write_stops_the_blob_with_no_job_left_running(monkeypatch):
    blob = crypto.seal(KEYS, os.urandom(8 * MIB), compress=False)
    running = []
    lock = threading.Lock()
    real = bigblob.xor_at

    def slow_xor(*args):
        with lock:
            running.append(1)
        real(*args)
        with lock:
            running.pop()

    def write(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bigblob, "xor_at", slow_xor)
    free_before = bigblob._chunk_slots()._value
    with pytest.raises(OSError, match="No space"):
        bigblob.open_into(KEYS, chunks(blob), len(blob), write)
    assert running == []  # no worker is still decrypting once open_into has returned
    assert bigblob._chunk_slots()._value == free_before


def test_store_blocks_refuses_a_partial_block():
    with pytest.raises(ValueError, match="whole"):
        BlobWriter(KEYS, Blocks().put).store_blocks(bytes(BLOCK_SIZE + 1))


def test_many_blobs_at_once_share_the_chunk_slots_and_all_finish():
    blobs = [crypto.seal(KEYS, os.urandom(6 * MIB), compress=False) for _ in range(6)]
    slots = bigblob._chunk_slots()
    free_before = slots._value
    results, errors = {}, []

    def one(i: int) -> None:
        try:
            results[i] = open_to_bytes(blobs[i])[1]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len(results) == len(blobs)
    assert slots._value == free_before  # every slot given back
