"""fogsync.engine.pull: writing verified content into a folder, under temporary names until it checks out."""

from __future__ import annotations

import os

import pytest
from helpers import (
    MTIME,
    TAMPERED,
    files_limited_to,
    flip_last_block,
    stored,
    temporary_files,
)

from fogsync.engine import pull
from fogsync.errors import IntegrityError, LocalError
from fogsync.format.tree import FILE, Entry


def test_a_failed_write_in_a_batch_leaves_no_temporary_file_behind(repo, tmp_path):
    target = {f"f{i}.txt": stored(repo, f"file {i}".encode()) for i in range(5)}
    target["f2.txt"] = stored(repo, os.urandom(100_000))  # the one write the full disk refuses
    folder = tmp_path / "folder"
    folder.mkdir()
    with files_limited_to(50_000), pytest.raises(LocalError, match="cannot write .*f2.txt: File too large"):
        pull.apply(repo, str(folder), {}, {}, target)
    assert os.listdir(folder) == []  # the batch is renamed into place only once all of it is written


def test_apply_writes_a_batch_then_renames_it(repo, tmp_path, monkeypatch):
    target = {f"d/f{i:02d}.txt": stored(repo, f"file {i}".encode()) for i in range(pull._FSYNC_EACH_MAX + 1)}
    target["d"] = Entry("dir", MTIME, "h")
    folder = tmp_path / "folder"
    folder.mkdir()
    synced = []
    monkeypatch.setattr(pull, "sync_filesystem", lambda path: synced.append(sorted(os.listdir(folder / "d"))))
    applied = pull.apply(repo, str(folder), {}, {}, target)
    assert not applied.skipped and applied.written == len(target)
    assert len(synced) == 1 and all(name.startswith(".fogsync-tmp-") for name in synced[0])
    assert sorted(os.listdir(folder / "d")) == sorted(p.split("/")[1] for p in target if p != "d")


def test_a_small_batch_is_fsynced_file_by_file(repo, tmp_path, monkeypatch):
    target = {"a.txt": stored(repo, b"a"), "link": Entry("symlink", MTIME, "h", 5, target="a.txt")}
    folder = tmp_path / "folder"
    folder.mkdir()
    monkeypatch.setattr(pull, "sync_filesystem", lambda path: pytest.fail("syncfs for two entries"))
    fsynced = []
    real = os.fsync
    monkeypatch.setattr(pull.os, "fsync", lambda fd: fsynced.append(fd) or real(fd))
    pull.apply(repo, str(folder), {}, {}, target)
    assert len(fsynced) == 1  # the file; a symlink has no content to fsync
    assert (folder / "a.txt").read_bytes() == b"a" and os.readlink(folder / "link") == "a.txt"


def mixed_target(repo) -> dict[str, Entry]:
    target = {f"d/f{i:03d}.txt": stored(repo, os.urandom(i * 37)) for i in range(1, 40)}
    target["d"] = Entry("dir", MTIME, "h")
    target["run.sh"] = stored(repo, b"#!/bin/sh\n").with_(exec=True)
    target["big.bin"] = stored(repo, os.urandom(200_000))  # several blocks: written by this process
    target["empty"] = Entry(FILE, MTIME, "h", 0, None, None)
    return target


def test_apply_in_worker_processes_writes_what_threads_write(repo, tmp_path, monkeypatch):
    target = mixed_target(repo)
    applied = {}
    for name, processes_min in (("threads", 10**9), ("processes", 1)):
        (tmp_path / name).mkdir()
        applied[name] = pull.apply(
            repo, str(tmp_path / name), {}, {}, target, processes_min=processes_min, batch=7)  # the last one short
    a, b = tmp_path / "threads", tmp_path / "processes"
    assert applied["threads"].written == applied["processes"].written == len(target)
    assert not applied["processes"].skipped and set(applied["processes"].stats) == set(applied["threads"].stats)
    for name, e in target.items():
        if e.type == FILE:
            sa, sb = os.stat(a / name), os.stat(b / name)
            assert (a / name).read_bytes() == (b / name).read_bytes()
            assert (sa.st_mode, sa.st_mtime_ns) == (sb.st_mode, sb.st_mtime_ns) and sb.st_mtime_ns == MTIME
    assert temporary_files(b) == []


def test_a_tampered_file_fails_apply_in_worker_processes_and_leaves_no_temporary_file(repo, tmp_path, monkeypatch):
    target = mixed_target(repo)
    flip_last_block(repo, target["d/f020.txt"])
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(IntegrityError, match=f"{folder / 'd' / 'f020.txt'}: .*{TAMPERED}"):
        pull.apply(repo, str(folder), {}, {}, target, processes_min=1, batch=5)
    assert temporary_files(folder) == []
    assert not (folder / "d" / "f020.txt").exists()


def test_a_batch_that_cannot_be_made_durable_stops_the_workers_and_removes_their_files(repo, tmp_path, monkeypatch):
    calls = []

    def second_fails(folder, temps):
        calls.append(temps)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        pull.make_durable(folder, temps)

    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(LocalError, match="No space left on device"):
        pull.apply(repo, str(folder), {}, {}, mixed_target(repo), processes_min=1, batch=3, durable=second_fails)
    assert len(calls) == 2 and temporary_files(folder) == []  # the first batch is in place; nothing else is left
    # Which three files made the first batch depends on which finished first (they may not all be in d/).
    placed = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names]
    assert len(placed) == len(calls[0]) == 3
    assert sorted(map(os.path.dirname, placed)) == sorted(map(os.path.dirname, calls[0]))


def test_a_file_the_person_saves_at_a_new_path_during_the_pull_is_kept(repo, tmp_path):
    target = {"d": Entry("dir", MTIME, "h"), "d/report.txt": stored(repo, b"from the other host")}
    folder = tmp_path / "folder"
    folder.mkdir()
    path = folder / "d" / "report.txt"

    def then_the_person_saves(where, temps):
        pull.make_durable(where, temps)
        path.write_text("the person's own")  # saved right before fogsync's rename, after every check

    applied = pull.apply(repo, str(folder), {}, {}, target, durable=then_the_person_saves)
    assert applied.skipped == ["d/report.txt"]  # the pass starts again, and the merge sees both
    assert path.read_text() == "the person's own"
    assert temporary_files(folder) == []


def test_a_directory_replaced_by_another_after_the_write_gets_nothing_renamed_in(repo, tmp_path):
    target = {"d": Entry("dir", MTIME, "h"), "d/f.txt": stored(repo, b"from the store")}
    folder = tmp_path / "folder"
    folder.mkdir()

    def then_replace_the_directory(where, temps):
        pull.make_durable(where, temps)  # written and checked to be in the folder's own d
        os.rename(folder / "d", folder / "d-moved")
        os.mkdir(folder / "d")  # then another directory takes its name: another inode

    applied = pull.apply(repo, str(folder), {}, {}, target, durable=then_replace_the_directory)
    assert applied.skipped == ["d/f.txt"] and os.listdir(folder / "d") == []
    assert [n for n in os.listdir(folder / "d-moved") if not n.startswith(".fogsync-tmp")] == []


def test_a_share_folder_that_is_a_symlink_is_written_into(repo, tmp_path):
    target = {"top.txt": stored(repo, b"top"), "d": Entry("dir", MTIME, "h"), "d/f.txt": stored(repo, b"nested")}
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "folder")  # ~/Sync -> /mnt/data/Sync
    applied = pull.apply(repo, str(tmp_path / "folder"), {}, {}, target)
    assert not applied.skipped and applied.written == len(target)
    assert (tmp_path / "real" / "top.txt").read_bytes() == b"top"
    assert (tmp_path / "real" / "d" / "f.txt").read_bytes() == b"nested"
