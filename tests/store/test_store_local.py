"""LocalStore specifics: atomic puts, the head lock, durability, OS errors."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import threading
from pathlib import Path

import pytest

from fogsync.errors import ConfigError
from fogsync.platform import fsync
from fogsync.store import ObjectNotFound, StoreError, open_store
from fogsync.store.local import LocalStore

HEAD = "share1/head"
BLOCK = "share1/blocks/ab/" + "ab" * 32


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> LocalStore:
    return LocalStore(str(root))


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _disk_full_midway(fd: int, data: bytes) -> None:
    """Write half, then the rest where the kernel says the disk is full (/dev/full: ENOSPC)."""
    fsync.write_all(fd, data[: len(data) // 2])
    with open("/dev/full", "wb", buffering=0) as full:
        full.write(data[len(data) // 2 :])


def _denied_midway(fd: int, data: bytes) -> None:
    os.write(fd, data[: len(data) // 2])
    raise OSError(errno.EACCES, os.strerror(errno.EACCES))


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert LocalStore(f"file://{tmp_path}/a%20b").root == f"{tmp_path}/a b"
    assert LocalStore("file://localhost/srv/x").root == "/srv/x"
    monkeypatch.chdir(tmp_path)
    assert LocalStore("rel/dir").root == str(tmp_path / "rel" / "dir")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert LocalStore("~/fog").root == str(tmp_path / "home" / "fog")
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    with pytest.raises(ConfigError):
        LocalStore("file://otherhost/x")


def test_files_are_laid_out_by_key(store: LocalStore, root: Path):
    store.put(BLOCK, b"block")
    assert (root / BLOCK).read_bytes() == b"block"


def test_root_created_on_first_put(store: LocalStore, root: Path):
    assert not root.exists()
    assert list(store.list("")) == []
    store.flush()
    store.put(BLOCK, b"x")
    assert root.is_dir()


def test_no_temp_files_left_after_puts(store: LocalStore, root: Path):
    for i in range(50):
        store.put(f"s/blocks/{i % 4:02x}/{i:064x}", os.urandom(i * 100))
    tag = store.put_if("s/head", b"h1", None)
    store.put_if("s/head", b"h2", tag)
    assert not [f for f in _all_files(root) if ".tmp-" in f]


def test_failed_put_leaves_no_object_and_no_temp(root):
    store = LocalStore(str(root), write=_disk_full_midway)
    with pytest.raises(StoreError, match="full") as caught:
        store.put(BLOCK, b"x" * 65536)
    assert str(root) in str(caught.value)
    assert not store.exists(BLOCK)
    assert _all_files(root) == []


def test_failed_overwrite_keeps_old_object(store, root):
    store.put(BLOCK, b"old")
    tag = store.put_if(HEAD, b"old head", None)
    store = LocalStore(str(root), write=_disk_full_midway)
    with pytest.raises(StoreError, match="store is full"):
        store.put(BLOCK, b"new" * 1000)
    with pytest.raises(StoreError, match="store is full"):
        store.put_if(HEAD, b"new head" * 1000, tag)
    assert store.get(BLOCK) == b"old"
    assert store.get_versioned(HEAD).tag == tag


def test_permission_error_message(root):
    store = LocalStore(str(root), write=_denied_midway)
    with pytest.raises(StoreError, match="permission denied: .*share1"):
        store.put(BLOCK, b"x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_unwritable_directory(store, root):
    store.put(BLOCK, b"x")
    os.chmod(root / "share1", 0o500)
    try:
        with pytest.raises(StoreError, match="permission denied"):
            store.put("share1/blocks/cd/" + "cd" * 32, b"y")
        with pytest.raises(StoreError, match="permission denied"):
            store.put_if(HEAD, b"h", None)
    finally:
        os.chmod(root / "share1", 0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_unreadable_object(store, root):
    store.put(BLOCK, b"x")
    os.chmod(root / BLOCK, 0)
    with pytest.raises(StoreError, match="permission denied"):
        store.get(BLOCK)


def test_root_is_a_file(tmp_path: Path):
    (tmp_path / "file").write_bytes(b"")
    store = LocalStore(str(tmp_path / "file"))
    with pytest.raises(StoreError, match=str(tmp_path / "file")):
        store.put(BLOCK, b"x")
    with pytest.raises(ObjectNotFound):
        store.get(BLOCK)


def test_directory_removed_behind_the_cache(store, root):
    store.put(BLOCK, b"x")
    shutil.rmtree(root / "share1")
    store.put(BLOCK, b"y")
    assert store.get(BLOCK) == b"y"


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "a/", "share/head.lock", "a/.tmp-x"])
def test_bad_and_reserved_keys(store, key):
    with pytest.raises(StoreError, match="invalid object key"):
        store.put(key, b"x")


def test_head_lock_file(store, root):
    store.put_if(HEAD, b"h", None)
    assert (root / "share1" / "head.lock").is_file()
    assert "share1/head.lock" not in set(store.list("share1/"))


def test_put_if_waits_for_the_head_lock(store, root):
    tag = store.put_if(HEAD, b"h1", None)
    done = threading.Event()
    result = {}

    def swap() -> None:
        result["tag"] = store.put_if(HEAD, b"h2", tag)
        done.set()

    with open(root / "share1" / "head.lock", "r+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = threading.Thread(target=swap)
        worker.start()
        assert not done.wait(0.3), "put_if ignored the lock held by another writer"
        assert store.get(HEAD) == b"h1"
    worker.join(10)
    assert done.is_set()
    assert store.get_versioned(HEAD).tag == result["tag"]


def test_tag_is_sha256(store):
    import hashlib

    assert store.put_if(HEAD, b"h", None) == hashlib.sha256(b"h").hexdigest()


def test_flush_syncs_the_store_file_system_once(root):
    calls = []
    store = LocalStore(str(root), sync_filesystem=calls.append)
    store.put(BLOCK, b"x")
    store.flush()
    assert calls == [str(root)]


def test_flush_reports_write_back_errors(root):
    def failing_syncfs(directory: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    store = LocalStore(str(root), sync_filesystem=failing_syncfs)
    store.put(BLOCK, b"x")
    with pytest.raises(StoreError, match="cannot flush .*Input/output error"):
        store.flush()


def test_writing_back_starts_in_the_background_and_flush_waits_for_it(root):
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_syncfs(directory: str) -> None:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            started.set()
            release.wait(5)  # the disk is slow: the puts go on meanwhile

    store = LocalStore(str(root), sync_filesystem=slow_syncfs, flush_ahead=100)
    store.put(BLOCK, b"x" * 60)
    assert calls == []  # not yet flush_ahead
    store.put(BLOCK + "1", b"x" * 60)
    assert started.wait(5) and calls == ["fogsync-flush-ahead"]
    for i in range(5):
        store.put(f"{BLOCK}{i + 2}", b"x" * 60)  # one background syncfs at a time
    assert calls == ["fogsync-flush-ahead"]
    flushing = threading.Thread(target=store.flush)
    flushing.start()
    flushing.join(0.2)
    assert flushing.is_alive()  # flush waits for the syncfs in the background...
    release.set()
    flushing.join(5)
    assert not flushing.is_alive() and len(calls) == 2  # ...then makes the rest durable itself
    assert calls[1] != "fogsync-flush-ahead"


def test_a_background_write_back_error_is_raised_by_flush(root):
    calls = []

    def failing_once(directory: str) -> None:
        calls.append(directory)
        if len(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    store = LocalStore(str(root), sync_filesystem=failing_once, flush_ahead=10)
    store.put(BLOCK, b"x" * 20)
    with pytest.raises(StoreError, match="cannot flush .*Input/output error"):
        store.flush()  # a later syncfs would not see that error: it is raised once, here
    store.flush()
    assert len(calls) == 2


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="syncfs(2) is Linux-only")
def test_real_syncfs_available(store):
    assert fsync.libc_syncfs() is not None
    store.put(BLOCK, b"x")
    store.flush()
