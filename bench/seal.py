"""Throughput of the crypto layer: raw Twofish-CTR, SHA-256, HMAC, and sealing.

    python bench/seal.py [--mib 256] [--small 50000]

Prints figures and ratios only; it asserts nothing. The python cipher backend
is measured on a smaller slice (it runs at tens of MB/s at best). Whether
libgcrypt may use vpgather is process-wide, so raw Twofish-CTR with it on and
off is measured in two child runs of this script (``--raw-only``) with
``FOGSYNC_GCRYPT_VPGATHER`` set.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from fogsync.format import blocks, cipher, cipher_gcrypt, crypto
from fogsync.platform import gcrypt_hwf
from fogsync.repo import bigblob

MIB = 1 << 20
CHUNK = MIB
PYTHON_SLICE_MIB = 8
SMALL_LEN = 2048


def _mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def _timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _chunks(data: bytes, size: int = CHUNK) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + size] for i in range(0, len(data), size)]


def raw_twofish(key: bytes, data: bytes, size: int = cipher_gcrypt.SPLIT_MIN - 16) -> float:
    """libgcrypt Twofish-CTR, one gcry_cipher_encrypt call per buffer.

    The default size stays just under ``cipher_gcrypt.SPLIT_MIN``, so this is one
    thread: the baseline. 1 MiB buffers show the stream's own two-thread split.
    """
    stream = cipher.twofish_ctr(key, 0, cipher.GCRYPT)
    buf = bytearray(data[:size])
    rounds = max(1, len(data) // size)

    def run() -> None:
        for _ in range(rounds):
            stream.xor_into(buf)

    seconds = _timed(run)
    stream.close()
    return _mbps(rounds * len(buf), seconds)


def sha256(data: bytes) -> float:
    def run() -> None:
        digest = hashlib.sha256()
        for chunk in _chunks(data):
            digest.update(chunk)
        digest.digest()

    return _mbps(len(data), _timed(run))


def hmac_sha256(key: bytes, data: bytes) -> float:
    def run() -> None:
        mac = hmac.new(key, digestmod="sha256")
        for chunk in _chunks(data):
            mac.update(chunk)
        mac.digest()

    return _mbps(len(data), _timed(run))


def seal_stream(keys: crypto.ShareKeys, data: bytes) -> float:
    def run() -> None:
        for _ in crypto.seal_stream(keys, _chunks(data), compress=False):
            pass

    return _mbps(len(data), _timed(run))


def seal_file_chunked(keys: crypto.ShareKeys, data: bytes) -> float:
    """``bigblob.seal_file``: what push does with a big file, a chunk per core, block hashes included."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        writer = blocks.BlobWriter(keys, lambda h, block: None)
        seconds = _timed(lambda: writer.resolve([bigblob.seal_file(keys, f.fileno(), len(data), writer)[1]]))
    return _mbps(len(data), seconds)


def seal_two_threads(keys: crypto.ShareKeys, data: bytes) -> float:
    """Two threads, each sealing its own half of the data as an independent stream."""
    half = len(data) // 2
    parts = [data[:half], data[half:]]

    def worker(part: bytes) -> None:
        for _ in crypto.seal_stream(keys, _chunks(part), compress=False):
            pass

    threads = [threading.Thread(target=worker, args=(part,)) for part in parts]

    def run() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return _mbps(len(data), _timed(run))


def small_blobs(keys: crypto.ShareKeys, count: int) -> tuple[float, float]:
    """Microseconds per seal() and per open_blob() of a 2 KiB blob (compress off)."""
    payloads = [os.urandom(SMALL_LEN) for _ in range(64)]
    blobs: list[bytes] = []

    def seal_all() -> None:
        for i in range(count):
            blobs.append(crypto.seal(keys, payloads[i & 63], compress=False))

    def open_all() -> None:
        for blob in blobs:
            crypto.open_blob(keys, blob)

    return _timed(seal_all) / count * 1e6, _timed(open_all) / count * 1e6


def _with_backend(name: str, func: Callable[[], float]) -> float:
    saved = os.environ.get(cipher.ENV_BACKEND)
    os.environ[cipher.ENV_BACKEND] = name
    cipher.default_backend.cache_clear()
    try:
        return func()
    finally:
        if saved is None:
            del os.environ[cipher.ENV_BACKEND]
        else:
            os.environ[cipher.ENV_BACKEND] = saved
        cipher.default_backend.cache_clear()


def raw_twofish_child(vpgather: str, mib: int, repeat: int) -> float | None:
    """``raw_twofish`` in a child process with ``FOGSYNC_GCRYPT_VPGATHER=vpgather``; None if it fails."""
    env = dict(os.environ, **{gcrypt_hwf.ENV_VPGATHER: vpgather})
    args = [sys.executable, os.path.abspath(__file__), "--raw-only", "--mib", str(mib), "--repeat", str(repeat)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    if proc.returncode:
        print(f"  (vpgather={vpgather} child failed: {proc.stderr.strip()[-300:]})")
        return None
    return float(proc.stdout.split()[-1])


def _best(repeat: int, func: Callable[[], float]) -> float:
    """Best of ``repeat`` runs: other load on the host only ever slows a run down."""
    return max(func() for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB of random data (default 256)")
    parser.add_argument("--small", type=int, default=50_000, help="2 KiB blobs to seal (default 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept (default 3)")
    parser.add_argument("--raw-only", action="store_true", help=argparse.SUPPRESS)  # the vpgather children
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)

    data = os.urandom(args.mib * MIB)
    keys = crypto.ShareKeys.derive(os.urandom(32))
    if args.raw_only:
        print(f"{_best(repeat, lambda: raw_twofish(keys.cipher, data)):.1f}")
        return 0
    backends = cipher.available_backends()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, backends {backends}, gzip {crypto.GZIP_BACKEND}")
    print(f"data: {args.mib} MiB random, 1 MiB chunks; MB = 10^6 bytes; best of {repeat}; load {_load()}")

    raw = _best(repeat, lambda: raw_twofish(keys.cipher, data)) if cipher.GCRYPT in backends else None
    if raw is not None:
        vpgather, source = cipher.gcrypt_vpgather()
        print(f"libgcrypt vpgather (AVX2 Twofish): {'on' if vpgather else 'off'}, from {source}")
        mib = min(args.mib, 64)
        rates = {mode: raw_twofish_child(mode, mib, repeat) for mode in ("on", "off")}
        for mode, rate in rates.items():
            if rate is not None:
                print(f"raw Twofish-CTR, vpgather {mode:3} (child, 1 thread) {rate:6.1f} MB/s")
        if rates["on"] and rates["off"]:
            print(f"ratio vpgather off/on                      {rates['off'] / rates['on']:8.2f}")
        print(f"raw libgcrypt Twofish-CTR (1 thread)       {raw:8.1f} MB/s")
        split = _best(repeat, lambda: raw_twofish(keys.cipher, data, CHUNK))
        print(f"Twofish-CTR stream, 1 MiB split on 2 threads {split:6.1f} MB/s")
    print(f"hashlib SHA-256                            {_best(repeat, lambda: sha256(data)):8.1f} MB/s")
    print(f"HMAC-SHA256                                {_best(repeat, lambda: hmac_sha256(keys.mac, data)):8.1f} MB/s")

    one = two = chunked = None
    if cipher.GCRYPT in backends:
        one = _with_backend(cipher.GCRYPT, lambda: _best(repeat, lambda: seal_stream(keys, data)))
        print(f"seal_stream, gcrypt, one stream            {one:8.1f} MB/s")
        two = _with_backend(cipher.GCRYPT, lambda: _best(repeat, lambda: seal_two_threads(keys, data)))
        print(f"seal_stream, gcrypt, 2 threads x 1 stream  {two:8.1f} MB/s (total)")
        chunked = _with_backend(cipher.GCRYPT, lambda: _best(repeat, lambda: seal_file_chunked(keys, data)))
        print(f"bigblob.seal_file (+ plaintext sha256, block hashes) {chunked:6.1f} MB/s")
    if cipher.PYTHON in backends:
        piece = data[: min(len(data), PYTHON_SLICE_MIB * MIB)]
        slow = _with_backend(cipher.PYTHON, lambda: seal_stream(keys, piece))
        print(f"seal_stream, python, one stream            {slow:8.1f} MB/s (on {len(piece) // MIB} MiB only)")

    if raw:
        if one:
            print(f"ratio seal/raw Twofish, one stream         {one / raw:8.2f}")
        if two:
            print(f"ratio seal/raw Twofish, 2 threads          {two / raw:8.2f}")
        if chunked:
            print(f"ratio seal_file/raw Twofish, a chunk per core {chunked / raw:5.2f}")

    if args.small > 0:
        per_seal, per_open = small_blobs(keys, args.small)
        print(f"seal() of {args.small} x 2 KiB blobs (compress off) {per_seal:6.1f} us/blob")
        print(f"open_blob() of the same                    {per_open:8.1f} us/blob")
    print(f"load average at the end: {_load()}")
    return 0


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
