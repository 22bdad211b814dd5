"""Share keys and sealed blobs (FORMAT.md sections 1 and 2). Pure computation, no I/O.

A sealed blob is ``nonce(24) || header(8) || ciphertext || tag(32)``: the
plaintext, optionally gzipped, encrypted with Twofish-CTR under ``Kc`` (first
counter block = ``nonce[0:16]``), then authenticated with HMAC-SHA256 under
``Km`` over everything before the tag (encrypt-then-MAC).

Readers check the tag first, in constant time, and only then look at the
header: a damaged blob is an ``IntegrityError``; a blob that verifies but
uses a header value this implementation does not know is a ``FormatError``.
Messages are short; callers add which block or file they were reading.
This module seals and opens a whole blob in one call and is the front of
the three modules behind it, whose names it re-exports: ``keys`` (the
share key and its subkeys), ``layout`` (the blob's sizes, header, tag
check, gzip, the HMAC fed on a worker) and ``streaming`` (sealing and
opening a blob in pieces).
"""

from __future__ import annotations

from fogsync.format.cipher import twofish_ctr
from fogsync.format.keys import (
    HKDF_INFO_CIPHER,
    HKDF_INFO_MAC,
    KEY_LEN,
    SHARE_ID_LEN,
    SHARE_ID_PREFIX,
    ShareKeys,
    hkdf_sha256,
    parse_key,
)
from fogsync.format.layout import (
    COMP_GZIP,
    COMP_NONE,
    GZIP_BACKEND,
    GZIP_LEVEL,
    HEADER_FIELDS,
    HEADER_LEN,
    MIN_BLOB_LEN,
    NONCE_LEN,
    PREFIX_LEN,
    PROBE_LEN,
    PROBE_RATIO,
    TAG_LEN,
    MacPipe,
    blob_prefix,
    check_header,
    check_tag,
    counter0,
    fresh_nonce,
    gunzip_all,
    gzip_bytes,
    gzip_compressor,
    header,
    is_uncompressed,
    probe_compressible,
    too_short,
)
from fogsync.format.streaming import (
    PIPE_CHUNK,
    decrypt_blob,
    open_stream,
    seal_stream,
    verify_blob,
)

__all__ = [
    "COMP_GZIP", "COMP_NONE", "GZIP_BACKEND", "GZIP_LEVEL", "HEADER_FIELDS", "HEADER_LEN", "HKDF_INFO_CIPHER",
    "HKDF_INFO_MAC", "KEY_LEN", "MIN_BLOB_LEN", "NONCE_LEN", "PIPE_CHUNK", "PREFIX_LEN", "PROBE_LEN", "PROBE_RATIO",
    "SHARE_ID_LEN", "SHARE_ID_PREFIX", "TAG_LEN", "ShareKeys", "blob_prefix", "check_tag", "counter0",
    "decrypt_blob", "gzip_compressor", "hkdf_sha256", "is_uncompressed", "open_blob", "open_stream", "parse_key",
    "probe_compressible", "seal", "seal_small", "seal_stream", "verify_blob",
]


def seal(keys: ShareKeys, plaintext: bytes, *, compress: bool, nonce: bytes | None = None) -> bytes:
    """Seal ``plaintext`` into one blob (gzipped first when ``compress``)."""
    if len(plaintext) > 2 * PIPE_CHUNK:
        return b"".join(seal_stream(keys, (plaintext,), compress=compress, nonce=nonce))
    body = gzip_bytes(plaintext) if compress else plaintext
    return _seal_body(keys, body, COMP_GZIP if compress else COMP_NONE, nonce)


def seal_small(keys: ShareKeys, plaintext: bytes, *, try_gzip: bool, nonce: bytes | None = None) -> bytes:
    """Seal a small plaintext gzipped if gzip shrinks it below ``PROBE_RATIO``, else as it is.

    One gzip pass serves as both the probe and the compression.
    """
    if try_gzip and plaintext:
        packed = gzip_bytes(plaintext)
        if len(packed) < PROBE_RATIO * len(plaintext):
            return _seal_body(keys, packed, COMP_GZIP, nonce)
    return _seal_body(keys, plaintext, COMP_NONE, nonce)


def _seal_body(keys: ShareKeys, body: bytes, compression: int, nonce: bytes | None) -> bytes:
    nonce = fresh_nonce(nonce)
    prefix = nonce + header(compression)
    ciphertext = bytearray(body)
    stream = twofish_ctr(keys.cipher, counter0(nonce))
    try:
        stream.xor_into(ciphertext)
    finally:
        stream.close()
    mac = keys.new_mac(prefix)
    mac.update(ciphertext)
    return b"".join((prefix, ciphertext, mac.digest()))



def open_blob(keys: ShareKeys, blob: bytes) -> bytes:
    """Verify and decrypt one whole sealed blob; returns the plaintext (gunzipped).

    A big blob is MACed on a worker while this thread decrypts a copy; the
    plaintext is dropped unless the tag verifies.
    """
    if len(blob) < MIN_BLOB_LEN:
        raise too_short(len(blob))
    view = memoryview(blob).cast("B")
    end = len(view) - TAG_LEN
    mac = MacPipe(keys.new_mac())
    mac.update(view[:end])
    body = bytearray(view[PREFIX_LEN:end])
    stream = twofish_ctr(keys.cipher, counter0(view))
    try:
        stream.xor_into(body)
    finally:
        stream.close()
    check_tag(mac, view[end:])
    compression = check_header(view[NONCE_LEN:PREFIX_LEN])
    return gunzip_all(body) if compression == COMP_GZIP else bytes(body)
