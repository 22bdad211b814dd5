"""Twofish-CTR backends: known answers, CTR vectors, and gcrypt == python byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fogsync.errors import FogsyncError
from fogsync.format import cipher, cipher_gcrypt
from fogsync.platform import gcrypt_hwf

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "twofish.json").read_text())
BACKENDS = cipher.available_backends()
HAVE_GCRYPT = cipher.GCRYPT in BACKENDS
needs_gcrypt = pytest.mark.skipif(not HAVE_GCRYPT, reason="libgcrypt (Debian: libgcrypt20) is not installed")
needs_both = pytest.mark.skipif(
    BACKENDS != [cipher.GCRYPT, cipher.PYTHON], reason=f"needs both cipher backends, have {BACKENDS}"
)

WRAP = (1 << 128) - 3
LENGTHS = [0, 1, 15, 16, 17, 1000, 70000]


@pytest.fixture(autouse=True)
def _fresh_default_backend():
    cipher.default_backend.cache_clear()
    yield
    cipher.default_backend.cache_clear()


def _by_hand(key: bytes, counter0: int, data: bytes, backend: str) -> bytes:
    """CTR built from single-block encryptions, per FORMAT.md section 2."""
    blocks = -(-len(data) // 16)
    stream = b"".join(
        cipher.encrypt_block(key, ((counter0 + i) % (1 << 128)).to_bytes(16, "big"), backend) for i in range(blocks)
    )
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def _supports(backend: str, key: bytes) -> bool:
    return backend == cipher.PYTHON or len(key) in (16, 32)


def test_python_backend_always_loads():
    assert cipher.PYTHON in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_format_md_known_answers(backend):
    assert cipher.encrypt_block(bytes(32), bytes(16), backend).hex() == "57ff739d4dc92c1bd7fc01700cc8216f"
    assert cipher.encrypt_block(bytes(16), bytes(16), backend).hex() == "9f589f5cf6122c32b6bfec2f2ae8c35a"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vector", VECTORS["ecb"], ids=lambda v: f"{v['key_bits']}-{v['key'][:8]}")
def test_ecb_vectors(backend, vector):
    key = bytes.fromhex(vector["key"])
    if not _supports(backend, key):
        with pytest.raises(FogsyncError, match="16- or 32-byte"):
            cipher.encrypt_block(key, bytes(16), backend)
        return
    block = cipher.encrypt_block(key, bytes.fromhex(vector["plaintext"]), backend)
    assert block.hex() == vector["ciphertext"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vector", VECTORS["ctr"], ids=lambda v: f"{v['counter0'][:6]}-{len(v['plaintext']) // 2}")
def test_ctr_vectors(backend, vector):
    key = bytes.fromhex(vector["key"])
    stream = cipher.twofish_ctr(key, int(vector["counter0"], 16), backend)
    assert stream.xor(bytes.fromhex(vector["plaintext"])).hex() == vector["ciphertext"]
    stream.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("counter0", [0, 0x00FF_FFFF_FFFF_FFFF_FFFF_FFFF_FFFF_FFFE, WRAP, (1 << 128) - 1])
def test_ctr_equals_blockwise_definition_and_wraps(backend, counter0):
    key = bytes(range(32))
    data = bytes(range(256)) * 3
    stream = cipher.twofish_ctr(key, counter0, backend)
    assert stream.xor(data) == _by_hand(key, counter0, data, cipher.PYTHON)
    stream.close()


@needs_both
@pytest.mark.parametrize("key_len", [16, 32])
@pytest.mark.parametrize("length", LENGTHS)
def test_gcrypt_matches_python_one_call(key_len, length):
    rng = random.Random(f"one-call {key_len} {length}")
    for counter0 in (rng.getrandbits(128), WRAP, 0):
        key = rng.randbytes(key_len)
        data = rng.randbytes(length)
        fast = cipher.twofish_ctr(key, counter0, cipher.GCRYPT)
        slow = cipher.twofish_ctr(key, counter0, cipher.PYTHON)
        assert fast.xor(data) == slow.xor(data)
        fast.close()
        slow.close()


@needs_both
@pytest.mark.parametrize("length", LENGTHS)
def test_gcrypt_matches_python_across_split_calls(length):
    rng = random.Random(f"split {length}")
    data = rng.randbytes(length)
    for trial in range(6):
        key = rng.randbytes(32)
        counter0 = WRAP if trial % 2 else rng.getrandbits(128)
        cuts = sorted(rng.randrange(length + 1) for _ in range(rng.randrange(1, 5)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, length], strict=True)]
        fast = cipher.twofish_ctr(key, counter0, cipher.GCRYPT)
        slow = cipher.twofish_ctr(key, counter0, cipher.PYTHON)
        whole = cipher.twofish_ctr(key, counter0, cipher.PYTHON).xor(data)
        assert b"".join(fast.xor(p) for p in pieces) == whole
        assert b"".join(slow.xor(p) for p in pieces) == whole
        fast.close()
        slow.close()


@needs_gcrypt
def test_gcrypt_counter_wraps_at_2_128_like_the_spec():
    key = bytes(range(32))
    stream = cipher.twofish_ctr(key, WRAP, cipher.GCRYPT)
    keystream = stream.xor(bytes(6 * 16))
    stream.close()
    counters = [(c % (1 << 128)).to_bytes(16, "big") for c in range(WRAP, WRAP + 6)]
    expected = [cipher.encrypt_block(key, counter, cipher.PYTHON) for counter in counters]
    assert keystream == b"".join(expected)
    assert keystream[3 * 16 : 4 * 16] == cipher.encrypt_block(key, bytes(16), cipher.PYTHON)


@pytest.mark.parametrize("backend", BACKENDS)
def test_xor_accepts_buffers_and_xor_into_works_in_place(backend):
    key, counter0 = bytes(range(32)), 12345
    data = bytes(range(200))
    expected = cipher.twofish_ctr(key, counter0, backend).xor(data)
    assert cipher.twofish_ctr(key, counter0, backend).xor(bytearray(data)) == expected
    assert cipher.twofish_ctr(key, counter0, backend).xor(memoryview(data)) == expected
    buf = bytearray(b"xx" + data + b"yy")
    stream = cipher.twofish_ctr(key, counter0, backend)
    stream.xor_into(memoryview(buf)[2:52])
    stream.xor_into(memoryview(buf)[52:202])
    assert bytes(buf) == b"xx" + expected + b"yy"
    with pytest.raises(TypeError):
        stream.xor_into(memoryview(b"read-only"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_stream_refuses_work_and_close_is_idempotent(backend):
    stream = cipher.twofish_ctr(bytes(32), 0, backend)
    stream.close()
    stream.close()
    with pytest.raises(ValueError):
        stream.xor(b"abc")


@needs_gcrypt
def test_pooled_handle_starts_clean():
    key = bytes(range(32))
    fresh = cipher.twofish_ctr(key, 77, cipher.PYTHON).xor(bytes(40))
    for _ in range(3):
        used = cipher.twofish_ctr(key, 5, cipher.GCRYPT)
        used.xor(bytes(7))  # leaves 9 unused keystream bytes in the handle
        used.close()
        again = cipher.twofish_ctr(key, 77, cipher.GCRYPT)
        assert again.xor(bytes(40)) == fresh
        again.close()


@needs_gcrypt
def test_pool_survives_many_keys_and_unclosed_streams():
    for i in range(40):
        key = bytes([i]) * 32
        streams = [cipher.twofish_ctr(key, j, cipher.GCRYPT) for j in range(10)]
        for stream in streams[:-1]:
            stream.close()
    key = bytes(range(32))
    first_block = cipher.encrypt_block(key, bytes(16), cipher.PYTHON)
    assert cipher.twofish_ctr(key, 0, cipher.GCRYPT).xor(bytes(16)) == first_block


@needs_gcrypt
def test_gcrypt_streams_in_threads_give_correct_bytes():
    key = bytes(range(32))
    data = bytes(range(256)) * 1024
    expected = {c: cipher.twofish_ctr(key, c, cipher.GCRYPT).xor(data) for c in range(8)}
    results: dict[int, bytes] = {}

    def work(counter0: int) -> None:
        for _ in range(5):
            stream = cipher.twofish_ctr(key, counter0, cipher.GCRYPT)
            results[counter0] = b"".join(stream.xor(data[i : i + 5000]) for i in range(0, len(data), 5000))
            stream.close()

    threads = [threading.Thread(target=work, args=(c,)) for c in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


def test_default_backend_and_env_override(monkeypatch):
    monkeypatch.delenv(cipher.ENV_BACKEND, raising=False)
    assert cipher.default_backend() == (cipher.GCRYPT if HAVE_GCRYPT else cipher.PYTHON)
    for name in BACKENDS:
        monkeypatch.setenv(cipher.ENV_BACKEND, name)
        cipher.default_backend.cache_clear()
        assert cipher.default_backend() == name
    monkeypatch.setenv(cipher.ENV_BACKEND, "rot13")
    cipher.default_backend.cache_clear()
    with pytest.raises(FogsyncError, match="FOGSYNC_CIPHER"):
        cipher.default_backend()


@needs_gcrypt
def test_24_byte_keys_use_the_python_backend_by_default():
    vector = next(v for v in VECTORS["ecb"] if v["key_bits"] == 192)
    key = bytes.fromhex(vector["key"])
    assert cipher.encrypt_block(key, bytes.fromhex(vector["plaintext"])).hex() == vector["ciphertext"]
    with pytest.raises(FogsyncError, match="16- or 32-byte"):
        cipher.twofish_ctr(key, 0, cipher.GCRYPT)


@pytest.mark.parametrize("backend", [*BACKENDS, None])
def test_bad_arguments(backend):
    with pytest.raises(ValueError):
        cipher.twofish_ctr(bytes(20), 0, backend)
    with pytest.raises(ValueError):
        cipher.twofish_ctr(bytes(32), 1 << 128, backend)
    with pytest.raises(ValueError):
        cipher.twofish_ctr(bytes(32), -1, backend)
    with pytest.raises(ValueError):
        cipher.encrypt_block(bytes(32), bytes(15), backend)
    with pytest.raises(ValueError):
        cipher.twofish_ctr(bytes(32), 0, "openssl")


def test_missing_libgcrypt_falls_back_to_python(monkeypatch):
    def missing() -> cipher_gcrypt.Library:
        raise FogsyncError("libgcrypt is not available: libgcrypt.so.20: cannot open shared object file")

    monkeypatch.setattr(cipher_gcrypt, "library", missing)
    monkeypatch.delenv(cipher.ENV_BACKEND, raising=False)
    assert cipher.available_backends() == [cipher.PYTHON]
    assert cipher.default_backend() == cipher.PYTHON
    with pytest.raises(FogsyncError, match="libgcrypt is not available"):
        cipher.twofish_ctr(bytes(32), 0, cipher.GCRYPT)
    assert cipher.encrypt_block(bytes(32), bytes(16)).hex() == "57ff739d4dc92c1bd7fc01700cc8216f"


# --- big buffers: split across two threads inside the gcrypt backend -------------


@pytest.mark.skipif("gcrypt" not in cipher.available_backends(), reason="libgcrypt not installed")
@pytest.mark.parametrize("first", [0, 16, 5])  # bytes taken before the big buffer: aligned, aligned, not
@pytest.mark.parametrize("size", [512 * 1024, 1024 * 1024 + 32, 600_000 + 7])
@pytest.mark.parametrize("counter0", [0, 2**128 - 20_000])  # the second half wraps the counter
def test_big_buffers_match_the_portable_backend(first, size, counter0):
    key = os.urandom(32)
    data = os.urandom(first + size + 100)
    fast = cipher.twofish_ctr(key, counter0, backend="gcrypt")
    slow = cipher.twofish_ctr(key, counter0, backend="python")
    try:
        got = fast.xor(data[:first]) + fast.xor(data[first : first + size]) + fast.xor(data[first + size :])
        assert got == slow.xor(data)
    finally:
        fast.close()
        slow.close()


# --- vpgather on/off: process-wide, so each case runs in a child process ----------

VPGATHER_CHILD = """
import hashlib, json, random, sys
from fogsync.format import cipher
rng = random.Random(sys.argv[1])
digests = []
for length in [0, 1, 15, 16, 17, 1000, 70000, 600_000 + 7, 1024 * 1024]:
    key = rng.randbytes(rng.choice([16, 32]))
    counter0 = rng.choice([rng.getrandbits(128), 2**128 - 3, 0])
    stream = cipher.twofish_ctr(key, counter0, cipher.GCRYPT)
    digests.append(hashlib.sha256(stream.xor(rng.randbytes(length))).hexdigest())
    stream.close()
from fogsync.format import cipher_gcrypt
gc = cipher_gcrypt.library()
print(json.dumps({"vpgather": gc.vpgather, "source": gc.vpgather_source, "hwf": gc.hw_features, "digests": digests}))
"""


def _vpgather_child(tmp_path: Path, seed: str = "seed", **env: str) -> dict:
    """Run VPGATHER_CHILD with a private cache dir; ``env`` adds variables (value "" removes one)."""
    child_env = {k: v for k, v in os.environ.items() if k not in (cipher.ENV_BACKEND, gcrypt_hwf.ENV_VPGATHER)}
    child_env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    child_env.update(env)
    proc = subprocess.run([sys.executable, "-c", VPGATHER_CHILD, seed], env=child_env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _python_digests(seed: str) -> list[str]:
    """The same streams as VPGATHER_CHILD, through the portable backend in this process."""
    rng = random.Random(seed)
    digests = []
    for length in [0, 1, 15, 16, 17, 1000, 70000, 600_000 + 7, 1024 * 1024]:
        key = rng.randbytes(rng.choice([16, 32]))
        counter0 = rng.choice([rng.getrandbits(128), 2**128 - 3, 0])
        data = rng.randbytes(length)
        digests.append(hashlib.sha256(cipher.twofish_ctr(key, counter0, cipher.PYTHON).xor(data)).hexdigest())
    return digests


AVX2 = os.path.exists("/proc/cpuinfo") and " avx2" in Path("/proc/cpuinfo").read_text()
needs_avx2 = pytest.mark.skipif(not (HAVE_GCRYPT and AVX2), reason="calibration only runs on AVX2 CPUs with libgcrypt")


@needs_both
@pytest.mark.parametrize("seed", ["a", "b", "c"])
def test_vpgather_on_and_off_give_identical_bytes(tmp_path, seed):
    on = _vpgather_child(tmp_path, seed, **{gcrypt_hwf.ENV_VPGATHER: "on"})
    off = _vpgather_child(tmp_path, seed, **{gcrypt_hwf.ENV_VPGATHER: "off"})
    assert (on["vpgather"], on["source"], off["vpgather"], off["source"]) == (True, "env", False, "env")
    assert gcrypt_hwf.HWF_NAME not in off["hwf"]  # the disable reached libgcrypt
    assert on["digests"] == off["digests"] == _python_digests(seed)
    assert not (tmp_path / "cache").exists()  # forced: no calibration, no cache


@needs_avx2
def test_calibration_is_cached_then_reused(tmp_path):
    first = _vpgather_child(tmp_path)
    verdict = tmp_path / "cache" / "fogsync" / gcrypt_hwf.CACHE_FILE
    record = json.loads(verdict.read_text())
    assert first["source"] == "measured" and record["vpgather"] == first["vpgather"]
    assert set(record["mbps"]) <= {"on", "off"} and all(rate > 0 for rate in record["mbps"].values())
    second = _vpgather_child(tmp_path)
    assert (second["source"], second["vpgather"]) == ("cache", first["vpgather"])
    assert first["digests"] == second["digests"] == _python_digests("seed")


@needs_avx2
def test_corrupt_cache_is_ignored_and_rewritten(tmp_path):
    verdict = tmp_path / "cache" / "fogsync" / gcrypt_hwf.CACHE_FILE
    verdict.parent.mkdir(parents=True)
    verdict.write_bytes(b"\x00garbage{")
    assert _vpgather_child(tmp_path)["source"] == "measured"
    assert isinstance(json.loads(verdict.read_text())["vpgather"], bool)
    assert _vpgather_child(tmp_path)["source"] == "cache"


@needs_avx2
def test_unwritable_cache_dir_still_works(tmp_path):
    (tmp_path / "cache").write_text("a file where the cache dir should be")
    for _ in range(2):
        result = _vpgather_child(tmp_path)
        assert result["source"] == "measured"
        assert result["digests"] == _python_digests("seed")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("counter0", [0, WRAP, (1 << 128) - 1])
def test_xor_at_is_the_stream_from_that_offset(backend, counter0):
    key = bytes(range(32))
    data = bytes(range(256)) * 8
    whole = cipher.twofish_ctr(key, counter0, cipher.PYTHON).xor(data)
    for offset in (0, 16, 512, 1024 + 48):
        buf = bytearray(data[offset:])
        cipher.xor_at(key, counter0, offset, buf, backend)
        assert bytes(buf) == whole[offset:]


def test_xor_at_refuses_an_offset_inside_a_block():
    with pytest.raises(ValueError, match="whole number"):
        cipher.xor_at(bytes(32), 0, 8, bytearray(16))
