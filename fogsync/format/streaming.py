"""Sealing and opening a blob that arrives or leaves in pieces.

``seal_stream`` encrypts and MACs a stream piece by piece; ``verify_blob``
checks a whole blob's tag, ``decrypt_blob`` decrypts one already verified,
and ``open_stream`` does both in one pass (its caller keeps the plaintext
hidden until the tag verifies). Big pieces overlap the cipher in this
thread with the HMAC on a worker (``layout.MacPipe``). No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fogsync.errors import FormatError
from fogsync.format.cipher import twofish_ctr
from fogsync.format.keys import ShareKeys
from fogsync.format.layout import (
    COMP_GZIP,
    COMP_NONE,
    MIN_BLOB_LEN,
    NONCE_LEN,
    PREFIX_LEN,
    TAG_LEN,
    Gunzip,
    MacPipe,
    check_header,
    check_tag,
    counter0,
    fresh_nonce,
    gzip_compressor,
    header,
    too_short,
)

PIPE_CHUNK = 1 << 20  # seal_stream encrypts and MACs in pieces of at most this


def _settled(pieces: Iterable[bytes | memoryview], mac: MacPipe) -> Iterator[bytes | memoryview]:
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
    nonce = fresh_nonce(nonce)
    prefix = nonce + header(COMP_GZIP if compress else COMP_NONE)
    source = _pieces(_compressed(chunks)) if compress else _pieces(chunks)
    mac = MacPipe(keys.new_mac(prefix))
    stream = twofish_ctr(keys.cipher, counter0(nonce))
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
        raise too_short(splitter.length)
    check_tag(mac, splitter.tag)
    return check_header(head[NONCE_LEN:])


class _Decoder:
    """Decrypts the ciphertext of one blob whose prefix is known, then gunzips it if needed."""

    def __init__(self, keys: ShareKeys, prefix: bytes | bytearray) -> None:
        compression = check_header(prefix[NONCE_LEN:PREFIX_LEN])
        self._gunzip = Gunzip() if compression == COMP_GZIP else None
        self._stream = twofish_ctr(keys.cipher, counter0(prefix))

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
    mac = MacPipe(keys.new_mac())
    pieces = _settled(splitter.authenticated(chunks), mac)
    try:
        yield from _decrypted(keys, splitter, pieces, mac)
    except FormatError:
        for piece in pieces:
            mac.update(piece)
        _check_tag(splitter, mac)
        raise


def _decrypted(
    keys: ShareKeys, splitter: _TagSplitter, pieces: Iterator[bytes | memoryview], mac: MacPipe | None = None
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
            raise too_short(splitter.length)
        yield from decoder.finish()
    finally:
        if decoder is not None:
            decoder.close()


def _check_tag(splitter: _TagSplitter, mac: MacPipe) -> None:
    if splitter.length < MIN_BLOB_LEN:
        raise too_short(splitter.length)
    check_tag(mac, splitter.tag)

