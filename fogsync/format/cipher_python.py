"""The portable Twofish-CTR backend: the ``twofish`` package's C core, one block a call.

Niels Ferguson's reference code from the ``twofish`` PyPI package, loaded
with ctypes and driven one 16-byte block at a time. Slow, but portable: the
fallback where libgcrypt is missing. Its own twofish.py uses
imp.find_module (gone in Python 3.12), so it is never imported; the same
three C functions are declared here instead.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import sys

from fogsync.format.cipher_base import (
    BLOCK_LEN,
    COUNTER_MOD,
    KAT_256,
    Buffer,
    LoadedOnce,
    writable_view,
)

_TWOFISH_KEY_STRUCT = 4 * 4 * 256 + 4 * 40  # uint32 s[256][4]; uint32 K[40]


def _find_twofish_extension() -> str:
    spec = importlib.util.find_spec("_twofish")
    if spec is not None and spec.origin and os.path.isfile(spec.origin):
        return spec.origin
    for entry in sys.path:
        for pattern in ("_twofish*.so", "_twofish*.pyd"):
            found = sorted(glob.glob(os.path.join(entry or ".", pattern)))
            if found:
                return found[0]
    raise OSError("the twofish package's _twofish extension was not found")


class Reference:
    """The reference Twofish library with typed entry points."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(_find_twofish_extension())
        lib.exp_Twofish_initialise.argtypes = []
        lib.exp_Twofish_initialise.restype = None
        lib.exp_Twofish_prepare_key.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
        lib.exp_Twofish_prepare_key.restype = None
        lib.exp_Twofish_encrypt.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        lib.exp_Twofish_encrypt.restype = None
        lib.exp_Twofish_initialise()
        self.lib = lib
        out = ctypes.create_string_buffer(BLOCK_LEN)
        lib.exp_Twofish_encrypt(self.prepare(bytes(32)), bytes(BLOCK_LEN), out)
        if out.raw != KAT_256:
            raise OSError("the twofish package's library fails its known-answer test")

    def prepare(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        schedule = ctypes.create_string_buffer(_TWOFISH_KEY_STRUCT)
        self.lib.exp_Twofish_prepare_key(key, len(key), schedule)
        return schedule


# The portable Twofish core, loaded once; calling it raises FogsyncError if it is unavailable.
reference = LoadedOnce(Reference, (OSError, AttributeError), "the python Twofish backend")


class PythonCTR:
    """CTR mode over the reference block function, one ctypes call per block."""

    __slots__ = ("_counter", "_encrypt", "_schedule", "_spare")

    def __init__(self, key: bytes, counter0: int) -> None:
        ref = reference()
        self._encrypt = ref.lib.exp_Twofish_encrypt
        self._schedule: ctypes.Array[ctypes.c_char] | None = ref.prepare(bytes(key))
        self._counter = counter0
        self._spare = b""

    def _keystream(self, n: int) -> bytes:
        if self._schedule is None:
            raise ValueError("Twofish-CTR stream is closed")
        spare = self._spare
        blocks = -(-(n - len(spare)) // BLOCK_LEN)
        if blocks <= 0:
            self._spare = spare[n:]
            return spare[:n]
        out = ctypes.create_string_buffer(blocks * BLOCK_LEN)
        base = ctypes.addressof(out)
        encrypt, schedule, counter = self._encrypt, self._schedule, self._counter
        for offset in range(0, blocks * BLOCK_LEN, BLOCK_LEN):
            encrypt(schedule, counter.to_bytes(16, "big"), base + offset)
            counter = (counter + 1) % COUNTER_MOD
        self._counter = counter
        stream = spare + out.raw
        self._spare = stream[n:]
        return stream[:n]

    def xor(self, data: Buffer) -> bytes:
        n = len(memoryview(data).cast("B"))
        if n == 0:
            return b""
        mixed = int.from_bytes(data, "big") ^ int.from_bytes(self._keystream(n), "big")
        return mixed.to_bytes(n, "big")

    def xor_into(self, buf: bytearray | memoryview) -> None:
        view = writable_view(buf)
        view[:] = self.xor(view)

    def close(self) -> None:
        if self._schedule is not None:
            ctypes.memset(self._schedule, 0, _TWOFISH_KEY_STRUCT)
        self._schedule = None
        self._spare = b""


def encrypt_block(key: bytes, block: bytes) -> bytes:
    ref = reference()
    out = ctypes.create_string_buffer(BLOCK_LEN)
    ref.lib.exp_Twofish_encrypt(ref.prepare(key), bytes(block), out)
    return out.raw


def xor_at(key: bytes, counter: int, view: memoryview) -> None:
    """XOR ``view`` in place with the keystream from counter block ``counter`` on."""
    stream = PythonCTR(key, counter)
    try:
        stream.xor_into(view)
    finally:
        stream.close()
