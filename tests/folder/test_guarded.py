"""fogsync.folder.guarded: renames and checks in a share folder that keep what the scan did not see."""

from __future__ import annotations

import os
import time

import pytest

from fogsync.folder import guarded as folder


@pytest.fixture
def dir_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_a_new_path_is_renamed_into_place_only_while_nothing_is_there(tmp_path, dir_fd):
    dev = os.stat(tmp_path).st_dev
    (tmp_path / "t1").write_text("ours")
    folder.rename_new(dir_fd, "t1", "new.txt", dev)
    assert (tmp_path / "new.txt").read_text() == "ours" and not (tmp_path / "t1").exists()
    for theirs in ("file", "dangling link"):
        (tmp_path / "t2").write_text("ours")
        target = tmp_path / f"saved {theirs}"
        if theirs == "file":
            target.write_text("the person's")
        else:
            os.symlink("nowhere", target)
        with pytest.raises(FileExistsError):
            folder.rename_new(dir_fd, "t2", target.name, dev)
        assert (tmp_path / "t2").read_text() == "ours"
        assert target.read_text() == "the person's" if theirs == "file" else os.readlink(target) == "nowhere"


def test_where_the_file_system_refuses_noreplace_a_check_then_a_rename_does(tmp_path, dir_fd):
    import ctypes
    import errno

    calls = []

    def refusing(*args):
        calls.append(args)
        ctypes.set_errno(errno.EINVAL)
        return -1

    refused = folder.NoReplace(refusing)
    dev = os.stat(tmp_path).st_dev
    (tmp_path / "t1").write_text("ours")
    folder.rename_new(dir_fd, "t1", "a.txt", dev, refused)
    assert (tmp_path / "a.txt").read_text() == "ours" and len(calls) == 1
    (tmp_path / "t2").write_text("ours")
    with pytest.raises(FileExistsError):
        folder.rename_new(dir_fd, "t2", "a.txt", dev, refused)
    assert len(calls) == 1  # refused once: that file system is not asked again


def test_nothing_is_looked_up_under_a_directory_that_is_not_there(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("in the way")
    looked_up = []
    real = os.path.lexists
    monkeypatch.setattr(folder.os.path, "lexists", lambda p: looked_up.append(os.path.relpath(p, tmp_path)) or real(p))
    assert folder.present(str(tmp_path), ["a/x", "a/y", "b/z", "b/w", "b/c/v"]) == ["a/x"]
    assert sorted(looked_up) == ["a", "a/x", "a/y", "b"]


def test_a_parent_is_the_folders_own_only_without_a_symlink_on_the_way(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    os.symlink("a", tmp_path / "link")
    (tmp_path / "file").write_text("not a directory")
    assert folder.real_parent(str(tmp_path), "a/b/f.txt")
    assert folder.real_parent(str(tmp_path), "top.txt")
    assert folder.real_parent(str(tmp_path), "a/new/deeper/f.txt")  # not made yet: makedirs makes real ones
    assert not folder.real_parent(str(tmp_path), "link/b/f.txt")
    assert not folder.real_parent(str(tmp_path), "file/f.txt")
    os.symlink(str(tmp_path), tmp_path.parent / f"{tmp_path.name}-folder-link")
    assert folder.real_parent(str(tmp_path.parent / f"{tmp_path.name}-folder-link"), "a/b/f.txt")  # the folder may be one


def test_a_directory_is_opened_only_if_it_is_the_one_written_in_and_no_symlink_is_on_the_way(tmp_path):
    (tmp_path / "real" / "d").mkdir(parents=True)
    os.symlink("real", tmp_path / "link")
    s = os.stat(tmp_path / "real" / "d")
    written_in = (s.st_dev, s.st_ino)
    with folder.Dirs(str(tmp_path)) as dirs:
        fd = dirs.fd("real/d", written_in)
        assert fd is not None and (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == written_in
        assert dirs.fd("link/d", written_in) is None  # the very directory, reached through a symlink
        assert dirs.fd("real/d", (s.st_dev, s.st_ino + 1)) is None  # another directory by that name
        assert dirs.fd("missing/d", written_in) is None


def test_a_share_folder_that_is_a_symlink_is_opened_through_it(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "folder")  # ~/Sync -> /mnt/data/Sync
    s = os.stat(tmp_path / "real")
    with folder.Dirs(str(tmp_path / "folder")) as dirs:
        assert dirs.fd("", (s.st_dev, s.st_ino)) is not None
    assert folder.stat_id(str(tmp_path / "folder")) == (s.st_dev, s.st_ino)


def test_few_descriptors_are_held_however_many_directories(tmp_path):
    ids = []
    for i in range(6):
        (tmp_path / f"d{i}" / "e").mkdir(parents=True)
        s = os.stat(tmp_path / f"d{i}" / "e")
        ids.append((s.st_dev, s.st_ino))
    before = len(os.listdir("/proc/self/fd"))
    with folder.Dirs(str(tmp_path), open_max=3) as dirs:
        for i, written_in in enumerate(ids):
            fd = dirs.fd(f"d{i}/e", written_in)
            assert fd is not None and os.fstat(fd).st_ino == written_in[1]
            assert len(os.listdir("/proc/self/fd")) - before <= 3 + 2  # the cap, and this one's way down
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_directory_that_cannot_be_opened_is_an_error_not_a_skip(tmp_path, monkeypatch):
    import errno

    (tmp_path / "d").mkdir()
    s = os.stat(tmp_path / "d")
    real_open = os.open

    def out_of_descriptors(path, flags, *args, **kwargs):
        if path == "d":
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(folder.os, "open", out_of_descriptors)
    with folder.Dirs(str(tmp_path)) as dirs, pytest.raises(OSError, match="Too many open files"):
        dirs.fd("d", (s.st_dev, s.st_ino))  # a skip would retry the pass for nothing


def test_remove_stale_removes_files_untouched_since_and_never_through_a_symlink(tmp_path):
    share, outside = tmp_path / "share", tmp_path / "outside"
    for d in (share / "sub", share / "swapped", outside):
        d.mkdir(parents=True)
    name = ".fogsync-tmp-41-0123abcd-3"
    for d in (share, share / "sub", outside):
        (d / name).write_bytes(b"half a file")
    (share / "sub" / "also-a-dir").mkdir()
    time.sleep(0.05)  # past the file system's ctime tick
    touched = share / "sub" / ".fogsync-tmp-41-0123abcd-4"
    touched.write_bytes(b"a live pull's")
    cutoff = os.lstat(touched).st_ctime_ns  # only what changed strictly before goes
    (share / "swapped").rmdir()
    os.symlink(outside, share / "swapped")  # after the scan: a directory replaced by a link out
    asked = [name, f"sub/{name}", f"sub/{touched.name}", f"swapped/{name}", f"gone/{name}", "sub/missing",
             "sub/also-a-dir"]
    assert folder.remove_stale(str(share), asked, cutoff) == [name, f"sub/{name}"]
    assert touched.exists() and (outside / name).exists() and (share / "sub" / "also-a-dir").is_dir()
