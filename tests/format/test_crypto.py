"""Keys and sealed blobs: vectors, round trips, tampering, header checks, gzip."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import threading
import zlib
from pathlib import Path

import pytest

from fogsync.errors import ConfigError, FormatError, IntegrityError
from fogsync.format import cipher, crypto, layout
from fogsync.format.crypto import ShareKeys

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "blobs.json").read_text(encoding="utf-8"))
KEY = bytes.fromhex(VECTORS["share_key"])
KEYS = ShareKeys.derive(KEY)
NONCE = bytes(range(0x40, 0x40 + 24))
AUTH = "authentication failed (wrong key or tampered data)"


def _plaintext(vector: dict) -> bytes:
    if "plaintext" in vector:
        return bytes.fromhex(vector["plaintext"])
    spec = vector["plaintext_spec"]
    assert spec["pattern"] == "(i * 31 + 7) mod 256"
    return bytes((i * 31 + 7) & 0xFF for i in range(spec["length"]))


def _chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _retag(keys: ShareKeys, blob: bytes | bytearray) -> bytes:
    """The blob with a valid tag recomputed over whatever its other bytes are."""
    body = bytes(blob[: -crypto.TAG_LEN])
    return body + hmac.new(keys.mac, body, "sha256").digest()


def _with_header_byte(blob: bytes, index: int, value: int) -> bytes:
    patched = bytearray(blob)
    patched[crypto.NONCE_LEN + index] = value
    return _retag(KEYS, patched)


def _open_streaming(keys: ShareKeys, blob: bytes, size: int = 1000) -> bytes:
    compression = crypto.verify_blob(keys, _chunked(blob, size))
    assert compression == blob[crypto.NONCE_LEN + 3]
    return b"".join(crypto.decrypt_blob(keys, _chunked(blob, size)))


# --------------------------------------------------------------------------
# Keys


def _hkdf_by_hand(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(b"", ikm, "sha256").digest()  # RFC 5869 with an empty salt
    return hmac.new(prk, info + b"\x01", "sha256").digest()


def test_derive_matches_vectors_and_rfc5869_by_hand():
    assert KEYS.cipher.hex() == VECTORS["cipher_key"]
    assert KEYS.mac.hex() == VECTORS["mac_key"]
    assert KEYS.cipher == _hkdf_by_hand(KEY, b"fogsync mk3 cipher")
    assert KEYS.mac == _hkdf_by_hand(KEY, b"fogsync mk3 mac")
    assert KEYS.cipher != KEYS.mac


HKDF_CASES = json.loads((Path(__file__).parents[1] / "vectors" / "hkdf_sha256.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", HKDF_CASES, ids=["rfc5869-1", "rfc5869-2", "rfc5869-3"])
def test_hkdf_matches_rfc5869_and_the_cryptography_package(case):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    ikm, salt, info = (bytes.fromhex(case[k]) for k in ("ikm", "salt", "info"))
    ours = crypto.hkdf_sha256(ikm, info, case["length"], salt)
    theirs = HKDF(algorithm=hashes.SHA256(), length=case["length"], salt=salt or None, info=info).derive(ikm)
    assert ours.hex() == case["okm"]
    assert ours == theirs


@pytest.mark.parametrize("length", [0, 255 * 32 + 1])
def test_hkdf_refuses_lengths_rfc5869_does_not_define(length):
    with pytest.raises(ValueError):
        crypto.hkdf_sha256(b"k", b"", length)


def test_the_engine_does_not_load_the_cryptography_package():
    """It costs every process 7 MB and 11 ms, for one KDF the standard library does in two HMACs."""
    import subprocess
    import sys

    code = "import sys, fogsync.cli.main, fogsync.engine.sync, fogsync.daemon.service; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_share_id_vector():
    name = VECTORS["share_name"]
    assert KEYS.share_id(name) == VECTORS["share_id"]
    by_hand = hmac.new(KEYS.mac, b"share-id:" + name.encode(), "sha256").hexdigest()[:32]
    assert KEYS.share_id(name) == by_hand
    assert len(KEYS.share_id("")) == 32
    assert KEYS.share_id("a") != KEYS.share_id("b")
    with pytest.raises(ConfigError):
        KEYS.share_id("bad \udc80 surrogate")


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "00" * 32])
def test_derive_refuses_wrong_key_length(bad):
    with pytest.raises(ConfigError):
        ShareKeys.derive(bad)


def test_repr_never_shows_key_bytes():
    for text in (repr(KEYS), str(KEYS), f"{KEYS}", repr([KEYS])):
        assert KEYS.cipher.hex() not in text and KEYS.mac.hex() not in text
        assert repr(KEYS.cipher) not in text and repr(KEYS.mac)[2:20] not in text


def test_keys_are_values():
    assert ShareKeys.derive(KEY) == KEYS
    assert hash(ShareKeys.derive(KEY)) == hash(KEYS)
    with pytest.raises(ValueError):
        ShareKeys(cipher=bytes(16), mac=bytes(32))


@pytest.mark.parametrize(
    "text",
    [
        VECTORS["share_key"],
        VECTORS["share_key"].upper(),
        "  " + VECTORS["share_key"] + "\n",
        "\t" + VECTORS["share_key"],
    ],
)
def test_parse_key_accepts(text):
    assert crypto.parse_key(text) == KEY


SECRETISH = "deadbeef" * 8


@pytest.mark.parametrize(
    "text",
    [
        "",
        SECRETISH[:-1],
        SECRETISH + "0",
        SECRETISH[:-1] + "g",
        SECRETISH[:30] + " " + SECRETISH[31:],
        "0x" + SECRETISH[2:],
        SECRETISH[:40] + "\u0661" * 24,
    ],
)
def test_parse_key_refuses_without_echoing(text):
    with pytest.raises(ConfigError) as caught:
        crypto.parse_key(text)
    message = str(caught.value)
    assert message == "key must be 64 hex characters (32 bytes)"
    assert "deadbeef" not in message


# --------------------------------------------------------------------------
# Vectors


@pytest.mark.parametrize("vector", VECTORS["blobs"], ids=lambda v: f"{v['label']}-c{v['compression']}")
def test_blob_vectors(vector):
    plaintext = _plaintext(vector)
    sealed = bytes.fromhex(vector["sealed"])
    assert hashlib.sha256(plaintext).hexdigest() == vector["plaintext_sha256"]
    assert sealed[crypto.NONCE_LEN + 3] == vector["compression"]
    assert crypto.open_blob(KEYS, sealed) == plaintext
    assert _open_streaming(KEYS, sealed, 777) == plaintext
    if vector["compression"] == crypto.COMP_NONE:
        nonce = bytes.fromhex(vector["nonce"])
        assert crypto.seal(KEYS, plaintext, compress=False, nonce=nonce) == sealed
        assert b"".join(crypto.seal_stream(KEYS, _chunked(plaintext, 4096), compress=False, nonce=nonce)) == sealed


@pytest.mark.skipif(cipher.PYTHON not in cipher.available_backends(), reason="python backend missing")
def test_python_backend_seals_the_same_bytes(monkeypatch):
    vector = next(v for v in VECTORS["blobs"] if v["label"] == "short text" and v["compression"] == 0)
    monkeypatch.setenv(cipher.ENV_BACKEND, cipher.PYTHON)
    cipher.default_backend.cache_clear()
    try:
        sealed = crypto.seal(KEYS, _plaintext(vector), compress=False, nonce=bytes.fromhex(vector["nonce"]))
        assert sealed.hex() == vector["sealed"]
        assert crypto.open_blob(KEYS, sealed) == _plaintext(vector)
    finally:
        monkeypatch.delenv(cipher.ENV_BACKEND)
        cipher.default_backend.cache_clear()


# --------------------------------------------------------------------------
# Round trips


SIZES = [0, 1, 31, 32, 33, 4096, 1 << 20, 3 * (1 << 20) + 5]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_seal_open_round_trip(size, compress):
    plaintext = (os.urandom(size // 2) + b"fogsync " * (size // 16))[:size].ljust(size, b"z")
    blob = crypto.seal(KEYS, plaintext, compress=compress)
    assert blob[crypto.NONCE_LEN : crypto.PREFIX_LEN] == bytes([0, 0, 0, int(compress), 0, 0, 0, 0])
    if not compress:
        assert len(blob) == size + crypto.PREFIX_LEN + crypto.TAG_LEN
    assert crypto.open_blob(KEYS, blob) == plaintext
    assert _open_streaming(KEYS, blob, 65536) == plaintext
    if size < 5000:
        assert _open_streaming(KEYS, blob, 7) == plaintext


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("size", [0, 1, 100, 1 << 20, 5 * (1 << 20) + 3])
def test_stream_equals_one_shot_with_fixed_nonce(size, compress):
    plaintext = (b"abcdefgh" * (size // 8 + 1))[:size]
    one_shot = crypto.seal(KEYS, plaintext, compress=compress, nonce=NONCE)
    for chunk in (1 << 20, 65536, 1000):
        pieces = list(crypto.seal_stream(KEYS, _chunked(plaintext, chunk), compress=compress, nonce=NONCE))
        streamed = b"".join(pieces)
        assert pieces[0] == NONCE + one_shot[crypto.NONCE_LEN : crypto.PREFIX_LEN]
        assert len(pieces[-1]) == crypto.TAG_LEN
        assert crypto.open_blob(KEYS, streamed) == plaintext
        if not compress:
            assert streamed == one_shot


def test_seal_stream_takes_any_buffers_and_empty_chunks():
    parts = [b"", bytearray(b"abc"), memoryview(b"defg"), b"", b"h" * 70000, b""]
    plaintext = b"".join(bytes(p) for p in parts)
    blob = b"".join(crypto.seal_stream(KEYS, iter(parts), compress=False, nonce=NONCE))
    assert blob == crypto.seal(KEYS, plaintext, compress=False, nonce=NONCE)


def test_nonce_is_fresh_and_checked():
    assert crypto.seal(KEYS, b"x", compress=False) != crypto.seal(KEYS, b"x", compress=False)
    with pytest.raises(ValueError):
        crypto.seal(KEYS, b"x", compress=False, nonce=bytes(16))
    with pytest.raises(ValueError):
        list(crypto.seal_stream(KEYS, [b"x"], compress=False, nonce=bytes(25)))


def test_concurrent_seals_in_threads():
    data = {i: os.urandom(300_000 + i) for i in range(6)}
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        ok = True
        for _ in range(4):
            blob = b"".join(crypto.seal_stream(KEYS, _chunked(data[i], 1 << 18), compress=False))
            ok &= crypto.open_blob(KEYS, blob) == data[i]
        results[i] = ok

    threads = [threading.Thread(target=work, args=(i,)) for i in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: True for i in data}


# --------------------------------------------------------------------------
# Tampering and damage


def _flip_positions(length: int) -> dict[str, list[int]]:
    return {
        "nonce": [0, 15, 16, 23],
        "header": [24, 25, 26, 27, 28, 31],
        "ciphertext": [32, length // 2, length - 33],
        "tag": [length - 32, length - 1],
    }


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("region", ["nonce", "header", "ciphertext", "tag"])
def test_any_flipped_byte_fails_authentication(region, compress):
    blob = crypto.seal(KEYS, b"the quick brown fox " * 50, compress=compress, nonce=NONCE)
    for position in _flip_positions(len(blob))[region]:
        for bit in (0x01, 0x80):
            damaged = bytearray(blob)
            damaged[position] ^= bit
            with pytest.raises(IntegrityError, match="authentication failed") as caught:
                crypto.open_blob(KEYS, bytes(damaged))
            assert type(caught.value) is IntegrityError
            with pytest.raises(IntegrityError, match="authentication failed"):
                crypto.verify_blob(KEYS, _chunked(bytes(damaged), 100))


def test_big_blob_tampering_is_caught_on_the_overlapped_path():
    blob = bytearray(crypto.seal(KEYS, os.urandom(3 << 20), compress=False))
    blob[len(blob) // 2] ^= 0x04
    with pytest.raises(IntegrityError, match="authentication failed"):
        crypto.open_blob(KEYS, bytes(blob))
    with pytest.raises(IntegrityError, match="authentication failed"):
        crypto.verify_blob(KEYS, _chunked(bytes(blob), 1 << 20))


def test_wrong_key_fails_authentication():
    blob = crypto.seal(KEYS, b"secret", compress=False)
    other = ShareKeys.derive(bytes(32))
    with pytest.raises(IntegrityError, match=AUTH.replace("(", r"\(").replace(")", r"\)")):
        crypto.open_blob(other, blob)
    with pytest.raises(IntegrityError):
        crypto.verify_blob(other, [blob])


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 63])
def test_blob_too_short(length):
    blob = crypto.seal(KEYS, b"", compress=False)[:length]
    with pytest.raises(IntegrityError, match="too short") as caught:
        crypto.open_blob(KEYS, blob)
    assert type(caught.value) is IntegrityError
    with pytest.raises(IntegrityError, match="too short"):
        crypto.verify_blob(KEYS, _chunked(blob, 5))
    with pytest.raises(IntegrityError, match="too short"):
        list(crypto.decrypt_blob(KEYS, _chunked(blob, 5)))


@pytest.mark.parametrize("cut", [1, 31, 32, 33, 100])
def test_truncated_blob_fails_authentication(cut):
    blob = crypto.seal(KEYS, b"0123456789" * 20, compress=False)
    with pytest.raises(IntegrityError):
        crypto.open_blob(KEYS, blob[:-cut])
    with pytest.raises(IntegrityError):
        crypto.verify_blob(KEYS, [blob[:-cut]])
    with pytest.raises(IntegrityError):
        crypto.open_blob(KEYS, blob + b"\x00")


def test_empty_blob_of_64_bytes_is_valid():
    blob = crypto.seal(KEYS, b"", compress=False, nonce=NONCE)
    assert len(blob) == crypto.MIN_BLOB_LEN
    assert crypto.open_blob(KEYS, blob) == b""
    assert crypto.verify_blob(KEYS, [blob]) == 0
    assert list(crypto.decrypt_blob(KEYS, [blob])) == []


# --------------------------------------------------------------------------
# Header values


BAD_HEADERS = [(0, 1, "mode"), (0, 255, "mode"), (1, 1, "cipher"), (2, 1, "mac"), (3, 2, "compression")] + [
    (index, 1, "reserved") for index in range(4, 8)
]


@pytest.mark.parametrize("index,value,name", BAD_HEADERS)
def test_unknown_header_value_is_a_format_error(index, value, name):
    blob = _with_header_byte(crypto.seal(KEYS, b"payload", compress=False, nonce=NONCE), index, value)
    for attempt in (
        lambda: crypto.open_blob(KEYS, blob),
        lambda: crypto.verify_blob(KEYS, _chunked(blob, 10)),
        lambda: list(crypto.decrypt_blob(KEYS, _chunked(blob, 10))),
    ):
        with pytest.raises(FormatError) as caught:
            attempt()
        message = str(caught.value)
        assert name in message and f"header byte {index}" in message and f"is {value}" in message


# --------------------------------------------------------------------------
# Gzip


def _sealed_body(body: bytes, compression: int) -> bytes:
    """A valid blob whose (already compressed) body is ``body``, with the given compression byte."""
    blob = crypto.seal(KEYS, body, compress=False, nonce=NONCE)
    return _with_header_byte(blob, 3, compression)


def test_multi_member_gzip_is_accepted():
    parts = [b"first member\n" * 100, b"", b"second member, stdlib zlib\n" * 50, os.urandom(3000)]
    body = gzip.compress(parts[0]) + gzip.compress(parts[1]) + zlib.compress(parts[2], 6, 31) + layout.gzip_bytes(parts[3])
    blob = _sealed_body(body, crypto.COMP_GZIP)
    assert crypto.open_blob(KEYS, blob) == b"".join(parts)
    for size in (1, 17, 4096):
        assert _open_streaming(KEYS, blob, size) == b"".join(parts)


@pytest.mark.parametrize(
    "body,why",
    [
        (b"this is not gzip at all", "garbage"),
        (gzip.compress(b"x" * 1000)[:-5], "truncated"),
        (gzip.compress(b"ok") + b"\x00\x01junk", "trailing junk"),
        (b"", "no member"),
    ],
)
def test_corrupt_gzip_in_a_verified_blob_is_a_format_error(body, why):
    blob = _sealed_body(body, crypto.COMP_GZIP)
    assert crypto.verify_blob(KEYS, [blob]) == crypto.COMP_GZIP
    with pytest.raises(FormatError, match="gzip"):
        crypto.open_blob(KEYS, blob)
    with pytest.raises(FormatError, match="gzip"):
        list(crypto.decrypt_blob(KEYS, _chunked(blob, 100)))


def test_decompression_is_streamed_in_bounded_pieces():
    plaintext = bytes(24 << 20)
    blob = crypto.seal(KEYS, plaintext, compress=True)
    assert len(blob) < 1 << 20
    pieces = list(crypto.decrypt_blob(KEYS, [blob]))
    assert max(len(p) for p in pieces) <= layout.OUT_MAX
    assert b"".join(pieces) == plaintext


def test_gzip_output_is_standard_gzip():
    text = b"listing json " * 1000
    compressor = crypto.gzip_compressor()
    data = compressor.compress(text) + compressor.flush()
    assert gzip.decompress(data) == text
    blob = crypto.seal(KEYS, text, compress=True)
    stream = cipher.twofish_ctr(KEYS.cipher, int.from_bytes(blob[:16], "big"))
    assert gzip.decompress(stream.xor(blob[crypto.PREFIX_LEN : -crypto.TAG_LEN])) == text


def test_probe_compressible():
    assert crypto.probe_compressible(b'{"name": "a", "type": "file"}, ' * 200)
    assert not crypto.probe_compressible(os.urandom(65536))
    assert not crypto.probe_compressible(b"")
    assert crypto.probe_compressible(bytes(1 << 20))


# --- open_stream: decrypt and authenticate in one pass ----------------------------


def _pieces(blob: bytes, size: int) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("piece", [1, 7, 33, 65536])
def test_open_stream_gives_the_plaintext(compress, piece):
    plain = os.urandom(50_000) + b"text " * 20_000
    blob = crypto.seal(KEYS, plain, compress=compress)
    assert b"".join(crypto.open_stream(KEYS, _pieces(blob, piece))) == plain


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("where", [0, 24, 40, -40, -1])
def test_open_stream_raises_at_the_end_for_any_flipped_byte(compress, where):
    blob = bytearray(crypto.seal(KEYS, b"text " * 20_000, compress=compress))
    blob[where] ^= 0x40
    with pytest.raises(IntegrityError, match="authentication failed"):
        for _ in crypto.open_stream(KEYS, _pieces(bytes(blob), 4096)):
            pass


def test_open_stream_refuses_a_truncated_blob():
    blob = crypto.seal(KEYS, b"x" * 1000, compress=False)
    with pytest.raises(IntegrityError):
        list(crypto.open_stream(KEYS, [blob[:50]]))


def test_seal_small_gzips_only_what_shrinks():
    text, noise = b"hello " * 500, os.urandom(3000)
    assert crypto.open_blob(KEYS, crypto.seal_small(KEYS, text, try_gzip=True)) == text
    assert crypto.seal_small(KEYS, text, try_gzip=True)[27] == crypto.COMP_GZIP
    assert crypto.seal_small(KEYS, noise, try_gzip=True)[27] == crypto.COMP_NONE
    assert crypto.seal_small(KEYS, text, try_gzip=False)[27] == crypto.COMP_NONE
    assert crypto.open_blob(KEYS, crypto.seal_small(KEYS, b"", try_gzip=True)) == b""
