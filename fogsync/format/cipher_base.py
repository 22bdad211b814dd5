"""What both Twofish-CTR backends share: the stream interface and argument checks.

``cipher`` picks a backend (``cipher_gcrypt`` or ``cipher_python``); each
checks itself against ``KAT_256`` when it loads and serves streams of the
``TwofishCTR`` shape.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, Protocol, TypeVar

from fogsync.errors import FogsyncError

BLOCK_LEN = 16
# Twofish, 256-bit zero key, zero block (FORMAT.md section 2): each backend
# checks it when it loads, so a broken or FIPS-restricted library is skipped.
KAT_256 = bytes.fromhex("57ff739d4dc92c1bd7fc01700cc8216f")
KEY_LENS = (16, 24, 32)
COUNTER_MOD = 1 << 128

Buffer = bytes | bytearray | memoryview
T = TypeVar("T")


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


def check_key(key: bytes) -> None:
    """Refuse a key Twofish does not take."""
    if len(key) not in KEY_LENS:
        raise ValueError(f"Twofish key must be 16, 24 or 32 bytes, not {len(key)}")


def check_counter(counter0: int) -> None:
    """Refuse a first counter block that is not a 128-bit unsigned integer."""
    if not 0 <= counter0 < COUNTER_MOD:
        raise ValueError("counter0 must be a 128-bit unsigned integer")


def writable_view(buf: bytearray | memoryview) -> memoryview:
    """``buf`` as a flat byte view that can be written in place."""
    view = memoryview(buf)
    if view.readonly or not view.c_contiguous:
        raise TypeError("xor_into needs a writable, contiguous buffer")
    return view.cast("B")


class LoadedOnce(Generic[T]):
    """A backend's library, loaded on first use, once per process: calling gives it.

    A load that fails with one of ``errors`` is remembered, and every call
    raises FogsyncError saying that ``what`` is not available and why.
    """

    def __init__(self, load: Callable[[], T], errors: tuple[type[BaseException], ...], what: str) -> None:
        self._load, self._errors, self._what = load, errors, what
        self._lock = threading.Lock()
        self._state: list[T | BaseException] = []

    def __call__(self) -> T:
        if not self._state:
            with self._lock:
                if not self._state:
                    try:
                        self._state.append(self._load())
                    except self._errors as exc:
                        self._state.append(exc)
        state = self._state[0]
        if isinstance(state, BaseException):
            raise FogsyncError(f"{self._what} is not available: {state}")
        return state
