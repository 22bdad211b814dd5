"""A host offline across a forget and a prune comes back (FORMAT.md 8, "Writers"; issue 23), through
the installed CLI on a local store and on S3 (moto over HTTP).

While it was away, another host deleted files, forgot every root that held them and pruned with no
grace, so their blocks are gone; meanwhile its person copied that content back into its folder and
renamed a file only its own base still holds. It merges with the history it finds and never commits
a reference to a deleted block, even for content it remembers: ``check`` passes afterwards, and a
second host restores every file whole."""

from __future__ import annotations

import os

from fogsync.format.blocks import Bptr
from fogsync.store import open_store


def blocks_in_store(store: str) -> set[str]:
    return {k.rpartition("/")[2] for k in open_store(store).list("") if "/blocks/" in k}


def test_an_offline_host_comes_back_after_a_forget_and_a_prune(cli_host, share_store, tmp_path):
    a, b = cli_host("alpha", share_store), cli_host("beta", share_store)
    gone, moved, kept = os.urandom(200_000), os.urandom(70_000), os.urandom(1000)
    a.write("gone.bin", gone)
    a.write("moved.bin", moved)
    a.write("kept.txt", kept)
    a.sync()
    a.remove("gone.bin")  # alpha remembers its content (the content table) after this
    a.sync()
    b.sync()
    assert b.read("moved.bin") == moved

    # alpha is away: beta deletes moved.bin, forgets every older root and prunes at once
    b.remove("moved.bin")
    b.write("beta.txt", "beta's work")
    b.sync()
    before = blocks_in_store(share_store)
    assert "forget 2" in b.run("forget", "docs", "--keep-last", "1").stdout
    b.run("prune", "docs", "--grace", "0s")
    deleted = before - blocks_in_store(share_store)
    assert len(deleted) >= 4  # gone.bin's and moved.bin's full blocks at least

    # meanwhile, on alpha: the deleted content comes back under new names
    a.write("back/gone-again.bin", gone)
    a.move("moved.bin", "renamed.bin")
    a.write("kept.txt", kept + b" edited offline")
    out = a.sync()
    assert "committed" in out
    assert "no problem" in a.run("check", "docs").stdout
    for ref in _file_bptrs(a):
        assert Bptr.unpack(ref).hash.hex() not in deleted

    b.sync()
    assert (b.read("back/gone-again.bin"), b.read("renamed.bin"), b.read("beta.txt")) == (gone, moved, b"beta's work")
    restored = tmp_path / "restored"
    b.run("restore", "docs", "--to", str(restored))
    assert (restored / "back/gone-again.bin").read_bytes() == gone
    assert (restored / "renamed.bin").read_bytes() == moved
    assert (restored / "kept.txt").read_bytes() == kept + b" edited offline"
    assert not (restored / "moved.bin").exists() and not (restored / "gone.bin").exists()
    assert a.tree() == b.tree()


def _file_bptrs(host) -> list[bytes]:
    share = host.share()
    repo = share.repo
    tree = repo.load_tree(repo.read_root(repo.read_head().root).root)
    return [e.bptr for e in tree.values() if e.type == "file" and e.bptr is not None]
