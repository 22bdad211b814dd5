"""Writers under FORMAT.md 8 (fogsync.engine.gcrules, wired into sync.Pass and restore --in-place):
the section-8 keys every commit carries, the refusal of an unknown feature, and the bptrs a pass
may reuse while another host forgets and prunes. Real folders, real SQLite, one store (memory or
a local directory); the forgetting and pruning host runs the engine functions in process."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from chain import Chain

from fogsync.engine.check import check_share
from fogsync.engine.forget import Policy, forget_share
from fogsync.engine.gcrules import NO_GC, commit_keys, gc_of
from fogsync.engine.prune import prune_share, stored_blocks
from fogsync.engine.sync import restore_in_place, sync_share
from fogsync.errors import FormatError
from fogsync.folder.state import State
from fogsync.format.blocks import Bptr
from fogsync.format.roots import GcState
from fogsync.repo.repository import Repo
from fogsync.store import open_store
from fogsync.store.wrapper import Wrapper


def now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://gcrules-{uuid.uuid4().hex}"
    return str(tmp_path / "store")


@pytest.fixture
def pruner(store, hosts):
    """A third host that forgets all but the head and prunes with no grace, on its own handle."""
    keys = hosts("keys-only", store).share().repo.keys
    repo = Repo(open_store(store), keys, "docs")

    def run() -> None:
        forget_share(repo, Policy(last=1), "pruner", now, tz=timezone.utc)
        prune_share(repo, "pruner", now, timedelta(0))

    run.repo = repo
    yield run
    repo.close()


def head_root(h):
    repo = h.share().repo
    return repo.read_root(repo.read_head().root)


def head_tree(h) -> dict:
    repo = h.share().repo
    return repo.load_tree(head_root(h).root)


def block_of(entry) -> bytes:
    return Bptr.unpack(entry.bptr).hash


# --- 1. the section-8 keys and the refusal ------------------------------------------------------


def test_a_pass_copies_requires_and_gc_from_the_head(hosts, store, pruner):
    a, b = hosts("laptop", store), hosts("desktop", store)
    a.write("gone.bin", os.urandom(70_000))
    a.sync_here()
    b.sync_here()
    a.remove("gone.bin")
    a.sync_here()
    pruner()
    head = head_root(a)
    assert head.requires == ("gc1",) and head.gc.state == "swept"
    a.write("new.txt", "after the prune")
    r = a.sync_here()
    assert (r.committed.requires, r.committed.gc) == (head.requires, head.gc)
    b.write("other.txt", "a merge on top")
    r = b.sync_here()  # its base is older than the head: a merge, naming its base
    assert r.committed.merged and (r.committed.requires, r.committed.gc) == (head.requires, head.gc)


def test_commit_keys_of_a_merge_take_the_union_and_the_newer_gc(hosts, store):
    repo = hosts("h", store).share().repo
    c = Chain(repo, "h")
    date = "2026-11-21T12:00:00.000000Z"
    old = c.commit({"a": b"a"}, requires=("gc1",), gc=GcState(2, "marked", date, None))
    head = repo.read_root(c.commit({"b": b"b"}, requires=(), gc=GcState(2, "swept", date, None)))
    keys = commit_keys(repo, head, [old])
    assert keys["requires"] == ("gc1",) and keys["gc"].state == "swept"
    assert commit_keys(repo, head, [b"\x00" * 48]) == {"requires": (), "gc": head.gc}  # a root long gone adds nothing


def test_an_unknown_feature_refuses_commits_but_not_pulls(hosts, store):
    a, b = hosts("laptop", store), hosts("desktop", store)
    a.write("one.txt", "one")
    a.sync_here()
    b.sync_here()
    Chain(a.share().repo, "future").commit({"from-the-future.txt": b"new"}, requires=("gc1", "gc9"))
    r = b.sync_here()  # nothing of its own to commit: it pulls
    assert b.read("from-the-future.txt") == b"new" and r.committed is None
    b.write("mine.txt", "local")
    with pytest.raises(FormatError, match="requires gc9.*upgrade fogsync"):
        b.sync_here()
    with pytest.raises(FormatError, match="upgrade fogsync"):
        restore_in_place(a.share(), head_root(a).prev.hex()[:12], None)


def test_restore_in_place_carries_the_heads_keys(hosts, store, pruner):
    a = hosts("laptop", store)
    for text in ("one", "two", "three"):
        a.write("v.txt", text + os.urandom(4).hex())
        a.sync_here()
    wanted = a.read("v.txt")
    a.write("v.txt", "four")
    a.sync_here()
    forget_share(pruner.repo, Policy(last=2), "pruner", now, tz=timezone.utc)
    prune_share(pruner.repo, "pruner", now, timedelta(0))
    head = head_root(a)
    assert head.gc is not None
    repo = a.share().repo
    old = next(ref for ref, root in repo.history(repo.read_head().root) if root.version == 3)
    restore_in_place(a.share(), old.hex(), None)
    restored = next(root for _, root in repo.history(repo.read_head().root) if dict(root.extra).get("restored"))
    assert (restored.requires, restored.gc) == (head.requires, head.gc)
    assert a.read("v.txt") == wanted and check_share(repo).problems == []


# --- 2. what a pass may reuse --------------------------------------------------------------------


def test_content_remembered_from_before_a_forget_is_reused(hosts, store):
    a = hosts("laptop", store)
    data = os.urandom(70_000)
    a.write("f.bin", data)
    a.sync_here()
    old = head_tree(a)["f.bin"].bptr
    a.remove("f.bin")
    a.sync_here()
    forget_share(a.share().repo, Policy(last=1), "pruner", now, tz=timezone.utc)  # no mark: gc unchanged
    a.write("g.bin", data)
    a.sync_here()
    assert head_tree(a)["g.bin"].bptr == old


def test_content_remembered_from_before_a_prune_is_sealed_again(hosts, store, pruner):
    a, b = hosts("laptop", store), hosts("desktop", store)
    data = os.urandom(70_000)
    a.write("f.bin", data)
    a.sync_here()
    old = head_tree(a)["f.bin"]
    a.remove("f.bin")
    a.sync_here()
    assert a.share().state.content("docs", old.sha256) == old.bptr
    pruner()
    assert block_of(old) not in stored_blocks(pruner.repo)
    a.write("g.bin", data)  # the host still remembers where this content was
    a.sync_here()
    assert head_tree(a)["g.bin"].bptr != old.bptr
    assert a.share().state.content("docs", old.sha256) is None  # the content table went with the old gc
    assert a.share().state.share("docs").gc_epoch == 1
    assert check_share(a.share().repo).problems == []
    b.sync_here()
    assert b.read("g.bin") == data


class MarkBeforeSwap(Wrapper):
    """A store whose first head swap is preceded by ``hook()``: another host's forget and prune."""

    def __init__(self, inner, hook) -> None:
        super().__init__(inner)
        self.hook = hook

    def put_if(self, key, data, expected_tag):
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return self.inner.put_if(key, data, expected_tag)


def test_a_swap_lost_to_a_mark_seals_again_what_it_reused(hosts, store, pruner):
    a, b = hosts("laptop", store), hosts("desktop", store)
    data = os.urandom(200_000)
    a.write("f.bin", data)
    a.sync_here()
    old = head_tree(a)["f.bin"]
    a.remove("f.bin")
    a.sync_here()
    a.write("g.bin", data)  # the first attempt reuses the remembered content, rule (3)...
    share = a.share()
    hooked = dataclasses.replace(share, repo=Repo(MarkBeforeSwap(share.repo.store, pruner), share.repo.keys, "docs"))
    r = sync_share(hooked)  # ...then loses its swap to a forget, a mark and a sweep that delete it
    hooked.repo.close()
    assert r.attempts == 2 and block_of(old) not in stored_blocks(pruner.repo)
    assert head_tree(a)["g.bin"].bptr != old.bptr
    assert check_share(a.share().repo).problems == []
    b.sync_here()
    assert b.read("g.bin") == data


def test_a_merge_writes_the_heads_bptr_for_content_the_head_holds(hosts, store, pruner):
    a, b = hosts("laptop", store), hosts("desktop", store)
    data = os.urandom(70_000)
    a.write("p.bin", data)
    a.sync_here()
    b.sync_here()
    old = head_tree(a)["p.bin"]
    b.remove("p.bin")
    b.sync_here()
    pruner()  # p's first upload is deleted
    b.write("p.bin", data)  # the same content again: a new upload
    b.sync_here()
    new = head_tree(b)["p.bin"]
    assert new.bptr != old.bptr and block_of(old) not in stored_blocks(pruner.repo)
    a.write("q.txt", "a's own change")  # a's base still has p with its first bptr
    a.sync_here()
    assert head_tree(a)["p.bin"].bptr == new.bptr
    assert check_share(a.share().repo).problems == []


# --- the state ----------------------------------------------------------------------------------


def test_the_state_remembers_the_gc_it_synced_under(hosts, store, pruner):
    a = hosts("laptop", store)
    a.write("x.txt", "x" * 5000)
    a.sync_here()
    a.write("x.txt", "y")
    a.sync_here()
    info = a.share().state.share("docs")
    assert (info.gc_epoch, info.gc_state) == NO_GC
    pruner()
    a.sync_here()
    info = a.share().state.share("docs")
    assert (info.gc_epoch, info.gc_state) == gc_of(head_root(a)) == (1, "swept")


def test_an_older_state_database_gains_the_gc_columns(tmp_path):
    path = str(tmp_path / "state.db")
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE share (name TEXT PRIMARY KEY, share_id TEXT NOT NULL, base BLOB, head_tag TEXT,"
        " synced_at TEXT);"
        "INSERT INTO share(name, share_id, base) VALUES ('docs', 'id', x'00');"
    )
    db.close()
    state = State(path)
    info = state.share("docs")
    assert (info.base, info.scan_digest, info.gc_epoch, info.gc_state) == (b"\x00", None, None, None)
    state.save("docs", b"\x01", "tag", {}, [], gc_seen=(3, "marked"))
    assert (state.share("docs").gc_epoch, state.share("docs").gc_state) == (3, "marked")
    state.close()


def test_a_state_without_a_remembered_gc_drops_its_content_table(hosts, store):
    a = hosts("laptop", store)
    data = os.urandom(5000)
    a.write("f.bin", data)
    a.sync_here()
    a.remove("f.bin")
    a.sync_here()
    sha = hashlib.sha256(data).hexdigest()
    state = a.share().state
    assert state.content("docs", sha) is not None
    db = sqlite3.connect(state.path)  # as a database from before the columns left it
    with db:
        db.execute("UPDATE share SET gc_epoch=NULL, gc_state=NULL")
    db.close()
    a.write("other.txt", "a change")
    a.sync_here()
    assert state.content("docs", sha) is None
