"""fogsync.engine.push: reading and sealing files, in this process and in worker processes."""

from __future__ import annotations

import hashlib
import os

import pytest

from fogsync.engine import push
from fogsync.engine.push import ContentIndex, resolve_sealed, seal_files
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import scan
from fogsync.format import crypto
from fogsync.repo import bigblob
from fogsync.repo.repository import Repo
from fogsync.store.local import LocalStore

KEYS = crypto.ShareKeys.derive(bytes(range(32)))


@pytest.fixture
def repo(tmp_path):
    r = Repo(LocalStore(str(tmp_path / "store")), KEYS, "share")
    yield r
    r.close()


def make_files(folder) -> dict[str, bytes]:
    files = {f"d{i % 7}/f{i:03d}.txt": (f"file {i} " * (i % 50)).encode() for i in range(120)}
    files["empty"] = b""
    files["random.bin"] = os.urandom(3000)
    files["two-blocks.bin"] = os.urandom(70_000)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.chmod(folder / "d1" / "f001.txt", 0o755)
    return files


def sealed_here_and_in_processes(repo, folder, paths, index=None):
    results = []
    sizes = {p: os.lstat(folder / p).st_size for p in paths if os.path.lexists(folder / p)}
    for processes_min in (10**9, 1):
        writer = repo.writer()
        out = seal_files(str(folder), paths, writer, KEYS, index or ContentIndex(guesses=0),
                         "host", sizes=sizes | {p: 0 for p in paths if p not in sizes},
                         processes_min=processes_min)
        resolve_sealed(out, writer)
        repo.wait_uploads()
        results.append(out)
    return results


def content(repo, entry) -> bytes:
    return b"".join(repo.streamed(entry.bptr, "test", size=entry.size)) if entry.size else b""


def test_worker_processes_seal_what_this_process_would(repo, tmp_path):
    folder = tmp_path / "folder"
    files = make_files(folder)
    here, pooled = sealed_here_and_in_processes(repo, folder, sorted(files))
    assert not here.problems and not pooled.problems
    assert pooled.stats == here.stats
    for path, data in files.items():
        a, b = here.entries[path], pooled.entries[path]
        assert a.with_(bptr=None) == b.with_(bptr=None), path  # same sha256, size, mtime, exec bit
        assert b.sha256 == (hashlib.sha256(data).hexdigest() if data else None)
        assert content(repo, b) == data
    assert pooled.entries["d1/f001.txt"].exec


def test_files_sealed_in_processes_share_the_scans_ints(repo, tmp_path):
    folder = tmp_path / "folder"
    files = make_files(folder)
    snap = scan(str(folder), Ignore.for_folder(str(folder)))
    paths = [p for p in sorted(files) if 0 < len(files[p]) <= push.PROBE]  # what workers seal
    os.utime(folder / paths[0], ns=(1, 1))  # changed since the scan: its own ints, the stat as read
    writer = repo.writer()
    out = seal_files(str(folder), paths, writer, KEYS, ContentIndex(guesses=0), "host", scanned=snap.items,
                     processes_min=1)
    resolve_sealed(out, writer)
    assert not out.problems
    for path in paths[1:]:
        item, entry, stat = snap.items[path], out.entries[path], out.stats[path]
        assert (entry.size, entry.mtime, stat) == (item.size, item.mtime_ns, item.stat)
        assert entry.mtime is item.mtime_ns and stat.mtime_ns is item.mtime_ns and stat.ino is item.ino
    assert out.stats[paths[0]].mtime_ns == out.entries[paths[0]].mtime == 1


def test_known_content_is_reused_not_stored_again(repo, tmp_path):
    folder = tmp_path / "folder"
    (folder).mkdir()
    (folder / "a").write_bytes(b"same bytes")
    (folder / "b").write_bytes(b"other")
    known_ref = b"K" * 48
    sha = hashlib.sha256(b"same bytes").hexdigest()
    index = ContentIndex(lambda s: known_ref if s == sha else None, lambda: {len(b"same bytes")}, guesses=0)
    here, pooled = sealed_here_and_in_processes(repo, folder, ["a", "b"], index)
    assert here.entries["a"].bptr == pooled.entries["a"].bptr == known_ref
    assert content(repo, pooled.entries["b"]) == b"other"


def test_problems_come_back_from_worker_processes(repo, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "ok").write_bytes(b"fine")
    (folder / "gone").write_bytes(b"x")
    os.unlink(folder / "gone")
    _, pooled = sealed_here_and_in_processes(repo, folder, ["ok", "gone"])
    assert list(pooled.entries) == ["ok"]
    assert len(pooled.problems) == 1 and "'gone'" in pooled.problems[0]


@pytest.mark.parametrize("size", [
    300_000,  # past the probe: streamed by this process
    bigblob.MIN_SIZE + 1000,  # past the size bigblob seals a chunk per thread (a worker once failed the pass here)
])
def test_a_file_scanned_small_that_grew_is_sealed_by_the_caller(repo, tmp_path, size):
    folder = tmp_path / "folder"
    folder.mkdir()
    big = os.urandom(size)  # incompressible, so the bigger one goes to bigblob
    (folder / "grew").write_bytes(big)
    writer = repo.writer()
    out = seal_files(str(folder), ["grew"], writer, KEYS, ContentIndex(guesses=0), "host",
                     sizes={"grew": 10}, processes_min=1)
    resolve_sealed(out, writer)
    repo.wait_uploads()
    assert not out.problems
    assert content(repo, out.entries["grew"]) == big


def test_only_many_small_files_go_to_worker_processes(repo, tmp_path, monkeypatch):
    folder = tmp_path / "folder"
    files = make_files(folder)
    sent = []
    real = push.map_in_processes

    def recording(fn, items, *args, **kwargs):
        sent.extend(items)
        return real(fn, items, *args, **kwargs)

    monkeypatch.setattr(push, "map_in_processes", recording)
    sealed_here_and_in_processes(repo, folder, sorted(files))
    assert sorted(sent) == sorted(p for p, data in files.items() if len(data) <= push.PROBE)
    sent.clear()
    writer = repo.writer()
    seal_files(str(folder), ["empty", "random.bin"], writer, KEYS, ContentIndex(guesses=0), "host",
               sizes={"empty": 0, "random.bin": 3000})
    assert sent == []  # two files: not worth starting processes


def test_the_capture_writer_refuses_a_stream():
    with pytest.raises(push._GrewLarge):
        push._Capture().write(iter([b"x"]))


@pytest.mark.parametrize("change", ["append", "truncate"])
def test_a_big_file_changed_while_it_is_read_is_read_again_never_torn(repo, tmp_path, monkeypatch, change):
    folder = tmp_path / "folder"
    folder.mkdir()
    path = folder / "big.bin"
    path.write_bytes(os.urandom(3 * bigblob.CHUNK))
    real, ino = os.pread, os.stat(path).st_ino
    calls = []

    def changing(fd, n, offset):
        if os.fstat(fd).st_ino != ino:
            return real(fd, n, offset)
        calls.append(offset)
        if len(calls) == 2:  # mid-read, once: another program rewrites the file
            with open(path, "r+b") as f:
                if change == "append":
                    f.seek(0, 2)
                    f.write(b"more")
                else:
                    f.truncate(bigblob.CHUNK)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", changing)  # the file system's answers, not FogSync's code
    writer = repo.writer()
    out = seal_files(str(folder), ["big.bin"], writer, KEYS, ContentIndex(guesses=0), "host",
                     sizes={"big.bin": 3 * bigblob.CHUNK})
    resolve_sealed(out, writer)
    repo.wait_uploads()
    final = path.read_bytes()
    assert not out.problems
    assert out.entries["big.bin"].sha256 == hashlib.sha256(final).hexdigest()
    assert content(repo, out.entries["big.bin"]) == final


@pytest.mark.parametrize("change", ["append", "truncate", "same size"])
def test_a_small_file_changed_while_it_is_read_is_read_again_never_torn(repo, tmp_path, monkeypatch, change):
    folder = tmp_path / "folder"
    folder.mkdir()
    path = folder / "note.txt"
    path.write_bytes(b"first draft " * 100)
    real, ino = os.read, os.stat(path).st_ino
    calls = []

    def changing(fd, size):
        data = real(fd, size)
        if os.fstat(fd).st_ino != ino:
            return data
        calls.append(size)
        if len(calls) == 1:  # just after the read, once: the editor saves again
            with open(path, "r+b") as f:
                if change == "append":
                    f.seek(0, 2)
                    f.write(b"more")
                elif change == "truncate":
                    f.truncate(10)
                else:
                    f.write(b"FIRST")
            os.utime(path, ns=(1, os.stat(path).st_mtime_ns + 10**9))
        return data

    monkeypatch.setattr(os, "read", changing)  # the file system's answers, not FogSync's code
    writer = repo.writer()
    out = seal_files(str(folder), ["note.txt"], writer, KEYS, ContentIndex(guesses=0), "host", sizes={"note.txt": 1200})
    resolve_sealed(out, writer)
    repo.wait_uploads()
    final = path.read_bytes()
    assert len(calls) == 2 and not out.problems
    assert out.entries["note.txt"].sha256 == hashlib.sha256(final).hexdigest()
    assert content(repo, out.entries["note.txt"]) == final


def test_a_small_file_read_short_is_read_to_its_end(monkeypatch, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real(fd, min(n, 3)))  # as some network filesystems do
    fd = os.open(path, os.O_RDONLY)
    try:
        assert push._read_small(fd, 10) == b"0123456789"
    finally:
        os.close(fd)


def test_content_index_reads_the_tables_sizes_only_when_many_or_big_files_ask():
    asked = []

    def db_sizes():
        asked.append(1)
        return {10}

    index = ContentIndex(lambda sha: None, db_sizes, guesses=3)
    index.sizes.add(7)  # as add_tree does
    assert index.might_hold(7) and not asked
    assert [index.might_hold(n) for n in (1, 2, 3)] == [True] * 3 and not asked  # small: looked up by hash
    assert not index.might_hold(4) and asked == [1]
    assert index.might_hold(10) and not index.might_hold(5) and asked == [1]

    big_first = ContentIndex(lambda sha: None, db_sizes)
    assert not big_first.might_hold(ContentIndex.GUESS_MAX + 1) and asked == [1, 1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_file_replaced_by_a_fifo_is_skipped_without_blocking(repo, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "was-a-file")  # after the scan saw a regular file there: nobody will ever write to it
    writer = repo.writer()
    out = seal_files(str(folder), ["was-a-file"], writer, KEYS, ContentIndex(guesses=0), "host", sizes={"was-a-file": 5})
    assert "was-a-file" not in out.entries
    assert len(out.problems) == 1 and "'was-a-file'" in out.problems[0]
