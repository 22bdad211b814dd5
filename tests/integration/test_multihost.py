"""Two and three hosts on one share through the installed CLI (issue 5).

Every host has its own config file, state dir and folder (``Host`` in
tests/conftest.py); the store is a local directory or an S3 bucket on the
moto server (``share_store``). Each ``fogsync`` call is a subprocess.
"""

from __future__ import annotations

import os
import re

from fogsync.format.crypto import ShareKeys
from fogsync.store import open_store

CONFLICT = r" \(conflict from {host} \d{{4}}-\d\d-\d\d \d{{4}}(?: \d+)?\)"


def sync_all(*hosts, rounds: int = 2) -> None:
    for _ in range(rounds):
        for h in hosts:
            h.sync()


def same(*hosts) -> dict:
    first = hosts[0].tree()
    for h in hosts[1:]:
        assert h.tree() == first, f"{h.name} differs from {hosts[0].name}"
    return first


def files(tree: dict) -> dict:
    return {p: v[1] for p, v in tree.items() if v[0] == "file"}


def one_chain(h) -> list:
    log = h.log()
    assert [v for _, v, _, _ in log] == list(range(len(log), 0, -1)), log
    return log


def merges_name_older_roots(h) -> int:
    """Every ``merged`` key names a root further down the one chain; returns how many roots have one."""
    repo = h.share().repo
    seen, merges = [], 0
    for ref, root in reversed(list(repo.history(repo.read_head().root))):
        assert all(m in seen for m in root.merged), f"v{root.version} names a root not below it"
        merges += bool(root.merged)
        seen.append(ref)
    return merges


def block_bytes(h) -> int:
    share_id = ShareKeys.derive(bytes.fromhex(h.key)).share_id(h.share_name)
    store = open_store(h.store)
    try:
        return sum(len(store.get(k)) for k in store.list(f"{share_id}/blocks/"))
    finally:
        store.close()


def ls_hosts(h, path: str = "") -> dict[str, str]:
    """name -> host column of ``fogsync ls``."""
    out = {}
    for line in h.run("ls", h.share_name, path).stdout.splitlines():
        kind, size, day, time_, host, name = line.split(None, 5)
        out[name.rstrip("/")] = host
    return out


# --- every rule, three hosts ------------------------------------------------------------------------


def test_three_hosts_every_rule(hosts, share_store):
    """The three-host scenario: one round of edits that exercises every merge rule at once."""
    laptop, desktop, server = (hosts(n, share_store) for n in ("laptop", "desktop", "server"))
    laptop.write("report.txt", "v1\n")
    laptop.write("notes/a.txt", "a v1\n")
    laptop.write("projects/x/readme.md", "x\n")
    laptop.write("to-delete.txt", "keep me?\n")
    laptop.write("both-delete.txt", "doomed\n")
    laptop.write("old/tree/file.txt", "old tree\n")
    assert "committed v1" in laptop.sync()
    for h in (desktop, server):
        out = h.sync()
        assert "committed" not in out and "pulled" in out  # pulling adds no root
    same(laptop, desktop, server)

    laptop.write("report.txt", "laptop's edit\n")  # both changed
    desktop.write("report.txt", "desktop's edit\n")
    laptop.remove("to-delete.txt")  # delete against change
    server.write("to-delete.txt", "server kept editing\n")
    laptop.remove("both-delete.txt")  # deleted on both
    desktop.remove("both-delete.txt")
    desktop.write("notes/a.txt", "same new text\n")  # changed identically
    server.write("notes/a.txt", "same new text\n")
    laptop.write("thing", "a file called thing\n")  # file against directory
    desktop.write("thing/inside.txt", "a directory called thing\n")
    laptop.write("projects/x/src/laptop.py", "laptop\n")  # directories merge recursively
    desktop.write("projects/x/src/desktop.py", "desktop\n")
    server.write("projects/y/server.txt", "server\n")
    server.write("projects/x/readme.md", "x, edited on the server\n")  # one side only
    laptop.remove("old")  # a whole tree deleted on one side
    desktop.sync()
    out = laptop.sync()
    assert "conflict" in out
    server.sync()
    sync_all(laptop, desktop, server)
    tree = same(laptop, desktop, server)
    content = files(tree)

    copies = [p for p in content if re.fullmatch("report" + CONFLICT.format(host="laptop") + r"\.txt", p)]
    assert len(copies) == 1, sorted(content)
    assert content["report.txt"] == b"desktop's edit\n" and content[copies[0]] == b"laptop's edit\n"
    assert content["to-delete.txt"] == b"server kept editing\n"
    assert "both-delete.txt" not in tree
    assert content["notes/a.txt"] == b"same new text\n"
    assert not any(p.startswith("notes/a (conflict") for p in tree)
    assert tree["thing"][0] == "dir" and content["thing/inside.txt"] == b"a directory called thing\n"
    thing_copies = [p for p in content if re.fullmatch("thing" + CONFLICT.format(host="laptop"), p)]
    assert [content[p] for p in thing_copies] == [b"a file called thing\n"]
    assert content["projects/x/src/laptop.py"] == b"laptop\n"
    assert content["projects/x/src/desktop.py"] == b"desktop\n"
    assert content["projects/y/server.txt"] == b"server\n"
    assert content["projects/x/readme.md"] == b"x, edited on the server\n"
    assert not any(p.startswith("old") for p in tree)

    log = one_chain(server)
    assert {host for _, _, _, host in log} == {"laptop", "desktop", "server"}
    assert merges_name_older_roots(server) >= 2  # laptop and server merged desktop's commit in
    top = ls_hosts(server)
    assert top["report.txt"] == "desktop" and top[copies[0]] == "laptop" and top["to-delete.txt"] == "server"
    assert ls_hosts(server, "projects/x/src") == {"desktop.py": "desktop", "laptop.py": "laptop"}
    assert "no problem" in server.run("check", "docs").stdout
    assert all("in step" in h.sync() for h in (laptop, desktop, server))  # nothing left to do, no new root
    assert len(server.log()) == len(log)


def test_two_hosts_conflicting_edits_make_a_named_copy_everywhere(hosts, share_store):
    laptop, desktop = hosts("laptop", share_store), hosts("desktop", share_store)
    laptop.write("report.txt", "v1\n")
    sync_all(laptop, desktop, rounds=1)
    desktop.write("report.txt", "desktop\n")
    laptop.write("report.txt", "laptop\n")
    laptop.sync()
    assert "1 conflict(s)" in desktop.sync()
    laptop.sync()
    tree = same(laptop, desktop)
    (copy,) = [p for p in tree if p != "report.txt"]
    assert re.fullmatch("report" + CONFLICT.format(host="desktop") + r"\.txt", copy)
    assert files(tree) == {"report.txt": b"laptop\n", copy: b"desktop\n"}
    # the copy is a normal file: deleting it on the other host deletes it everywhere
    laptop.remove(copy)
    sync_all(laptop, desktop)
    assert same(laptop, desktop).keys() == {"report.txt"}
    one_chain(laptop)


# --- at the same instant -------------------------------------------------------------------------


def test_hosts_syncing_at_the_same_instant_converge(hosts, share_store):
    trio = [hosts(n, share_store) for n in ("laptop", "desktop", "server")]
    for h in trio:
        h.write(f"own-{h.name}.txt", "0\n")
    sync_all(*trio)
    rounds = 4
    for rnd in range(1, rounds + 1):
        for h in trio:
            h.write(f"own-{h.name}.txt", f"{rnd}\n")
            h.write("shared.txt", f"{h.name} round {rnd}\n")
            h.write(f"round-{rnd}/{h.name}.txt", "new\n")
        procs = [h.start("sync") for h in trio]  # started together: they race for the head
        for h, p in zip(trio, procs):
            h.finish(p)
    sync_all(*trio)
    content = files(same(*trio))
    for h in trio:
        assert content[f"own-{h.name}.txt"] == f"{rounds}\n".encode()
        for rnd in range(1, rounds + 1):
            assert f"round-{rnd}/{h.name}.txt" in content
    shared = {v for p, v in content.items() if p.startswith("shared")}
    assert {f"{h.name} round {rounds}\n".encode() for h in trio} <= shared
    log = one_chain(trio[0])
    assert len(log) >= 1 + rounds
    assert merges_name_older_roots(trio[0]) >= rounds
    assert "no problem" in trio[0].run("check", "docs").stdout


# --- moves, restore, names ------------------------------------------------------------------------


def test_rename_and_move_cost_no_upload(hosts, share_store):
    laptop, desktop = hosts("laptop", share_store), hosts("desktop", share_store)
    big = os.urandom(1_000_000)
    laptop.write("inbox/video.bin", big)
    sync_all(laptop, desktop, rounds=1)
    before = block_bytes(laptop)
    laptop.move("inbox/video.bin", "archive/2026/video-renamed.bin")
    laptop.sync()
    desktop.sync()
    desktop.move("archive", "moved-archive")  # and on the other host, a directory move
    desktop.sync()
    sync_all(laptop, desktop)
    assert files(same(laptop, desktop)) == {"moved-archive/2026/video-renamed.bin": big}
    grown = block_bytes(laptop) - before
    assert grown < 20_000, f"the store grew by {grown} bytes for two moves of a 1 MB file"


def test_restore_in_place_reaches_every_host(hosts, share_store):
    laptop, desktop, server = (hosts(n, share_store) for n in ("laptop", "desktop", "server"))
    laptop.write("f.txt", "one\n")
    laptop.write("d/g.txt", "g\n")
    sync_all(laptop, desktop, server, rounds=1)
    first_id = laptop.log()[-1][0]
    desktop.write("f.txt", "two\n")
    desktop.write("new.txt", "new\n")
    desktop.remove("d")
    sync_all(desktop, laptop, server, rounds=1)
    assert files(laptop.tree()) == {"f.txt": b"two\n", "new.txt": b"new\n"}
    server.run("restore", "docs", "--in-place", "--root", first_id[:16])
    sync_all(laptop, desktop)
    assert files(same(laptop, desktop, server)) == {"f.txt": b"one\n", "d/g.txt": b"g\n"}
    log = one_chain(desktop)
    assert log[0][3] == "server" and len(log) == 3
    # and the newer state is still there to go back to
    server.run("restore", "docs", "--in-place", "--root", log[1][0])
    sync_all(laptop, desktop)
    assert files(same(laptop, desktop, server)) == {"f.txt": b"two\n", "new.txt": b"new\n"}
    assert len(one_chain(laptop)) == 4


def test_two_hosts_with_one_name_is_a_configuration_error(hosts, share_store):
    a, b = hosts("laptop", share_store), hosts("laptop", share_store)
    a.write("f.txt", "1\n")
    sync_all(a, b, rounds=1)
    a.write("f.txt", "2\n")
    a.sync()
    b.write("mine.txt", "b's work\n")
    p = b.run("sync", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr == (
        "fogsync: error: another host also calls itself 'laptop' in share 'docs' (root v2): "
        "give each host its own name with --host or 'host' in the config\n"
    )
    assert b.read("f.txt") == b"1\n" and len(a.log()) == 2  # nothing applied, nothing committed
    # renamed, the host syncs, and its pending work is kept
    b.run("--host", "laptop-2", "sync")
    a.sync()
    assert files(same(a, b)) == {"f.txt": b"2\n", "mine.txt": b"b's work\n"}
    assert [h for *_, h in one_chain(a)] == ["laptop-2", "laptop", "laptop"]
