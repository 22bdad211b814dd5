"""fogsync.engine.prepare: one entry written under a temporary name beside its place, verified first."""

from __future__ import annotations

import os

import pytest
from helpers import MTIME, flip_last_block, stored

from fogsync.engine import prepare
from fogsync.errors import IntegrityError
from fogsync.format.tree import Entry


def test_a_forked_worker_never_picks_the_temporary_name_its_parent_would(tmp_path):
    dest = str(tmp_path / "f.txt")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child inherits the token and the serial count
        os.write(w, prepare._temp_name(dest).encode())
        os._exit(0)
    os.close(w)
    child_name = os.read(r, 4096).decode()
    os.waitpid(pid, 0)
    assert child_name and child_name != prepare._temp_name(dest)
    assert os.path.dirname(child_name) == str(tmp_path)


@pytest.mark.parametrize("size", [0, 100, 70_000, 3 << 20], ids=["empty", "one-block", "blocks", "big"])
def test_an_entry_is_written_beside_its_place_with_its_mtime_and_mode(repo, tmp_path, size):
    data = os.urandom(size)
    entry = stored(repo, data).with_(exec=True) if size else Entry("file", MTIME, "h", 0, None, None, exec=True)
    dest = tmp_path / "f.bin"
    tmp = prepare.prepare(repo, str(dest), entry)
    assert os.path.dirname(tmp) == str(tmp_path) and os.path.basename(tmp).startswith(".fogsync-tmp-")
    assert not dest.exists()  # renaming it into place is the caller's
    assert open(tmp, "rb").read() == data
    st = os.stat(tmp)
    assert st.st_mtime_ns == MTIME and st.st_mode & 0o100


@pytest.mark.parametrize("size", [100, 70_000, 3 << 20], ids=["one-block", "blocks", "big"])
def test_a_tampered_blob_leaves_no_temporary_file(repo, tmp_path, size):
    entry = stored(repo, os.urandom(size))
    flip_last_block(repo, entry)
    with pytest.raises(IntegrityError):
        prepare.prepare(repo, str(tmp_path / "f.bin"), entry)
    assert os.listdir(tmp_path) == ["store"]


def test_a_one_block_blob_from_sealed_bytes_is_verified_before_anything_is_written(repo, tmp_path):
    entry = stored(repo, b"the content")
    sealed = bytearray(repo.piece(repo.pieces(entry.bptr)[0]))
    good = prepare.prepare_sealed(repo.keys, str(tmp_path / "a"), entry, bytes(sealed))
    assert open(good, "rb").read() == b"the content"
    sealed[-1] ^= 1
    with pytest.raises(IntegrityError, match=f"{tmp_path / 'b'}: "):
        prepare.prepare_sealed(repo.keys, str(tmp_path / "b"), entry, bytes(sealed))
    assert sorted(os.listdir(tmp_path)) == sorted(["store", os.path.basename(good)])  # nothing of b's


def test_a_local_copy_that_changed_since_is_fetched_from_the_store_instead(repo, tmp_path):
    data = os.urandom(5000)
    entry = stored(repo, data)
    source = tmp_path / "copy.bin"
    source.write_bytes(b"edited since the scan")
    tmp = prepare.prepare(repo, str(tmp_path / "f.bin"), entry, source=str(source))
    assert open(tmp, "rb").read() == data


def test_bigger_files_get_every_writer_thread_on_a_local_store_and_one_block_files_one(repo):
    tree = {"small": stored(repo, b"x" * 100), "blocks": stored(repo, os.urandom(70_000)),
            "empty": Entry("file", MTIME, "h", 0, None, None)}
    groups = prepare.thread_groups(repo, tree, ["small", "blocks", "empty"], 4)
    assert groups == [(["blocks"], 4), (["small", "empty"], 1)]
    repo.store.read_concurrency = 16  # as over S3: each read is a round trip
    assert prepare.thread_groups(repo, tree, ["small", "blocks", "empty"], 4) == [(["small", "blocks", "empty"], 4)]
