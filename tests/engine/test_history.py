"""Per-file history and diff (fogsync.engine.history): versions where content or type changed and
deletions, newest first, reading each listing along the path once; diff skips equal subtrees."""

from __future__ import annotations

import os

import pytest
from chain import Chain

from fogsync.engine.forget import Policy, forget_share
from fogsync.engine.history import diff, file_history
from fogsync.format import crypto
from fogsync.format.tree import DIR, Entry
from fogsync.repo.repository import Repo
from fogsync.store.memory import MemoryStore

KEYS = crypto.ShareKeys.derive(bytes(range(32)))


class ListingReads(MemoryStore):
    def __init__(self) -> None:
        super().__init__(f"memory://hist-{os.urandom(4).hex()}")
        self.reads: list[str] = []

    def get(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get(key)


@pytest.fixture
def repo():
    r = Repo(ListingReads(), KEYS, "docs")
    yield r
    r.close()


def test_versions_of_one_file_newest_first_with_deletions(repo):
    c = Chain(repo)
    r1 = c.commit({"doc/report.odt": b"one", "other.txt": b"o"})
    c.commit({"other.txt": b"o2"})  # report unchanged: no line
    r3 = c.commit({"doc/report.odt": b"two"})
    r4 = c.commit({"doc/report.odt": None})
    c.commit({"other.txt": b"o3"})
    r6 = c.commit({"doc/report.odt": b"three!"})
    got = file_history(repo, repo.read_head().root, "doc/report.odt")
    assert [v.ref for v in got] == [r6, r4, r3, r1]
    assert [v.entry.size if v.entry else None for v in got] == [6, None, 3, 3]
    assert [v.version for v in got] == [6, 4, 3, 1]


def test_a_new_mtime_alone_is_not_a_version_but_a_type_change_is(repo):
    c = Chain(repo)
    r1 = c.commit({"x": b"same"})
    c.commit({}, raw={"x": c.tree["x"]._replace(mtime=99)})
    c.commit({"x": None})
    r4 = c.commit({"x/inside": b"now a dir"})
    got = file_history(repo, repo.read_head().root, "x")
    assert [(v.ref, v.entry.type if v.entry else None) for v in got][0] == (r4, DIR)
    assert got[-1].ref == r1 and len(got) == 3  # r1 file, r3 deleted, r4 dir


def test_history_reads_each_listing_on_the_path_once(repo):
    c = Chain(repo)
    for i in range(10):
        c.commit({f"big/dir/f{i}.txt": b"%d" % i} | ({"a/b/c.txt": b"v%d" % i} if i in (0, 5) else {}))
    head = repo.read_head().root
    fresh = Repo(repo.store, KEYS, "docs")
    repo.store.reads.clear()
    got = file_history(fresh, head, "a/b/c.txt")
    assert len(got) == 2
    listing_reads = len(repo.store.reads) - 10  # one read of each of the 10 roots
    # top listings: 10 (each root's differs); a/ and a/b/: two versions each
    assert listing_reads == 10 + 2 + 2


def test_history_sees_only_the_history(repo):
    c = Chain(repo)
    c.commit({"f": b"1"})
    c.commit({"f": b"2"})
    c.commit({"g": b"g"})
    forget_share(repo, Policy(last=1), "x", lambda: c.when)
    got = file_history(repo, repo.read_head().root, "f")
    assert [v.entry.size for v in got] == [1] and got[0].version == 3  # the oldest kept root holds it


def test_diff_lines(repo):
    c = Chain(repo)
    r1 = c.commit({"keep/deep/a": b"a", "mod": b"1", "gone/x": b"x", "t": b"file", "exec": b"e"})
    r2 = c.commit({"mod": b"2", "gone": None, "t": None, "new/y": b"y"},
                  raw={"exec": c.tree["exec"]._replace(exec=True)})
    c.commit({"t/z": b"z"})
    head = repo.read_head().root
    changes = [(ch.kind, ch.path) for ch in diff(repo, repo.read_root(r1).root, repo.read_root(head).root)]
    assert changes == [
        ("M", "exec"), ("-", "gone"), ("-", "gone/x"), ("M", "mod"), ("+", "new"), ("+", "new/y"),
        ("T", "t"), ("+", "t/z"),
    ]
    assert [(ch.kind, ch.path) for ch in diff(repo, None, repo.read_root(r1).root)][:3] == [
        ("+", "exec"), ("+", "gone"), ("+", "gone/x")]
    assert list(diff(repo, repo.read_root(r2).root, repo.read_root(r2).root)) == []


def test_diff_skips_subtrees_whose_bptr_is_equal(repo):
    c = Chain(repo)
    c.commit({f"same/{i}/f": b"x" for i in range(20)} | {"top.txt": b"1"})
    r1 = repo.read_root(repo.read_head().root).root
    c.commit({"top.txt": b"2"})
    r2 = repo.read_root(repo.read_head().root).root
    fresh = Repo(repo.store, KEYS, "docs")
    repo.store.reads.clear()
    assert [(ch.kind, ch.path) for ch in diff(fresh, r1, r2)] == [("M", "top.txt")]
    assert len(repo.store.reads) == 2  # the two top listings only


def test_entry_key_ignores_mtime_but_not_exec():
    e = Entry("file", 1, "h", 3, b"\x01" * 48, "ab")
    from fogsync.engine.history import _content_key

    assert _content_key(e) == _content_key(e._replace(mtime=5, host="other"))
    assert _content_key(e) != _content_key(e._replace(exec=True))
