"""fogsync.pull: writing verified content into a folder, under temporary names until it checks out."""

from __future__ import annotations

import os

import pytest
from helpers import MTIME, flip_last_block, stored, temporary_files

from fogsync import prepare, pull
from fogsync.errors import IntegrityError, LocalError
from fogsync.tree import FILE, Entry


def test_a_failed_write_in_a_batch_leaves_no_temporary_file_behind(repo, tmp_path, monkeypatch):
    target = {f"f{i}.txt": stored(repo, f"file {i}".encode()) for i in range(5)}
    folder = tmp_path / "folder"
    folder.mkdir()
    real = prepare._write_checked
    calls = []

    def third_fails(tmp, chunks, entry):
        calls.append(tmp)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(tmp, chunks, entry)

    monkeypatch.setattr(prepare, "_write_checked", third_fails)
    with pytest.raises(LocalError, match="No space left on device"):
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
    monkeypatch.setattr(pull, "_DURABLE_BATCH", 7)  # several batches, the last one short
    target = mixed_target(repo)
    applied = {}
    for name, processes_min in (("threads", 10**9), ("processes", 1)):
        (tmp_path / name).mkdir()
        applied[name] = pull.apply(repo, str(tmp_path / name), {}, {}, target, processes_min=processes_min)
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
    monkeypatch.setattr(pull, "_DURABLE_BATCH", 5)
    target = mixed_target(repo)
    flip_last_block(repo, target["d/f020.txt"])
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(IntegrityError, match=f"{folder / 'd' / 'f020.txt'}: .*authentication failed"):
        pull.apply(repo, str(folder), {}, {}, target, processes_min=1)
    assert temporary_files(folder) == []
    assert not (folder / "d" / "f020.txt").exists()


def test_a_batch_that_cannot_be_made_durable_stops_the_workers_and_removes_their_files(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(pull, "_DURABLE_BATCH", 3)
    real, calls = pull._make_durable, []

    def second_fails(folder, temps):
        calls.append(temps)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(folder, temps)

    monkeypatch.setattr(pull, "_make_durable", second_fails)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(LocalError, match="No space left on device"):
        pull.apply(repo, str(folder), {}, {}, mixed_target(repo), processes_min=1)
    assert len(calls) == 2 and temporary_files(folder) == []  # the first batch is in place; nothing else is left
    # Which three files made the first batch depends on which finished first (they may not all be in d/).
    placed = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names]
    assert len(placed) == len(calls[0]) == 3
    assert sorted(map(os.path.dirname, placed)) == sorted(map(os.path.dirname, calls[0]))


@pytest.fixture
def dir_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_a_new_path_is_renamed_into_place_only_while_nothing_is_there(tmp_path, dir_fd):
    dev = os.stat(tmp_path).st_dev
    (tmp_path / "t1").write_text("ours")
    pull._rename_new(dir_fd, "t1", "new.txt", dev)
    assert (tmp_path / "new.txt").read_text() == "ours" and not (tmp_path / "t1").exists()
    for theirs in ("file", "dangling link"):
        (tmp_path / "t2").write_text("ours")
        target = tmp_path / f"saved {theirs}"
        if theirs == "file":
            target.write_text("the person's")
        else:
            os.symlink("nowhere", target)
        with pytest.raises(FileExistsError):
            pull._rename_new(dir_fd, "t2", target.name, dev)
        assert (tmp_path / "t2").read_text() == "ours"
        assert target.read_text() == "the person's" if theirs == "file" else os.readlink(target) == "nowhere"


def test_where_the_file_system_refuses_noreplace_a_check_then_a_rename_does(tmp_path, dir_fd, monkeypatch):
    import ctypes
    import errno

    calls = []

    def refusing(*args):
        calls.append(args)
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(pull, "_renameat2", lambda: refusing)
    monkeypatch.setattr(pull, "_no_noreplace", set())
    dev = os.stat(tmp_path).st_dev
    (tmp_path / "t1").write_text("ours")
    pull._rename_new(dir_fd, "t1", "a.txt", dev)
    assert (tmp_path / "a.txt").read_text() == "ours" and len(calls) == 1
    (tmp_path / "t2").write_text("ours")
    with pytest.raises(FileExistsError):
        pull._rename_new(dir_fd, "t2", "a.txt", dev)
    assert len(calls) == 1  # refused once: that file system is not asked again


def test_a_file_the_person_saves_at_a_new_path_during_the_pull_is_kept(repo, tmp_path, monkeypatch):
    target = {"d": Entry("dir", MTIME, "h"), "d/report.txt": stored(repo, b"from the other host")}
    folder = tmp_path / "folder"
    folder.mkdir()
    path = folder / "d" / "report.txt"
    saved = []

    def save_first(rename):
        def renaming(*args, **kwargs):
            dest = args[3] if len(args) == 5 else args[1]  # renameat2(dirfd, old, dirfd, new, flags) or replace(old, new)
            if not saved and os.fsdecode(dest) == path.name:
                saved.append(True)
                path.write_text("the person's own")  # saved right before fogsync's rename, after every check
            return rename(*args, **kwargs)
        return renaming

    real_renameat2 = pull._renameat2()
    monkeypatch.setattr(pull, "_renameat2", lambda: real_renameat2 and save_first(real_renameat2))
    monkeypatch.setattr(pull.os, "replace", save_first(os.replace))
    applied = pull.apply(repo, str(folder), {}, {}, target)
    assert saved and applied.skipped == ["d/report.txt"]  # the pass starts again, and the merge sees both
    assert path.read_text() == "the person's own"
    assert temporary_files(folder) == []


def test_a_batch_across_many_directories_keeps_few_descriptors_open(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(pull, "_DIRS_OPEN_MAX", 3)
    flushed = []
    real_close_all = pull._Dirs._close_all
    monkeypatch.setattr(pull._Dirs, "_close_all", lambda self: flushed.append(len(self._open)) or real_close_all(self))
    target = {f"d{i}": Entry("dir", MTIME, "h") for i in range(6)}
    target.update({f"d{i}/f.txt": stored(repo, f"file {i}".encode()) for i in range(6)})
    folder = tmp_path / "folder"
    folder.mkdir()
    fds = len(os.listdir("/proc/self/fd"))
    applied = pull.apply(repo, str(folder), {}, {}, target)
    assert not applied.skipped and applied.written == len(target)
    assert all((folder / f"d{i}" / "f.txt").read_bytes() == f"file {i}".encode() for i in range(6))
    assert max(flushed) <= 3 and len(flushed) > 1  # closed and opened again as the batch went on
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_directory_replaced_by_another_after_the_write_gets_nothing_renamed_in(repo, tmp_path, monkeypatch):
    target = {"d": Entry("dir", MTIME, "h"), "d/f.txt": stored(repo, b"from the store")}
    folder = tmp_path / "folder"
    folder.mkdir()
    real = pull._with_stat

    def then_replace_the_directory(tmp, dest):
        written = real(tmp, dest)  # written and checked to be in the folder's own d
        os.rename(folder / "d", folder / "d-moved")
        os.mkdir(folder / "d")  # then another directory takes its name: another inode
        return written

    monkeypatch.setattr(pull, "_with_stat", then_replace_the_directory)
    applied = pull.apply(repo, str(folder), {}, {}, target)
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


def test_nothing_is_looked_up_under_a_directory_that_is_not_there(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("in the way")
    looked_up = []
    real = os.path.lexists
    monkeypatch.setattr(pull.os.path, "lexists", lambda p: looked_up.append(os.path.relpath(p, tmp_path)) or real(p))
    assert pull._present(str(tmp_path), ["a/x", "a/y", "b/z", "b/w", "b/c/v"]) == ["a/x"]
    assert sorted(looked_up) == ["a", "a/x", "a/y", "b"]


def test_a_parent_is_the_folders_own_only_without_a_symlink_on_the_way(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    os.symlink("a", tmp_path / "link")
    (tmp_path / "file").write_text("not a directory")
    assert pull._real_parent(str(tmp_path), "a/b/f.txt")
    assert pull._real_parent(str(tmp_path), "top.txt")
    assert pull._real_parent(str(tmp_path), "a/new/deeper/f.txt")  # not made yet: makedirs makes real ones
    assert not pull._real_parent(str(tmp_path), "link/b/f.txt")
    assert not pull._real_parent(str(tmp_path), "file/f.txt")
    os.symlink(str(tmp_path), tmp_path.parent / f"{tmp_path.name}-folder-link")
    assert pull._real_parent(str(tmp_path.parent / f"{tmp_path.name}-folder-link"), "a/b/f.txt")  # the folder may be one
