"""The libgcrypt Twofish-CTR backend: one library call per buffer, through ctypes.

ctypes drops the GIL for the call, so two threads encrypt on two cores.
Opened cipher handles are pooled per key, so a new stream costs one
``setctr``; a big buffer is cut in two and the halves encrypted on two
threads. Before libgcrypt initialises, ``gcrypt_hwf`` decides whether it may
use its AVX2 ``vpgather`` Twofish.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

from fogsync.errors import FogsyncError
from fogsync.format.cipher_base import (
    BLOCK_LEN,
    COUNTER_MOD,
    KAT_256,
    Buffer,
    LoadedOnce,
    writable_view,
)
from fogsync.platform import gcrypt_hwf
from fogsync.platform.threads import SharedPool

_GCRY_CIPHER_TWOFISH = 10  # 256-bit key
_GCRY_CIPHER_TWOFISH128 = 303
_GCRY_CIPHER_MODE_CTR = 6
_GCRY_CIPHER_MODE_ECB = 1
KEY_LENS = {32: _GCRY_CIPHER_TWOFISH, 16: _GCRY_CIPHER_TWOFISH128}

_POOL_KEYS = 16  # distinct keys whose idle handles are kept
_POOL_PER_KEY = 8  # idle handles kept per key (about one per thread)


class Library:
    """The loaded libgcrypt with typed entry points.

    ``vpgather`` says whether libgcrypt was left free to use its AVX2 vpgather
    Twofish, ``vpgather_source`` why ("env", "no-avx2", "cache", "measured",
    "failed"); ``hw_features`` lists what libgcrypt then enabled.
    """

    def __init__(self) -> None:
        name = ctypes.util.find_library("gcrypt") or "libgcrypt.so.20"
        lib = ctypes.CDLL(name)
        choice = gcrypt_hwf.decide(name)
        # Must precede gcry_check_version, which detects the hardware features once.
        if not choice.vpgather and not gcrypt_hwf.disable_vpgather(lib):
            choice = gcrypt_hwf.Choice(True, "failed")
        self.vpgather, self.vpgather_source = choice.vpgather, choice.source
        lib.gcry_check_version.argtypes = [ctypes.c_char_p]
        lib.gcry_check_version.restype = ctypes.c_char_p
        version = lib.gcry_check_version(None)
        if not version:
            raise OSError("gcry_check_version failed")
        self.version = version.decode()
        self.hw_features = gcrypt_hwf.hw_features(lib)
        self._declare(lib)
        self.lib = lib
        handle = self.open(bytes(32), _GCRY_CIPHER_MODE_ECB)
        block = bytearray(BLOCK_LEN)
        try:
            self.encrypt_inplace(handle, memoryview(block))
        finally:
            lib.gcry_cipher_close(handle)
        if block != KAT_256:
            raise OSError("libgcrypt Twofish fails its known-answer test")

    @staticmethod
    def _declare(lib: ctypes.CDLL) -> None:
        handle, size, ptr, err = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_uint
        table = {
            "gcry_cipher_open": ([ctypes.POINTER(handle), ctypes.c_int, ctypes.c_int, ctypes.c_uint], err),
            "gcry_cipher_close": ([handle], None),
            "gcry_cipher_setkey": ([handle, ptr, size], err),
            "gcry_cipher_setctr": ([handle, ptr, size], err),
            "gcry_cipher_encrypt": ([handle, ptr, size, ptr, size], err),
            "gcry_strerror": ([err], ctypes.c_char_p),
        }
        for name, (argtypes, restype) in table.items():
            func = getattr(lib, name)
            func.argtypes = argtypes
            func.restype = restype

    def check(self, rc: int, what: str) -> None:
        if rc:
            reason = (self.lib.gcry_strerror(rc) or b"unknown error").decode(errors="replace")
            raise FogsyncError(f"libgcrypt {what} failed: {reason} (code {rc})")

    def open(self, key: bytes, mode: int) -> ctypes.c_void_p:
        algo = KEY_LENS.get(len(key))
        if algo is None:
            raise FogsyncError(f"libgcrypt Twofish takes 16- or 32-byte keys, not {len(key)}")
        handle = ctypes.c_void_p()
        self.check(self.lib.gcry_cipher_open(ctypes.byref(handle), algo, mode, 0), "cipher_open")
        rc = self.lib.gcry_cipher_setkey(handle, key, len(key))
        if rc:
            self.lib.gcry_cipher_close(handle)
            self.check(rc, "cipher_setkey")
        return handle

    def encrypt_inplace(self, handle: ctypes.c_void_p, view: memoryview) -> None:
        n = len(view)
        if n == 0:
            return
        cbuf = ctypes.c_char.from_buffer(view)
        try:
            rc = self.lib.gcry_cipher_encrypt(handle, ctypes.addressof(cbuf), n, None, 0)
        finally:
            del cbuf
        self.check(rc, "cipher_encrypt")


# The libgcrypt binding, loaded once; calling it raises FogsyncError if it is unavailable.
library = LoadedOnce(Library, (OSError, AttributeError, FogsyncError), "libgcrypt")


class _HandlePool:
    """Idle CTR handles with their key already set, so a stream starts with one setctr."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[bytes, list[ctypes.c_void_p]] = {}

    def take(self, gc: Library, key: bytes) -> ctypes.c_void_p:
        with self._lock:
            handles = self._idle.get(key)
            if handles:
                return handles.pop()
        return gc.open(key, _GCRY_CIPHER_MODE_CTR)

    def give(self, gc: Library, key: bytes, handle: ctypes.c_void_p) -> None:
        with self._lock:
            handles = self._idle.get(key)
            if handles is None:
                evicted = self._evict_one() if len(self._idle) >= _POOL_KEYS else []
                handles = self._idle[key] = []
            else:
                evicted = []
            if len(handles) < _POOL_PER_KEY:
                handles.append(handle)
            else:
                evicted.append(handle)
        for old in evicted:
            gc.lib.gcry_cipher_close(old)

    def _evict_one(self) -> list[ctypes.c_void_p]:
        """Drop the key pooled longest ago (dicts keep insertion order)."""
        return self._idle.pop(next(iter(self._idle)))


_pool = _HandlePool()


def _new_pool_after_fork() -> None:
    """A forked child starts with an empty pool: its lock may have been held at fork time."""
    global _pool
    _pool = _HandlePool()


os.register_at_fork(after_in_child=_new_pool_after_fork)


SPLIT_MIN = 512 * 1024  # a whole-block buffer at least this big is encrypted on two threads
_splitter = SharedPool(1, "fogsync-ctr")


class GcryptCTR:
    """libgcrypt CTR stream. libgcrypt itself keeps a partly used keystream block.

    A big buffer that starts and ends on block boundaries is cut in two and
    the second half encrypted on another thread with its own handle set to
    the counter there (CTR blocks are independent; ctypes releases the GIL).
    """

    __slots__ = ("_gc", "_handle", "_key", "_counter0", "_done")

    def __init__(self, key: bytes, counter0: int) -> None:
        self._gc = library()
        self._key = bytes(key)
        self._counter0 = counter0
        self._done = 0
        self._handle: ctypes.c_void_p | None = _pool.take(self._gc, self._key)
        rc = self._gc.lib.gcry_cipher_setctr(self._handle, counter0.to_bytes(16, "big"), 16)
        if rc:
            self.close()
            self._gc.check(rc, "cipher_setctr")

    def xor(self, data: Buffer) -> bytes:
        out = bytearray(data)
        self.xor_into(out)
        return bytes(out)

    def xor_into(self, buf: bytearray | memoryview) -> None:
        if self._handle is None:
            raise ValueError("Twofish-CTR stream is closed")
        view = writable_view(buf)
        if len(view) >= SPLIT_MIN and (self._done | len(view)) % 16 == 0:
            self._xor_in_halves(view)
        else:
            self._gc.encrypt_inplace(self._handle, view)
        self._done += len(view)

    def _xor_in_halves(self, view: memoryview) -> None:
        half = len(view) // 32 * 16
        counter = (self._counter0 + (self._done + half) // BLOCK_LEN) % COUNTER_MOD
        second = _splitter().submit(xor_at, self._key, counter, view[half:])
        try:
            self._gc.encrypt_inplace(self._handle, view[:half])
        finally:
            second.result()
        self._set_counter(self._handle, self._done + len(view))

    def _set_counter(self, handle: ctypes.c_void_p, offset: int) -> None:
        """Point ``handle`` at the keystream block ``offset`` bytes (a whole number of blocks) in."""
        counter = (self._counter0 + offset // 16) % COUNTER_MOD
        self._gc.check(self._gc.lib.gcry_cipher_setctr(handle, counter.to_bytes(16, "big"), 16), "cipher_setctr")

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            _pool.give(self._gc, self._key, handle)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and not sys.is_finalizing():
            self._gc.lib.gcry_cipher_close(handle)


def encrypt_block(key: bytes, block: bytes) -> bytes:
    gc = library()
    handle = gc.open(key, _GCRY_CIPHER_MODE_ECB)
    try:
        out = bytearray(block)
        gc.encrypt_inplace(handle, memoryview(out))
        return bytes(out)
    finally:
        gc.lib.gcry_cipher_close(handle)


def xor_at(key: bytes, counter: int, view: memoryview) -> None:
    """XOR ``view`` in place with the keystream from counter block ``counter`` on, in this thread."""
    gc = library()
    handle = _pool.take(gc, key)
    try:
        gc.check(gc.lib.gcry_cipher_setctr(handle, counter.to_bytes(16, "big"), 16), "cipher_setctr")
        gc.encrypt_inplace(handle, view)
    finally:
        _pool.give(gc, key, handle)
