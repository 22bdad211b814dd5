"""fogsync.engine.restore: a tree written into an empty directory, big files a chunk per core, small ones in processes."""

from __future__ import annotations

import os
import threading
import time

import pytest
from helpers import (
    MTIME,
    TAMPERED,
    files_limited_to,
    flip_last_block,
    small_tree,
    stored,
)

from fogsync.engine import prepare, restore
from fogsync.errors import IntegrityError, LocalError
from fogsync.format.tree import FILE, Entry
from fogsync.platform import directio
from fogsync.repo import bigblob


@pytest.fixture(params=["page cache", "direct"])
def writes(request, monkeypatch) -> str:
    """Big files written through the page cache, and (as files of 32 MiB or more are) around it."""
    if request.param == "direct":
        monkeypatch.setattr(directio, "MIN_SIZE", 0)
    return request.param


def test_restore_writes_big_and_small_files_with_their_mtimes(repo, tmp_path, writes):
    big = os.urandom(bigblob.MIN_SIZE + 100_000)  # decrypted and written a chunk per worker thread
    tree = {"big.bin": stored(repo, big), "small.txt": stored(repo, b"small")}
    dest = tmp_path / "out"
    restore.restore(repo, tree, str(dest))
    assert (dest / "big.bin").read_bytes() == big
    assert (dest / "small.txt").read_bytes() == b"small"
    assert os.stat(dest / "big.bin").st_mtime_ns == MTIME
    assert sorted(os.listdir(dest)) == ["big.bin", "small.txt"]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzipped"])
def test_a_tampered_big_file_leaves_nothing_behind(repo, tmp_path, compress, writes):
    entry = stored(repo, os.urandom(bigblob.MIN_SIZE + 1), compress)
    flip_last_block(repo, entry)
    dest = tmp_path / "out"
    with pytest.raises(IntegrityError, match=TAMPERED):
        restore.restore(repo, {"big.bin": entry}, str(dest))
    assert os.listdir(dest) == []


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzipped"])
def test_a_write_error_on_a_big_file_is_one_error_and_no_temp(repo, tmp_path, monkeypatch, compress):
    entry = stored(repo, os.urandom(bigblob.MIN_SIZE + 1), compress)
    dest = tmp_path / "out"
    dest.mkdir()
    real = repo.open_into

    def full_disk(ref, what, write, size):
        def failing(data):
            raise OSError(28, "No space left on device")
        return real(ref, what, failing, size=size)

    monkeypatch.setattr(repo, "open_into", full_disk)
    with pytest.raises(LocalError, match="No space left on device"):
        restore.restore(repo, {"big.bin": entry}, str(dest))
    assert os.listdir(dest) == []


def test_a_big_gzipped_file_is_restored_in_order(repo, tmp_path, writes):
    data = b"compressible line of text\n" * 200_000
    tree = {"log.txt": stored(repo, data, compress=True)}
    restore.restore(repo, tree, str(tmp_path / "out"))
    assert (tmp_path / "out" / "log.txt").read_bytes() == data


def test_restore_in_worker_processes_writes_what_threads_write(repo, tmp_path):
    files = {f"f{i:03d}.txt": os.urandom(i * 37) for i in range(1, 60)}
    tree = small_tree(repo, files)
    tree["run.sh"] = stored(repo, b"#!/bin/sh\n").with_(exec=True)
    tree["big.bin"] = stored(repo, os.urandom(200_000))  # several blocks: written by a thread
    tree["empty"] = Entry(FILE, MTIME, "h", 0, None, None)
    for name, processes_min in (("threads", 10**9), ("processes", 1)):
        restore.restore(repo, tree, str(tmp_path / name), processes_min=processes_min)
    a, b = tmp_path / "threads", tmp_path / "processes"
    assert sorted(os.listdir(a)) == sorted(os.listdir(b)) == sorted(tree)
    for name in tree:
        sa, sb = os.stat(a / name), os.stat(b / name)
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (sa.st_mode, sa.st_mtime_ns) == (sb.st_mode, sb.st_mtime_ns) and sb.st_mtime_ns == MTIME
    assert os.stat(b / "run.sh").st_mode & 0o100


def test_a_tampered_small_file_fails_the_restore_in_worker_processes(repo, tmp_path):
    tree = small_tree(repo, {f"f{i}": os.urandom(100 + i) for i in range(10)})
    flip_last_block(repo, tree["f3"])  # the last byte of f3's range in the partial block all ten share
    dest = tmp_path / "out"
    with pytest.raises(IntegrityError, match=TAMPERED):
        restore.restore(repo, tree, str(dest), processes_min=1)
    assert not [n for n in os.listdir(dest) if n.startswith(".fogsync-tmp")]
    assert "f3" not in os.listdir(dest)


@pytest.mark.parametrize("tampered", ["big", "small"])
def test_a_tampered_file_on_either_side_fails_the_restore_and_leaves_no_temp(repo, tmp_path, tampered):
    """Small files go to worker processes while a thread writes the big ones: a failure on
    either side is the restore's one error, raised once both sides are done."""
    tree = small_tree(repo, {f"f{i}": os.urandom(100 + i) for i in range(10)})
    tree.update({f"big{i}.bin": stored(repo, os.urandom(bigblob.MIN_SIZE + i)) for i in range(3)})
    flip_last_block(repo, tree["big1.bin" if tampered == "big" else "f3"])
    dest = tmp_path / "out"
    with pytest.raises(IntegrityError, match=TAMPERED):
        restore.restore(repo, tree, str(dest), processes_min=1)
    left = os.listdir(dest)
    assert not [n for n in left if n.startswith(".fogsync-tmp")]
    assert ("big1.bin" if tampered == "big" else "f3") not in left


def test_once_the_small_files_fail_no_more_big_files_are_written(repo, tmp_path, monkeypatch):
    tree = small_tree(repo, {f"f{i}": os.urandom(100 + i) for i in range(10)})
    tree.update({f"big{i}.bin": stored(repo, os.urandom(bigblob.MIN_SIZE + i)) for i in range(4)})
    flip_last_block(repo, tree["f3"])
    small_failed, real = threading.Event(), restore.prepare

    def after_the_failure(repo_, target, entry):  # the first big files wait until the small files have failed
        if not small_failed.is_set():
            small_failed.wait(10)
            time.sleep(0.1)  # for the restore to take the failure in
        return real(repo_, target, entry)

    real_processes = restore._restore_in_processes

    def failing(*args):
        try:
            real_processes(*args)
        finally:
            small_failed.set()

    monkeypatch.setattr(restore, "prepare", after_the_failure)
    monkeypatch.setattr(restore, "_restore_in_processes", failing)
    dest = tmp_path / "out"
    with pytest.raises(IntegrityError, match=TAMPERED):
        restore.restore(repo, tree, str(dest), processes_min=1, workers=2)
    written = [n for n in os.listdir(dest) if n.startswith("big")]
    assert len(written) <= 2  # at most those on their way (two threads) when the failure came


@pytest.mark.parametrize("in_processes", [True, False])
def test_a_file_that_cannot_be_renamed_into_place_is_one_clear_error(repo, tmp_path, in_processes):
    tree = small_tree(repo, {"a": b"x", "b": b"y"})
    dest = tmp_path / "out"
    (dest / "b").mkdir(parents=True)
    (dest / "b" / "inside").write_bytes(b"")  # a non-empty directory where the file "b" goes
    with pytest.raises(LocalError, match=f"cannot write {dest / 'b'}"):
        if in_processes:
            restore._restore_in_processes(repo, tree, str(dest), ["a", "b"])
        else:
            restore._place(prepare.prepare(repo, str(dest / "b"), tree["b"]), str(dest / "b"))
    assert not [n for n in os.listdir(dest) if n.startswith(".fogsync-tmp")]


def test_a_full_disk_under_a_direct_write_is_one_error_and_no_temp(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(directio, "MIN_SIZE", 0)
    entry = stored(repo, os.urandom(bigblob.MIN_SIZE + 1))
    dest = tmp_path / "out"
    dest.mkdir()
    with files_limited_to(bigblob.MIN_SIZE // 2), pytest.raises(LocalError, match="File too large"):
        restore.restore(repo, {"big.bin": entry}, str(dest))
    assert os.listdir(dest) == []
