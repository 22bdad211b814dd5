"""``list_objects``'s time of writing where a test sets it: the memory store's clock, a local
file's mtime; and FaultyStore failing it like any operation."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from fogsync.errors import StoreError
from fogsync.store.faulty import FaultyStore
from fogsync.store.local import LocalStore
from fogsync.store.memory import MemoryStore

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def test_the_memory_store_dates_each_write_by_its_clock():
    now = [T0]
    store = MemoryStore("memory://clock", now=lambda: now[0])
    store.put("s/blocks/aa/1", b"one")
    now[0] = T0 + timedelta(hours=2)
    store.put("s/blocks/aa/2", b"two!")
    store.put_if("s/head", b"h", None)
    listed = {i.key: (i.size, i.modified) for i in store.list_objects("s/")}
    assert listed == {"s/blocks/aa/1": (3, T0), "s/blocks/aa/2": (4, now[0]), "s/head": (1, now[0])}


def test_a_local_object_is_as_old_as_its_file(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put("s/blocks/aa/1", b"one")
    os.utime(tmp_path / "s" / "blocks" / "aa" / "1", (T0.timestamp(), T0.timestamp()))
    (info,) = store.list_objects("s/blocks/")
    assert (info.key, info.size, info.modified) == ("s/blocks/aa/1", 3, T0)


def test_faulty_store_fails_list_objects():
    store = FaultyStore(MemoryStore())
    store.put("s/x", b"x")
    store.fail_on("list_objects", StoreError("listing refused"))
    with pytest.raises(StoreError, match="listing refused"):
        list(store.list_objects("s/"))
    assert [i.key for i in store.list_objects("s/")] == ["s/x"] and store.calls["list_objects"] == 2
