"""FaultyStore: the seam through which tests meet a failing store."""

from __future__ import annotations

import pytest

from fogsync.errors import StoreError
from fogsync.store.faulty import FaultyStore
from fogsync.store.memory import MemoryStore

BLOCK = "s/blocks/ab/ab01"


def test_passes_through_until_told_to_fail():
    store = FaultyStore(MemoryStore())
    store.put(BLOCK, b"x")
    assert store.get(BLOCK) == b"x"
    assert store.calls["put"] == 1 and store.calls["get"] == 1 and store.failed == 0


def test_fails_after_some_calls_for_a_number_of_times():
    store = FaultyStore(MemoryStore())
    store.fail_on("put", lambda key: StoreError(f"store is full: {key}"), after=1, times=2)
    store.put("a", b"1")
    for key in ("b", "c"):
        with pytest.raises(StoreError, match=f"store is full: {key}"):
            store.put(key, b"2")
    store.put("d", b"3")
    assert sorted(store.inner.list("")) == ["a", "d"]
    assert store.failed == 2


def test_a_rule_names_keys_and_heals():
    store = FaultyStore(MemoryStore())
    store.fail_on("get", StoreError("reset"), times=None, key_contains="/head")
    store.put(BLOCK, b"x")
    assert store.get(BLOCK) == b"x"
    for _ in range(3):
        with pytest.raises(StoreError, match="reset"):
            store.get("s/head")
    store.heal()
    store.put("s/head", b"h")
    assert store.get("s/head") == b"h"


def test_an_unknown_operation_is_refused():
    with pytest.raises(ValueError, match="no store operation 'gett'"):
        FaultyStore(MemoryStore()).fail_on("gett", StoreError("x"))
