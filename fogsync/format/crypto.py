"""Share keys and sealed blobs (FORMAT.md sections 1 and 2). Pure computation, no I/O.

A sealed blob is ``nonce(24) || header(8) || ciphertext || tag(32)``: the
plaintext, optionally gzipped, encrypted with Twofish-CTR under ``Kc`` (first
counter block = ``nonce[0:16]``), then authenticated with HMAC-SHA256 under
``Km`` over everything before the tag (encrypt-then-MAC).

Readers check the tag first, in constant time, and only then look at the
header: a damaged blob is an ``IntegrityError``; a blob that verifies but
uses a header value this implementation does not know is a ``FormatError``.
Messages are short; callers add which block or file they were reading.

Big pieces overlap the work: while libgcrypt encrypts or decrypts (ctypes
drops the GIL), a worker thread runs the HMAC (hashlib drops the GIL too),
so two cores share one blob's work.
"""

from __future__ import annotations

import hmac
import os
import re
import threading
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fogsync.errors import ConfigError, FormatError, IntegrityError
from fogsync.format.cipher import twofish_ctr

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

HKDF_INFO_CIPHER = b"fogsync mk3 cipher"
HKDF_INFO_MAC = b"fogsync mk3 mac"
SHARE_ID_PREFIX = b"share-id:"
SHARE_ID_LEN = 32

# Gzip level: the fastest. Higher levels shrink source text and listings
# barely more for much less speed (docs/performance.md); without isal, zlib
# level 1 is the comparable trade-off.
GZIP_LEVEL = 1
_GZIP_WBITS = 31  # gzip header and trailer (RFC 1952)

PROBE_LEN = 64 * 1024  # probe_compressible looks at no more than this
PROBE_RATIO = 0.9  # compress when gzip brings the probe below this fraction

PIPE_CHUNK = 1 << 20  # seal_stream encrypts and MACs in pieces of at most this
_OVERLAP_MIN = 256 * 1024  # smaller pieces are MACed inline: a hand-off costs more
_OUT_MAX = 1 << 20  # decrypt_blob yields decompressed pieces of at most this

_AUTH_FAILED = "authentication failed (wrong key or tampered data)"
_KEY_TEXT = re.compile(r"[0-9A-Fa-f]{64}")


# --------------------------------------------------------------------------
# Keys


def parse_key(text: str) -> bytes:
    """A share key written as 64 hex characters (surrounding whitespace ok) -> 32 bytes."""
    stripped = text.strip() if isinstance(text, str) else ""
    if not _KEY_TEXT.fullmatch(stripped):
        raise ConfigError("key must be 64 hex characters (32 bytes)")
    return bytes.fromhex(stripped)


def hkdf_sha256(key: bytes, info: bytes, length: int = KEY_LEN, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 (RFC 5869): extract, then expand to ``length`` bytes.

    Two HMAC calls from the standard library. The `cryptography` package's
    HKDF gives the same bytes (the tests check both against RFC 5869's
    vectors), but loading it costs every process memory and start-up time.
    """
    if not 0 < length <= 255 * 32:
        raise ValueError(f"HKDF-SHA256 cannot produce {length} bytes")
    prk = hmac.digest(salt or bytes(32), key, "sha256")
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
    return out[:length]


@dataclass(frozen=True)
class ShareKeys:
    """The two subkeys of a share: ``cipher`` (Kc) and ``mac`` (Km)."""

    cipher: bytes
    mac: bytes
    _mac_base: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("cipher", "mac"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != KEY_LEN:
                raise ValueError(f"ShareKeys.{name} must be {KEY_LEN} bytes")
        object.__setattr__(self, "_mac_base", hmac.new(self.mac, digestmod="sha256"))

    @classmethod
    def derive(cls, key: bytes) -> ShareKeys:
        """Kc and Km from the share key K by HKDF-SHA256 (FORMAT.md section 1)."""
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
            raise ConfigError(f"share key must be {KEY_LEN} bytes")
        key = bytes(key)
        return cls(cipher=hkdf_sha256(key, HKDF_INFO_CIPHER), mac=hkdf_sha256(key, HKDF_INFO_MAC))

    def share_id(self, name: str) -> str:
        """The share's folder name in a store: 32 hex characters."""
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError("share name is not valid Unicode text") from exc
        return self.new_mac(SHARE_ID_PREFIX + encoded).hexdigest()[:SHARE_ID_LEN]

    def new_mac(self, data: bytes = b"") -> hmac.HMAC:
        """A fresh HMAC-SHA256 under Km (a copy of a prepared one), fed ``data``."""
        mac = self._mac_base.copy()
        if data:
            mac.update(data)
        return mac

    def __repr__(self) -> str:
        return "ShareKeys(<secret>)"

    def __reduce__(self) -> tuple:
        return ShareKeys, (self.cipher, self.mac)  # for worker processes: the prepared HMAC is rebuilt there


# --------------------------------------------------------------------------
# Header, nonce, gzip helpers


def _header(compression: int) -> bytes:
    return bytes((0, 0, 0, compression, 0, 0, 0, 0))


def _check_header(header: bytes | bytearray | memoryview) -> int:
    """The compression byte of a verified header; FormatError for anything unknown."""
    for index, (name, accepted) in enumerate(zip(HEADER_FIELDS, _ACCEPTED, strict=True)):
        if header[index] not in accepted:
            raise FormatError(f"unknown blob header value: {name} (header byte {index}) is {header[index]}")
    for index in range(len(HEADER_FIELDS), HEADER_LEN):
        if header[index]:
            raise FormatError(f"unknown blob header value: reserved header byte {index} is {header[index]}, not 0")
    return header[3]


def _fresh_nonce(nonce: bytes | None) -> bytes:
    if nonce is None:
        return os.urandom(NONCE_LEN)
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"nonce must be {NONCE_LEN} bytes")
    return bytes(nonce)


def _counter0(nonce: bytes | bytearray | memoryview) -> int:
    return int.from_bytes(nonce[:16], "big")


def blob_prefix(compression: int, nonce: bytes | None = None) -> bytes:
    """The 32 bytes a sealed blob starts with: a fresh (or given) nonce and the header."""
    return _fresh_nonce(nonce) + _header(compression)


def counter0(prefix: bytes | bytearray | memoryview) -> int:
    """The first CTR counter block of the blob that starts with ``prefix``."""
    return _counter0(prefix)


def is_uncompressed(prefix: bytes | bytearray | memoryview) -> bool:
    """Whether ``prefix`` carries the plain header: CTR, Twofish, HMAC, no compression."""
    return bytes(prefix[NONCE_LEN:PREFIX_LEN]) == _header(COMP_NONE)


def check_tag(mac: Any, tag: bytes | memoryview) -> None:
    """IntegrityError unless ``mac`` (an HMAC fed the whole authenticated blob) gives ``tag``, in constant time."""
    if len(tag) != TAG_LEN or not hmac.compare_digest(mac.digest(), tag):
        raise IntegrityError(f"sealed blob {_AUTH_FAILED}")


def gzip_compressor() -> Any:
    """A compressobj writing one gzip member (RFC 1952) at GZIP_LEVEL."""
    return _gz.compressobj(GZIP_LEVEL, _gz.DEFLATED, _GZIP_WBITS)


def _gzip(data: bytes | bytearray | memoryview) -> bytes:
    compressor = gzip_compressor()
    return compressor.compress(data) + compressor.flush()


def probe_compressible(sample: bytes) -> bool:
    """Whether gzip brings (the first 64 KiB of) ``sample`` below ~90% of its size."""
    probe = memoryview(sample)[:PROBE_LEN]
    if not probe:
        return False
    return len(_gzip(probe)) < PROBE_RATIO * len(probe)


class _Gunzip:
    """Streaming gzip decoder that accepts several members back to back (RFC 1952)."""

    def __init__(self, out_max: int = _OUT_MAX) -> None:
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


def _gunzip_all(data: bytes | bytearray | memoryview) -> bytes:
    gunzip = _Gunzip(out_max=0)
    return b"".join([*gunzip.feed(data), *gunzip.finish()])


# --------------------------------------------------------------------------
# Sealing


def seal(keys: ShareKeys, plaintext: bytes, *, compress: bool, nonce: bytes | None = None) -> bytes:
    """Seal ``plaintext`` into one blob (gzipped first when ``compress``)."""
    if len(plaintext) > 2 * PIPE_CHUNK:
        return b"".join(seal_stream(keys, (plaintext,), compress=compress, nonce=nonce))
    body = _gzip(plaintext) if compress else plaintext
    return _seal_body(keys, body, COMP_GZIP if compress else COMP_NONE, nonce)


def seal_small(keys: ShareKeys, plaintext: bytes, *, try_gzip: bool, nonce: bytes | None = None) -> bytes:
    """Seal a small plaintext gzipped if gzip shrinks it below ``PROBE_RATIO``, else as it is.

    One gzip pass serves as both the probe and the compression.
    """
    if try_gzip and plaintext:
        packed = _gzip(plaintext)
        if len(packed) < PROBE_RATIO * len(plaintext):
            return _seal_body(keys, packed, COMP_GZIP, nonce)
    return _seal_body(keys, plaintext, COMP_NONE, nonce)


def _seal_body(keys: ShareKeys, body: bytes, compression: int, nonce: bytes | None) -> bytes:
    nonce = _fresh_nonce(nonce)
    prefix = nonce + _header(compression)
    ciphertext = bytearray(body)
    stream = twofish_ctr(keys.cipher, _counter0(nonce))
    try:
        stream.xor_into(ciphertext)
    finally:
        stream.close()
    mac = keys.new_mac(prefix)
    mac.update(ciphertext)
    return b"".join((prefix, ciphertext, mac.digest()))


_executor_lock = threading.Lock()
_executor: list[ThreadPoolExecutor] = []


def _worker_pool() -> ThreadPoolExecutor:
    """Threads that MAC one chunk while the caller's thread encrypts the next."""
    if not _executor:
        with _executor_lock:
            if not _executor:
                workers = max(2, os.cpu_count() or 2)
                _executor.append(ThreadPoolExecutor(workers, thread_name_prefix="fogsync-mac"))
    return _executor[0]


def _forget_pool_after_fork() -> None:
    _executor.clear()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


class _MacPipe:
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
                self._pending = _worker_pool().submit(self._mac.update, data)
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


def _settled(pieces: Iterable[bytes | memoryview], mac: _MacPipe) -> Iterator[bytes | memoryview]:
    """``pieces``, but the next one is pulled only after ``mac`` is done with the last.

    The caller's chunks may share a buffer that its iterator refills.
    """
    for piece in pieces:
        yield piece
        mac.wait()


def _pieces(chunks: Iterable[bytes]) -> Iterator[memoryview]:
    """The input as non-empty byte views of at most PIPE_CHUNK bytes."""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        for start in range(0, len(view), PIPE_CHUNK):
            yield view[start : start + PIPE_CHUNK]


def _compressed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    compressor = gzip_compressor()
    for piece in _pieces(chunks):
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


def seal_stream(
    keys: ShareKeys, chunks: Iterable[bytes], *, compress: bool, nonce: bytes | None = None
) -> Iterator[bytes]:
    """Seal a stream: yields the 32-byte prefix, the ciphertext pieces, then the 32-byte tag."""
    nonce = _fresh_nonce(nonce)
    prefix = nonce + _header(COMP_GZIP if compress else COMP_NONE)
    source = _pieces(_compressed(chunks)) if compress else _pieces(chunks)
    mac = _MacPipe(keys.new_mac(prefix))
    stream = twofish_ctr(keys.cipher, _counter0(nonce))
    try:
        yield prefix
        for piece in source:
            buf = bytearray(piece)
            stream.xor_into(buf)
            ciphertext = bytes(buf)
            mac.update(ciphertext)
            yield ciphertext
    finally:
        stream.close()
    yield mac.digest()


# --------------------------------------------------------------------------
# Opening


def _too_short(length: int) -> IntegrityError:
    return IntegrityError(f"sealed blob too short ({length} bytes): {_AUTH_FAILED}")


def open_blob(keys: ShareKeys, blob: bytes) -> bytes:
    """Verify and decrypt one whole sealed blob; returns the plaintext (gunzipped).

    A big blob is MACed on a worker while this thread decrypts a copy; the
    plaintext is dropped unless the tag verifies.
    """
    if len(blob) < MIN_BLOB_LEN:
        raise _too_short(len(blob))
    view = memoryview(blob).cast("B")
    end = len(view) - TAG_LEN
    mac = _MacPipe(keys.new_mac())
    mac.update(view[:end])
    body = bytearray(view[PREFIX_LEN:end])
    stream = twofish_ctr(keys.cipher, _counter0(view))
    try:
        stream.xor_into(body)
    finally:
        stream.close()
    check_tag(mac, view[end:])
    compression = _check_header(view[NONCE_LEN:PREFIX_LEN])
    return _gunzip_all(body) if compression == COMP_GZIP else bytes(body)


class _TagSplitter:
    """Passes a blob arriving in arbitrary chunks through, holding back its last TAG_LEN bytes."""

    def __init__(self) -> None:
        self.length = 0
        self.tag = b""

    def authenticated(self, chunks: Iterable[bytes]) -> Iterator[bytes | memoryview]:
        """Everything before the tag, in order; afterwards ``tag`` holds the tag."""
        held = b""
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            self.length += len(view)
            if len(view) >= TAG_LEN:
                if held:
                    yield held
                if len(view) > TAG_LEN:
                    yield view[:-TAG_LEN]
                held = bytes(view[-TAG_LEN:])
            else:
                held += view
                if len(held) > TAG_LEN:
                    yield held[:-TAG_LEN]
                    held = held[-TAG_LEN:]
        self.tag = held


def verify_blob(keys: ShareKeys, chunks: Iterable[bytes]) -> int:
    """Check a whole sealed blob's tag, streaming; returns its compression byte."""
    splitter = _TagSplitter()
    mac = keys.new_mac()
    head = bytearray()
    for piece in splitter.authenticated(chunks):
        if len(head) < PREFIX_LEN:
            head += piece[: PREFIX_LEN - len(head)]
        mac.update(piece)
    if splitter.length < MIN_BLOB_LEN:
        raise _too_short(splitter.length)
    check_tag(mac, splitter.tag)
    return _check_header(head[NONCE_LEN:])


class _Decoder:
    """Decrypts the ciphertext of one blob whose prefix is known, then gunzips it if needed."""

    def __init__(self, keys: ShareKeys, prefix: bytes | bytearray) -> None:
        compression = _check_header(prefix[NONCE_LEN:PREFIX_LEN])
        self._gunzip = _Gunzip() if compression == COMP_GZIP else None
        self._stream = twofish_ctr(keys.cipher, _counter0(prefix))

    def feed(self, piece: bytes | memoryview) -> Iterator[bytes]:
        buf = bytearray(piece)
        self._stream.xor_into(buf)
        if self._gunzip is None:
            yield bytes(buf)
        else:
            yield from self._gunzip.feed(buf)

    def finish(self) -> Iterator[bytes]:
        if self._gunzip is not None:
            yield from self._gunzip.finish()

    def close(self) -> None:
        self._stream.close()


def decrypt_blob(keys: ShareKeys, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decrypt a whole sealed blob, streaming; yields the plaintext (gunzipped).

    Call only after verify_blob passed on the same bytes: this does not check
    the tag (it holds back and drops the last 32 bytes).
    """
    splitter = _TagSplitter()
    return _decrypted(keys, splitter, splitter.authenticated(chunks))


def open_stream(keys: ShareKeys, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decrypt a whole sealed blob while checking its tag, in one streaming pass.

    Plaintext comes out before the tag is known, so the caller must keep it
    where nobody sees it (a temporary file) and use it only if the generator
    ends without raising: after the last piece it raises IntegrityError when
    the tag does not verify. Garbled content that fails to decode first is
    still reported as failed authentication when the tag is wrong.
    """
    splitter = _TagSplitter()
    mac = _MacPipe(keys.new_mac())
    pieces = _settled(splitter.authenticated(chunks), mac)
    try:
        yield from _decrypted(keys, splitter, pieces, mac)
    except FormatError:
        for piece in pieces:
            mac.update(piece)
        _check_tag(splitter, mac)
        raise


def _decrypted(
    keys: ShareKeys, splitter: _TagSplitter, pieces: Iterator[bytes | memoryview], mac: _MacPipe | None = None
) -> Iterator[bytes]:
    """Plaintext of a blob's authenticated bytes (prefix first); with ``mac``, checks the tag before the end."""
    head = bytearray()
    decoder: _Decoder | None = None
    try:
        for piece in pieces:
            if mac is not None:
                mac.update(piece)
            if decoder is None:
                need = PREFIX_LEN - len(head)
                head += piece[:need]
                piece = piece[need:]
                if len(head) < PREFIX_LEN:
                    continue
                decoder = _Decoder(keys, head)
            if len(piece):
                yield from decoder.feed(piece)
        if mac is not None:
            _check_tag(splitter, mac)
        if decoder is None:
            raise _too_short(splitter.length)
        yield from decoder.finish()
    finally:
        if decoder is not None:
            decoder.close()


def _check_tag(splitter: _TagSplitter, mac: _MacPipe) -> None:
    if splitter.length < MIN_BLOB_LEN:
        raise _too_short(splitter.length)
    check_tag(mac, splitter.tag)
