"""The store contract (fogsync/store/base.py), run over every backend.

Each test runs three times via the ``store_factory`` fixture: memory, a local
directory and S3 (a moto server over HTTP).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

import pytest

from fogsync.store import ObjectNotFound, Store, StoreError, SwapConflict, Versioned

HEAD = "share1/head"
BLOCK = "share1/blocks/ab/" + "ab" + "12" * 31


@pytest.fixture
def store(store_factory) -> Store:
    return store_factory()


def test_put_get_round_trip(store):
    store.put(BLOCK, b"sealed block")
    assert store.get(BLOCK) == b"sealed block"


def test_put_replaces(store):
    store.put(BLOCK, b"one")
    store.put(BLOCK, b"two, longer")
    assert store.get(BLOCK) == b"two, longer"


def test_second_handle_sees_puts(store_factory):
    first, second = store_factory(), store_factory()
    first.put(BLOCK, b"shared")
    assert second.get(BLOCK) == b"shared"


@pytest.mark.parametrize("data", [b"", b"\x00\xff" * 7, os.urandom(64 * 1024)], ids=["empty", "binary", "64KiB"])
def test_binary_data(store, data):
    store.put(BLOCK, data)
    assert store.get(BLOCK) == data
    store.put_if(HEAD, data, None)
    assert store.get_versioned(HEAD).data == data


def test_get_missing_raises_object_not_found(store):
    with pytest.raises(ObjectNotFound, match="nothing/here"):
        store.get("nothing/here")
    with pytest.raises(ObjectNotFound):
        store.get_versioned("nothing/head")


def test_object_not_found_is_a_store_error(store):
    with pytest.raises(StoreError):
        store.get("nothing/here")


def test_exists(store):
    assert not store.exists(BLOCK)
    store.put(BLOCK, b"x")
    assert store.exists(BLOCK)
    assert not store.exists("share1/blocks")


def test_list_prefix(store):
    keys = {
        "share1/blocks/ab/ab01",
        "share1/blocks/ab/ab02",
        "share1/blocks/cd/cd01",
        "share1/head",
        "share10/blocks/ab/ab01",
        "share2/blocks/ab/ab03",
    }
    for key in keys:
        store.put(key, key.encode())
    store.put_if("share1/head2", b"h", None)
    assert sorted(store.list("share1/blocks/")) == sorted(k for k in keys if k.startswith("share1/blocks/"))
    assert sorted(store.list("share1/")) == sorted(
        [k for k in keys if k.startswith("share1/")] + ["share1/head2"]
    )
    assert sorted(store.list("share1/blocks/ab/")) == ["share1/blocks/ab/ab01", "share1/blocks/ab/ab02"]
    assert list(store.list("share3/")) == []


def test_list_has_no_temporary_or_lock_files(store):
    for i in range(20):
        store.put(f"s/blocks/{i:02x}/{i:064x}", b"x" * i)
    tag = store.put_if("s/head", b"h1", None)
    store.put_if("s/head", b"h2", tag)
    listed = set(store.list("s/"))
    assert listed == {f"s/blocks/{i:02x}/{i:064x}" for i in range(20)} | {"s/head"}


def test_list_objects_gives_size_and_time_of_writing(store):
    before = datetime.now(timezone.utc) - timedelta(minutes=5)  # S3's clock (moto's) and file times round
    sizes = {"s/blocks/ab/01": 0, "s/blocks/ab/02": 7, "s/blocks/cd/03": 65536, "t/blocks/ab/04": 3}
    for key, n in sizes.items():
        store.put(key, b"z" * n)
    store.put_if("s/head", b"h1", None)
    listed = {info.key: info for info in store.list_objects("s/blocks/")}
    assert sorted(listed) == sorted(store.list("s/blocks/")) == ["s/blocks/ab/01", "s/blocks/ab/02", "s/blocks/cd/03"]
    assert {k: i.size for k, i in listed.items()} == {k: n for k, n in sizes.items() if k.startswith("s/")}
    after = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert all(before <= i.modified <= after and i.modified.tzinfo is not None for i in listed.values())
    assert [i.key for i in store.list_objects("s/")] and list(store.list_objects("u/")) == []
    store.delete("s/blocks/ab/01")
    assert "s/blocks/ab/01" not in {i.key for i in store.list_objects("s/")}


def test_delete(store):
    store.put(BLOCK, b"x")
    store.delete(BLOCK)
    assert not store.exists(BLOCK)
    with pytest.raises(ObjectNotFound):
        store.get(BLOCK)
    store.delete(BLOCK)


def test_get_versioned_unless_tag(store):
    tag = store.put_if(HEAD, b"root 1", None)
    current = store.get_versioned(HEAD)
    assert current == Versioned(b"root 1", tag)
    assert store.get_versioned(HEAD, unless_tag=tag) is None
    new_tag = store.put_if(HEAD, b"root 2", tag)
    assert store.get_versioned(HEAD, unless_tag=tag) == Versioned(b"root 2", new_tag)
    assert store.get_versioned(HEAD, unless_tag="not-a-tag") == Versioned(b"root 2", new_tag)


def test_put_if_create_then_second_create_conflicts(store):
    tag = store.put_if(HEAD, b"first", None)
    assert isinstance(tag, str) and tag
    with pytest.raises(SwapConflict):
        store.put_if(HEAD, b"second", None)
    assert store.get(HEAD) == b"first"


def test_put_if_stale_tag_conflicts(store):
    old = store.put_if(HEAD, b"v1", None)
    store.put_if(HEAD, b"v2", old)
    with pytest.raises(SwapConflict):
        store.put_if(HEAD, b"v3", old)
    assert store.get(HEAD) == b"v2"


def test_put_if_with_tag_on_missing_object_conflicts(store):
    tag = store.put_if(HEAD, b"v1", None)
    store.delete(HEAD)
    with pytest.raises(SwapConflict):
        store.put_if(HEAD, b"v2", tag)
    assert not store.exists(HEAD)


def test_swap_conflict_is_a_store_error(store):
    store.put_if(HEAD, b"v1", None)
    with pytest.raises(StoreError):
        store.put_if(HEAD, b"v2", None)


def test_put_if_right_tag_succeeds_with_new_tag(store):
    first = store.put_if(HEAD, b"v1", None)
    second = store.put_if(HEAD, b"v2", first)
    assert second != first
    assert store.get_versioned(HEAD) == Versioned(b"v2", second)
    third = store.put_if(HEAD, b"v3", second)
    assert store.get_versioned(HEAD) == Versioned(b"v3", third)


def test_put_if_returned_tag_matches_get_versioned(store):
    tag = store.put_if(HEAD, b"v1", None)
    assert store.get_versioned(HEAD).tag == tag


def _current_tag(store: Store) -> str | None:
    try:
        return store.get_versioned(HEAD).tag
    except ObjectNotFound:
        return None


def _race(store_factory, contenders: int = 8) -> list[bytes]:
    """Each contender reads the head's tag, then all swap at once; returns the winners.

    Payloads are unique: tags may be content hashes (local, S3 ETags), so
    rewriting bytes a loser already read would let it swap too (ABA).
    """
    nonce = os.urandom(8).hex()
    stores = [store_factory() for _ in range(contenders)]
    barrier = threading.Barrier(contenders)
    winners, errors = [], []

    def contend(i: int) -> None:
        payload = f"writer {i} {nonce}".encode()
        try:
            tag = _current_tag(stores[i])
            barrier.wait()
            stores[i].put_if(HEAD, payload, tag)
            winners.append(payload)
        except SwapConflict:
            pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    return winners


def test_race_on_existing_head_has_one_winner(store_factory):
    store = store_factory()
    store.put_if(HEAD, b"base", None)
    for _ in range(3):
        winners = _race(store_factory)
        assert len(winners) == 1
        assert store.get(HEAD) == winners[0]


def test_race_to_create_has_one_winner(store_factory):
    winners = _race(store_factory)
    assert len(winners) == 1
    assert store_factory().get(HEAD) == winners[0]


def test_flush(store):
    store.flush()
    store.put(BLOCK, b"x")
    store.flush()
    assert store.get(BLOCK) == b"x"


def test_context_manager(store_factory):
    with store_factory() as store:
        store.put(BLOCK, b"x")
        assert store.get(BLOCK) == b"x"
