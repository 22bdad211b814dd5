"""Twofish in CTR mode, behind one small interface with two backends.

The store format (FORMAT.md section 2) encrypts every blob with Twofish-CTR:
keystream block i is ``Twofish(K, counter0 + i)``, the counter a 128-bit
big-endian integer that wraps modulo 2**128. This layer adds exactly that and
nothing else (no MAC, no nonce handling, no format knowledge):

- ``"gcrypt"``: libgcrypt through ctypes, one library call per buffer. ctypes
  drops the GIL for the call, so two threads encrypt on two cores. Opened
  cipher handles are pooled per key: a new stream costs one ``setctr``.
- ``"python"``: the C core of the ``twofish`` PyPI package (Niels Ferguson's
  reference code), loaded with ctypes and driven one 16-byte block at a time.
  Slow, but portable; it is the fallback when libgcrypt is missing.

Both give identical bytes. ``FOGSYNC_CIPHER=python|gcrypt`` forces a backend.
libgcrypt's Twofish takes 16- or 32-byte keys only, so 24-byte keys always
use the python backend unless a backend is named explicitly.

``FOGSYNC_GCRYPT_VPGATHER=on|off`` lets libgcrypt use its AVX2 ``vpgather``
Twofish or not (other values are ignored). Unset, the faster is measured once
per machine and cached (see ``gcrypt_hwf``): vpgather is very slow on Intel
server CPUs with the "Downfall" microcode mitigation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Protocol

from fogsync.errors import FogsyncError
from fogsync.platform import gcrypt_hwf

BLOCK_LEN = 16
# Twofish, 256-bit zero key, zero block (FORMAT.md section 2): each backend
# checks it when it loads, so a broken or FIPS-restricted library is skipped.
_KAT_256 = bytes.fromhex("57ff739d4dc92c1bd7fc01700cc8216f")
KEY_LENS = (16, 24, 32)
COUNTER_MOD = 1 << 128

GCRYPT = "gcrypt"
PYTHON = "python"
BACKENDS = (GCRYPT, PYTHON)
ENV_BACKEND = "FOGSYNC_CIPHER"

Buffer = bytes | bytearray | memoryview


class TwofishCTR(Protocol):
    """A Twofish-CTR keystream that continues across calls.

    A stream belongs to one thread at a time; separate streams run in parallel.
    """

    def xor(self, data: Buffer) -> bytes:
        """Return ``data`` XOR the next ``len(data)`` keystream bytes."""
        ...

    def xor_into(self, buf: bytearray | memoryview) -> None:
        """XOR the next ``len(buf)`` keystream bytes into a writable buffer."""
        ...

    def close(self) -> None:
        """Release the stream's resources; it cannot be used afterwards."""
        ...


def _check_key(key: bytes) -> None:
    if len(key) not in KEY_LENS:
        raise ValueError(f"Twofish key must be 16, 24 or 32 bytes, not {len(key)}")


def _check_counter(counter0: int) -> None:
    if not 0 <= counter0 < COUNTER_MOD:
        raise ValueError("counter0 must be a 128-bit unsigned integer")


def _writable_view(buf: bytearray | memoryview) -> memoryview:
    view = memoryview(buf)
    if view.readonly or not view.c_contiguous:
        raise TypeError("xor_into needs a writable, contiguous buffer")
    return view.cast("B")


# --------------------------------------------------------------------------
# libgcrypt backend

_GCRY_CIPHER_TWOFISH = 10  # 256-bit key
_GCRY_CIPHER_TWOFISH128 = 303
_GCRY_CIPHER_MODE_CTR = 6
_GCRY_CIPHER_MODE_ECB = 1
_GCRYPT_KEY_LENS = {32: _GCRY_CIPHER_TWOFISH, 16: _GCRY_CIPHER_TWOFISH128}

_POOL_KEYS = 16  # distinct keys whose idle handles are kept
_POOL_PER_KEY = 8  # idle handles kept per key (about one per thread)


class _Gcrypt:
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
        if block != _KAT_256:
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
        algo = _GCRYPT_KEY_LENS.get(len(key))
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


_gcrypt_lock = threading.Lock()
_gcrypt_state: list[_Gcrypt | BaseException] = []


def _gcrypt() -> _Gcrypt:
    """The libgcrypt binding, loaded once; raises FogsyncError if unavailable."""
    if not _gcrypt_state:
        with _gcrypt_lock:
            if not _gcrypt_state:
                try:
                    _gcrypt_state.append(_Gcrypt())
                except (OSError, AttributeError, FogsyncError) as exc:
                    _gcrypt_state.append(exc)
    state = _gcrypt_state[0]
    if isinstance(state, BaseException):
        raise FogsyncError(f"libgcrypt is not available: {state}")
    return state


class _HandlePool:
    """Idle CTR handles with their key already set, so a stream starts with one setctr."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[bytes, list[ctypes.c_void_p]] = {}

    def take(self, gc: _Gcrypt, key: bytes) -> ctypes.c_void_p:
        with self._lock:
            handles = self._idle.get(key)
            if handles:
                return handles.pop()
        return gc.open(key, _GCRY_CIPHER_MODE_CTR)

    def give(self, gc: _Gcrypt, key: bytes, handle: ctypes.c_void_p) -> None:
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

    def clear(self) -> None:
        """Close every idle handle (tests and long-lived daemons may call it)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        if idle:
            gc = _gcrypt()
            for handles in idle.values():
                for handle in handles:
                    gc.lib.gcry_cipher_close(handle)


_pool = _HandlePool()


def _new_pool_after_fork() -> None:
    """A forked child starts with an empty pool: its lock may have been held at fork time."""
    global _pool
    _pool = _HandlePool()


os.register_at_fork(after_in_child=_new_pool_after_fork)


def clear_handle_pool() -> None:
    """Close the pooled libgcrypt handles (they hold key schedules)."""
    _pool.clear()


SPLIT_MIN = 512 * 1024  # a whole-block buffer at least this big is encrypted on two threads
_split_lock = threading.Lock()
_split_pool: list[ThreadPoolExecutor] = []


def _splitter() -> ThreadPoolExecutor:
    with _split_lock:
        if not _split_pool:
            _split_pool.append(ThreadPoolExecutor(1, thread_name_prefix="fogsync-ctr"))
        return _split_pool[0]


class _GcryptCTR:
    """libgcrypt CTR stream. libgcrypt itself keeps a partly used keystream block.

    A big buffer that starts and ends on block boundaries is cut in two and
    the second half encrypted on another thread with its own handle set to
    the counter there (CTR blocks are independent; ctypes releases the GIL).
    """

    __slots__ = ("_gc", "_handle", "_key", "_counter0", "_done")

    def __init__(self, key: bytes, counter0: int) -> None:
        self._gc = _gcrypt()
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
        view = _writable_view(buf)
        if len(view) >= SPLIT_MIN and (self._done | len(view)) % 16 == 0:
            self._xor_in_halves(view)
        else:
            self._gc.encrypt_inplace(self._handle, view)
        self._done += len(view)

    def _xor_in_halves(self, view: memoryview) -> None:
        half = len(view) // 32 * 16
        second = _splitter().submit(xor_at, self._key, self._counter0, self._done + half, view[half:], GCRYPT)
        try:
            self._gc.encrypt_inplace(self._handle, view[:half])
        finally:
            second.result()
        self._set_counter(self._handle, self._done + len(view))

    def _set_counter(self, handle: ctypes.c_void_p, offset: int) -> None:
        """Point ``handle`` at the keystream block ``offset`` bytes (a whole number of blocks) in."""
        counter = (self._counter0 + offset // 16) % (1 << 128)
        self._gc.check(self._gc.lib.gcry_cipher_setctr(handle, counter.to_bytes(16, "big"), 16), "cipher_setctr")

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            _pool.give(self._gc, self._key, handle)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and not sys.is_finalizing():
            self._gc.lib.gcry_cipher_close(handle)


def _gcrypt_encrypt_block(key: bytes, block: bytes) -> bytes:
    gc = _gcrypt()
    handle = gc.open(key, _GCRY_CIPHER_MODE_ECB)
    try:
        out = bytearray(block)
        gc.encrypt_inplace(handle, memoryview(out))
        return bytes(out)
    finally:
        gc.lib.gcry_cipher_close(handle)


# --------------------------------------------------------------------------
# Portable backend: the `twofish` package's C core, called through ctypes.
# Its own twofish.py uses imp.find_module (gone in Python 3.12), so it is never
# imported; the same three C functions are declared here instead.

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


class _RefTwofish:
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
        if out.raw != _KAT_256:
            raise OSError("the twofish package's library fails its known-answer test")

    def prepare(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        schedule = ctypes.create_string_buffer(_TWOFISH_KEY_STRUCT)
        self.lib.exp_Twofish_prepare_key(key, len(key), schedule)
        return schedule


_ref_lock = threading.Lock()
_ref_state: list[_RefTwofish | BaseException] = []


def _ref() -> _RefTwofish:
    """The portable Twofish core, loaded once; raises FogsyncError if unavailable."""
    if not _ref_state:
        with _ref_lock:
            if not _ref_state:
                try:
                    _ref_state.append(_RefTwofish())
                except (OSError, AttributeError) as exc:
                    _ref_state.append(exc)
    state = _ref_state[0]
    if isinstance(state, BaseException):
        raise FogsyncError(f"the python Twofish backend is not available: {state}")
    return state


class _PythonCTR:
    """CTR mode over the reference block function, one ctypes call per block."""

    __slots__ = ("_counter", "_encrypt", "_schedule", "_spare")

    def __init__(self, key: bytes, counter0: int) -> None:
        ref = _ref()
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
        view = _writable_view(buf)
        view[:] = self.xor(view)

    def close(self) -> None:
        if self._schedule is not None:
            ctypes.memset(self._schedule, 0, _TWOFISH_KEY_STRUCT)
        self._schedule = None
        self._spare = b""


def _python_encrypt_block(key: bytes, block: bytes) -> bytes:
    ref = _ref()
    out = ctypes.create_string_buffer(BLOCK_LEN)
    ref.lib.exp_Twofish_encrypt(ref.prepare(key), bytes(block), out)
    return out.raw


# --------------------------------------------------------------------------
# Backend selection and the public functions


def _loads(backend: str) -> bool:
    try:
        (_gcrypt if backend == GCRYPT else _ref)()
    except FogsyncError:
        return False
    return True


def gcrypt_vpgather() -> tuple[bool, str]:
    """Whether libgcrypt may use vpgather in this process, and why (see ``_Gcrypt``)."""
    gc = _gcrypt()
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
        return PYTHON if len(key) not in _GCRYPT_KEY_LENS else chosen
    if backend not in BACKENDS:
        raise ValueError(f"unknown cipher backend {backend!r} (expected one of {BACKENDS})")
    return backend


def twofish_ctr(key: bytes, counter0: int, backend: str | None = None) -> TwofishCTR:
    """A Twofish-CTR stream whose first counter block is ``counter0``."""
    _check_key(key)
    _check_counter(counter0)
    if _resolve(key, backend) == GCRYPT:
        return _GcryptCTR(key, counter0)
    return _PythonCTR(key, counter0)


def xor_at(key: bytes, counter0: int, offset: int, buf: bytearray | memoryview, backend: str | None = None) -> None:
    """XOR ``buf`` in place with the keystream from byte ``offset`` on, in this thread only.

    ``offset`` must be a whole number of blocks. CTR blocks are independent, so
    callers that are parallel already (a chunk per thread) encrypt any chunk
    of a stream without the stream's own two-thread split.
    """
    _check_key(key)
    _check_counter(counter0)
    if offset % BLOCK_LEN:
        raise ValueError("xor_at needs an offset that is a whole number of 16-byte blocks")
    counter = (counter0 + offset // BLOCK_LEN) % COUNTER_MOD
    view = _writable_view(buf)
    if _resolve(key, backend) != GCRYPT:
        stream = _PythonCTR(key, counter)
        try:
            stream.xor_into(view)
        finally:
            stream.close()
        return
    gc = _gcrypt()
    handle = _pool.take(gc, bytes(key))
    try:
        gc.check(gc.lib.gcry_cipher_setctr(handle, counter.to_bytes(16, "big"), 16), "cipher_setctr")
        gc.encrypt_inplace(handle, view)
    finally:
        _pool.give(gc, bytes(key), handle)


def encrypt_block(key: bytes, block: bytes, backend: str | None = None) -> bytes:
    """One raw Twofish block encryption (ECB), for known-answer tests."""
    _check_key(key)
    if len(block) != BLOCK_LEN:
        raise ValueError("a Twofish block is 16 bytes")
    if _resolve(key, backend) == GCRYPT:
        return _gcrypt_encrypt_block(key, block)
    return _python_encrypt_block(key, block)
