"""The sealed blob's layout (FORMAT.md section 2) and the pieces every sealer and opener shares.

A sealed blob is ``nonce(24) || header(8) || ciphertext || tag(32)``. This
module knows its sizes, builds and checks the header, checks the tag in
constant time, gzips and gunzips bodies, and feeds an HMAC on a worker
thread while the caller's thread runs the cipher (``MacPipe``): ctypes and
hashlib both drop the GIL, so two cores share one blob's work. No I/O.
"""

from __future__ import annotations

import hmac
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from fogsync.errors import FormatError, IntegrityError
from fogsync.platform.threads import SharedPool

try:
    from isal import isal_zlib as _gz

    _GZIP_ERRORS: tuple[type[Exception], ...] = (_gz.error, zlib.error)
    GZIP_BACKEND = "isal"
except ImportError:
    _gz = zlib
    _GZIP_ERRORS = (zlib.error,)
    GZIP_BACKEND = "zlib"


NONCE_LEN = 24
HEADER_LEN = 8
PREFIX_LEN = NONCE_LEN + HEADER_LEN  # 32
TAG_LEN = 32
MIN_BLOB_LEN = PREFIX_LEN + TAG_LEN
KEY_LEN = 32

COMP_NONE = 0
COMP_GZIP = 1

# Header bytes 0-3 and the values this implementation reads; bytes 4-7 must be 0.
HEADER_FIELDS = ("mode", "cipher", "mac", "compression")
_ACCEPTED = ({0}, {0}, {0}, {COMP_NONE, COMP_GZIP})

# Gzip level: the fastest. Higher levels shrink source text and listings
# barely more for much less speed (docs/performance.md); without isal, zlib
# level 1 is the comparable trade-off.
GZIP_LEVEL = 1
_GZIP_WBITS = 31  # gzip header and trailer (RFC 1952)

PROBE_LEN = 64 * 1024  # probe_compressible looks at no more than this
PROBE_RATIO = 0.9  # compress when gzip brings the probe below this fraction

_OVERLAP_MIN = 256 * 1024  # smaller pieces are MACed inline: a hand-off costs more
OUT_MAX = 1 << 20  # decrypt_blob yields decompressed pieces of at most this

AUTH_FAILED = "authentication failed (wrong key or tampered data)"

def header(compression: int) -> bytes:
    return bytes((0, 0, 0, compression, 0, 0, 0, 0))


def check_header(header: bytes | bytearray | memoryview) -> int:
    """The compression byte of a verified header; FormatError for anything unknown."""
    for index, (name, accepted) in enumerate(zip(HEADER_FIELDS, _ACCEPTED, strict=True)):
        if header[index] not in accepted:
            raise FormatError(f"unknown blob header value: {name} (header byte {index}) is {header[index]}")
    for index in range(len(HEADER_FIELDS), HEADER_LEN):
        if header[index]:
            raise FormatError(f"unknown blob header value: reserved header byte {index} is {header[index]}, not 0")
    return header[3]


def fresh_nonce(nonce: bytes | None) -> bytes:
    if nonce is None:
        return os.urandom(NONCE_LEN)
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"nonce must be {NONCE_LEN} bytes")
    return bytes(nonce)


def blob_prefix(compression: int, nonce: bytes | None = None) -> bytes:
    """The 32 bytes a sealed blob starts with: a fresh (or given) nonce and the header."""
    return fresh_nonce(nonce) + header(compression)


def counter0(prefix: bytes | bytearray | memoryview) -> int:
    """The first CTR counter block of the blob that starts with ``prefix`` (its nonce's first 16 bytes)."""
    return int.from_bytes(prefix[:16], "big")


def is_uncompressed(prefix: bytes | bytearray | memoryview) -> bool:
    """Whether ``prefix`` carries the plain header: CTR, Twofish, HMAC, no compression."""
    return bytes(prefix[NONCE_LEN:PREFIX_LEN]) == header(COMP_NONE)


def check_tag(mac: Any, tag: bytes | memoryview) -> None:
    """IntegrityError unless ``mac`` (an HMAC fed the whole authenticated blob) gives ``tag``, in constant time."""
    if len(tag) != TAG_LEN or not hmac.compare_digest(mac.digest(), tag):
        raise IntegrityError(f"sealed blob {AUTH_FAILED}")


def gzip_compressor() -> Any:
    """A compressobj writing one gzip member (RFC 1952) at GZIP_LEVEL."""
    return _gz.compressobj(GZIP_LEVEL, _gz.DEFLATED, _GZIP_WBITS)


def gzip_bytes(data: bytes | bytearray | memoryview) -> bytes:
    compressor = gzip_compressor()
    return compressor.compress(data) + compressor.flush()


def probe_compressible(sample: bytes) -> bool:
    """Whether gzip brings (the first 64 KiB of) ``sample`` below ~90% of its size."""
    probe = memoryview(sample)[:PROBE_LEN]
    if not probe:
        return False
    return len(gzip_bytes(probe)) < PROBE_RATIO * len(probe)


class Gunzip:
    """Streaming gzip decoder that accepts several members back to back (RFC 1952)."""

    def __init__(self, out_max: int = OUT_MAX) -> None:
        self._out_max = out_max
        self._members = 0
        self._member: Any = None

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[bytes]:
        try:
            yield from self._feed(data)
        except _GZIP_ERRORS as exc:
            raise FormatError(f"corrupt gzip data in blob: {exc}") from None

    def _feed(self, data: bytes | bytearray | memoryview) -> Iterator[bytes]:
        while True:
            if self._member is None:
                if not data:
                    return
                self._member = _gz.decompressobj(_GZIP_WBITS)
                self._members += 1
            out = self._member.decompress(data, self._out_max)
            if out:
                yield out
            if self._member.eof:
                data = self._member.unused_data
                self._member = None
                continue
            data = self._member.unconsumed_tail
            if not data and not (self._out_max and len(out) == self._out_max):
                return

    def finish(self) -> Iterator[bytes]:
        """Any output still held; FormatError if the last member is cut short."""
        if self._member is not None:
            try:
                tail = self._member.flush()
            except _GZIP_ERRORS as exc:
                raise FormatError(f"corrupt gzip data in blob: {exc}") from None
            if tail:
                yield tail
            if not self._member.eof:
                raise FormatError("corrupt gzip data in blob: truncated member")
        if self._members == 0:
            raise FormatError("corrupt gzip data in blob: no gzip member")


def gunzip_all(data: bytes | bytearray | memoryview) -> bytes:
    gunzip = Gunzip(out_max=0)
    return b"".join([*gunzip.feed(data), *gunzip.finish()])

def too_short(length: int) -> IntegrityError:
    return IntegrityError(f"sealed blob too short ({length} bytes): {AUTH_FAILED}")


mac_pool = SharedPool(max(2, os.cpu_count() or 2), "fogsync-mac")  # MACs one chunk while the caller encrypts the next


class MacPipe:
    """An HMAC fed in order; big pieces are hashed on a worker while the caller goes on.

    A piece handed to ``update`` must not change until the next call (or
    ``wait``/``digest``) returns.
    """

    def __init__(self, mac: hmac.HMAC) -> None:
        self._mac = mac
        self._pending: Future[None] | None = None

    def update(self, data: bytes | memoryview) -> None:
        self.wait()
        if len(data) >= _OVERLAP_MIN:
            try:
                self._pending = mac_pool().submit(self._mac.update, data)
                return
            except RuntimeError:  # the pool is shut down: interpreter exit
                pass
        self._mac.update(data)

    def wait(self) -> None:
        """Return once the worker is done with the last piece fed."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def digest(self) -> bytes:
        self.wait()
        return self._mac.digest()

