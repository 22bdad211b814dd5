"""What both Twofish-CTR backends share: the stream interface and argument checks.

``cipher`` picks a backend (``cipher_gcrypt`` or ``cipher_python``); each
checks itself against ``KAT_256`` when it loads and serves streams of the
``TwofishCTR`` shape.
"""

from __future__ import annotations

from typing import Protocol

BLOCK_LEN = 16
# Twofish, 256-bit zero key, zero block (FORMAT.md section 2): each backend
# checks it when it loads, so a broken or FIPS-restricted library is skipped.
KAT_256 = bytes.fromhex("57ff739d4dc92c1bd7fc01700cc8216f")
KEY_LENS = (16, 24, 32)
COUNTER_MOD = 1 << 128

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
