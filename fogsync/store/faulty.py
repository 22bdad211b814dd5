"""A store that fails on purpose: the seam tests inject store faults through.

``FaultyStore(inner)`` behaves as ``inner`` until told otherwise;
``fail_on(op, error, ...)`` makes chosen calls raise instead, the way a full
disk, a dropped connection or a refusing server would. Tests use it instead
of patching a backend's private functions, so the engine meets a fault
only through the store contract, as it would in use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from fogsync.store.base import ObjectInfo, Store, Versioned
from fogsync.store.wrapper import Wrapper

__all__ = ["FaultyStore", "OPERATIONS"]

OPERATIONS = ("get", "put", "exists", "list", "list_objects", "delete", "get_versioned", "put_if", "flush")


@dataclass
class _Fault:
    op: str
    error: Callable[[str], Exception]
    after: int  # calls that match and still succeed before the first failure
    times: int | None  # failures before the fault is spent; None: every time
    key_contains: str
    landed: bool = False  # the call reaches the inner store first: its reply is what is lost

    def matches(self, op: str, key: str) -> bool:
        return op == self.op and self.key_contains in key


class FaultyStore(Wrapper):
    """``inner``, except for the calls a fault rule names."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.calls: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self.failed = 0

    def fail_on(
        self, op: str, error: Exception | Callable[[str], Exception], *, after: int = 0,
        times: int | None = 1, key_contains: str = "", landed: bool = False,
    ) -> None:
        """From the ``after``+1-th call of ``op`` on a key holding ``key_contains``, raise ``error``
        (an exception, or a function of the key that makes one), ``times`` times (None: always).

        With ``landed`` the call is made first and the error raised after it (a write whose reply
        was lost), for a write operation (put, put_if, delete)."""
        if op not in OPERATIONS:
            raise ValueError(f"no store operation {op!r}")
        if landed and op not in ("put", "put_if", "delete"):
            raise ValueError(f"only a write lands before its reply is lost, not {op!r}")
        make = error if callable(error) and not isinstance(error, BaseException) else (lambda key: error)
        with self._lock:
            self._faults.append(_Fault(op, make, after, times, key_contains, landed))

    def heal(self) -> None:
        """Drop every fault rule: the store works again."""
        with self._lock:
            self._faults.clear()

    def _check(self, op: str, key: str = "", landed: bool = False) -> None:
        with self._lock:
            self.calls[op] += not landed  # a call is counted once, before it is made
            for fault in self._faults:
                if not fault.matches(op, key) or fault.landed != landed:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                self.failed += 1
                raise fault.error(key)

    def get(self, key: str) -> bytes:
        self._check("get", key)
        return super().get(key)

    def put(self, key: str, data: bytes) -> None:
        self._check("put", key)
        super().put(key, data)
        self._check_landed("put", key)

    def exists(self, key: str) -> bool:
        self._check("exists", key)
        return super().exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        self._check("list", prefix)
        return super().list(prefix)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        self._check("list_objects", prefix)
        return super().list_objects(prefix)

    def delete(self, key: str) -> None:
        self._check("delete", key)
        super().delete(key)
        self._check_landed("delete", key)

    def get_versioned(self, key: str, unless_tag: str | None = None) -> Versioned | None:
        self._check("get_versioned", key)
        return super().get_versioned(key, unless_tag)

    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        self._check("put_if", key)
        tag = super().put_if(key, data, expected_tag)
        self._check_landed("put_if", key)
        return tag

    def _check_landed(self, op: str, key: str) -> None:
        """Raise a ``landed`` fault's error for a call that already reached the inner store."""
        self._check(op, key, landed=True)

    def flush(self) -> None:
        self._check("flush")
        super().flush()
