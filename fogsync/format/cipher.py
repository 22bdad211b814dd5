"""Twofish in CTR mode, behind one small interface with two backends.

The store format (FORMAT.md section 2) encrypts every blob with Twofish-CTR:
keystream block i is ``Twofish(K, counter0 + i)``, the counter a 128-bit
big-endian integer that wraps modulo 2**128. This layer adds exactly that and
nothing else (no MAC, no nonce handling, no format knowledge):

- ``"gcrypt"`` (``cipher_gcrypt``): libgcrypt through ctypes, one library
  call per buffer, on two cores; cipher handles pooled per key.
- ``"python"`` (``cipher_python``): the C core of the ``twofish`` PyPI
  package, one 16-byte block at a time. Slow, but portable; it is the
  fallback when libgcrypt is missing.

This module is the front: it picks the backend and checks the arguments;
``cipher_base`` holds what both share.

Both give identical bytes. ``FOGSYNC_CIPHER=python|gcrypt`` forces a backend.
libgcrypt's Twofish takes 16- or 32-byte keys only, so 24-byte keys always
use the python backend unless a backend is named explicitly.

``FOGSYNC_GCRYPT_VPGATHER=on|off`` lets libgcrypt use its AVX2 ``vpgather``
Twofish or not (other values are ignored). Unset, the faster is measured once
per machine and cached (see ``gcrypt_hwf``): vpgather is very slow on Intel
server CPUs with the "Downfall" microcode mitigation.
"""

from __future__ import annotations

import os
from functools import lru_cache

from fogsync.errors import FogsyncError
from fogsync.format import cipher_gcrypt, cipher_python
from fogsync.format.cipher_base import (
    BLOCK_LEN,
    COUNTER_MOD,
    TwofishCTR,
    check_counter,
    check_key,
    writable_view,
)

GCRYPT = "gcrypt"
PYTHON = "python"
BACKENDS = (GCRYPT, PYTHON)
ENV_BACKEND = "FOGSYNC_CIPHER"


def _loads(backend: str) -> bool:
    try:
        (cipher_gcrypt.library if backend == GCRYPT else cipher_python.reference)()
    except FogsyncError:
        return False
    return True


def gcrypt_vpgather() -> tuple[bool, str]:
    """Whether libgcrypt may use vpgather in this process, and why (see ``cipher_gcrypt.Library``)."""
    gc = cipher_gcrypt.library()
    return gc.vpgather, gc.vpgather_source


def available_backends() -> list[str]:
    """The backends that load on this host, fastest first."""
    return [name for name in BACKENDS if _loads(name)]


@lru_cache(maxsize=1)
def default_backend() -> str:
    """``FOGSYNC_CIPHER`` if set, else "gcrypt" when libgcrypt loads, else "python".

    Decided once per process (call ``default_backend.cache_clear()`` to re-read
    the environment).
    """
    forced = os.environ.get(ENV_BACKEND, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise FogsyncError(f"{ENV_BACKEND} must be 'gcrypt' or 'python', not {forced!r}")
        return forced
    return GCRYPT if _loads(GCRYPT) else PYTHON


def _resolve(key: bytes, backend: str | None) -> str:
    if backend is None:
        chosen = default_backend()
        return PYTHON if len(key) not in cipher_gcrypt.KEY_LENS else chosen
    if backend not in BACKENDS:
        raise ValueError(f"unknown cipher backend {backend!r} (expected one of {BACKENDS})")
    return backend


def twofish_ctr(key: bytes, counter0: int, backend: str | None = None) -> TwofishCTR:
    """A Twofish-CTR stream whose first counter block is ``counter0``."""
    check_key(key)
    check_counter(counter0)
    if _resolve(key, backend) == GCRYPT:
        return cipher_gcrypt.GcryptCTR(key, counter0)
    return cipher_python.PythonCTR(key, counter0)


def xor_at(key: bytes, counter0: int, offset: int, buf: bytearray | memoryview, backend: str | None = None) -> None:
    """XOR ``buf`` in place with the keystream from byte ``offset`` on, in this thread only.

    ``offset`` must be a whole number of blocks. CTR blocks are independent, so
    callers that are parallel already (a chunk per thread) encrypt any chunk
    of a stream without the stream's own two-thread split.
    """
    check_key(key)
    check_counter(counter0)
    if offset % BLOCK_LEN:
        raise ValueError("xor_at needs an offset that is a whole number of 16-byte blocks")
    counter = (counter0 + offset // BLOCK_LEN) % COUNTER_MOD
    view = writable_view(buf)
    backend_module = cipher_gcrypt if _resolve(key, backend) == GCRYPT else cipher_python
    backend_module.xor_at(bytes(key), counter, view)


def encrypt_block(key: bytes, block: bytes, backend: str | None = None) -> bytes:
    """One raw Twofish block encryption (ECB), for known-answer tests."""
    check_key(key)
    if len(block) != BLOCK_LEN:
        raise ValueError("a Twofish block is 16 bytes")
    if _resolve(key, backend) == GCRYPT:
        return cipher_gcrypt.encrypt_block(key, block)
    return cipher_python.encrypt_block(key, block)
