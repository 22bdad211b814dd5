"""Partial passes (``sync_share(share, only_dirs=...)``): only the hinted directories are listed,
the rest is trusted to the state's vouched scan, and a full pass stays the safety net.

Directories listed are counted with Python's audit hook for ``os.scandir``: the real calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest
from helpers import (
    LONG_NAME,
    SETTLED,
    CountingState,
    nest_past_path_max,
    remembered_scan_holds,
    settled,
)

from fogsync.engine.sync import sync_share
from fogsync.engine.vouch import DirHints, VouchMemo

DIRS = [f"d{i}/e{j}" for i in range(4) for j in range(3)] + ["deep/a/b/c"]


@pytest.fixture(params=["each pass reads the state", "a memo between passes"])
def host(hosts, tmp_path, request):
    h = hosts("laptop", str(tmp_path / "store"))
    if request.param == "a memo between passes":
        h.share().memo = VouchMemo()  # as the daemon keeps one
    for d in DIRS:
        for k in range(5):
            settled(h, f"{d}/f{k}.txt", f"{d} {k}\n")
    settled(h, "top.txt", "top\n")
    sync_share(h.share())
    return h


def all_dirs(h) -> int:
    return 1 + sum(len(dirs) for _, dirs, _ in os.walk(h.folder))


def head(h) -> dict:
    repo = h.share().repo
    tree = repo.load_tree(repo.read_root(repo.read_head().root).root)
    return {p: (e.type,) if e.type == "dir" else (e.type, e.sha256, e.exec, e.target) for p, e in tree.items()}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_partial_pass_lists_only_the_named_directory_and_those_above_it(host, scandirs):
    settled(host, "deep/a/b/c/f1.txt", "changed\n")
    settled(host, "deep/a/b/c/new.txt", "new\n")
    report = scandirs.during(lambda: sync_share(host.share(), DirHints({"deep/a/b/c"})))
    assert scandirs.calls == 5 and report.listed_dirs == 5  # '', deep, deep/a, deep/a/b, deep/a/b/c
    assert report.committed is not None and report.pushed == 2
    tree = head(host)
    assert tree["deep/a/b/c/f1.txt"][1] == sha("changed\n") and tree["deep/a/b/c/new.txt"][1] == sha("new\n")
    committed = tree
    full = scandirs.during(lambda: sync_share(host.share()))
    assert scandirs.calls == all_dirs(host)
    assert full.committed is None and head(host) == committed  # a full pass finds the same tree


def test_a_partial_pass_commits_the_tree_a_full_pass_would(hosts, tmp_path):
    partial, full = hosts("p", str(tmp_path / "s1")), hosts("f", str(tmp_path / "s2"))
    for h in (partial, full):
        for d in DIRS:
            settled(h, f"{d}/f.txt", f"{d}\n")
        sync_share(h.share())
        settled(h, "d1/e2/f.txt", "edited\n")
        h.remove("d2/e0")
        settled(h, "d3/new/deeper/n.txt", "a new tree\n")
        os.symlink("../f.txt", h.path("d0/e1/link"))
    sync_share(partial.share(), DirHints({"d1/e2", "d2", "d3", "d0/e1"}, {"d2/e0", "d3/new"}))
    sync_share(full.share())
    assert head(partial) == head(full)
    assert sync_share(partial.share()).committed is None


def test_a_change_outside_the_named_directories_waits_for_the_next_full_pass(host, scandirs):
    settled(host, "d0/e0/f0.txt", "seen\n")
    settled(host, "d3/e2/f4.txt", "not named\n")
    report = sync_share(host.share(), DirHints({"d0/e0"}))
    assert report.committed is not None
    assert head(host)["d3/e2/f4.txt"][1] == sha("d3/e2 4\n")  # trusted to the state: not looked at
    assert sync_share(host.share(), DirHints({"d0/e0"})).committed is None
    report = scandirs.during(lambda: sync_share(host.share()))
    assert scandirs.calls == all_dirs(host) and report.committed is not None
    assert head(host)["d3/e2/f4.txt"][1] == sha("not named\n")


def test_a_new_tree_is_listed_whole_and_a_removed_one_goes(host, scandirs):
    for k in range(3):
        settled(host, f"d0/new/x{k}/f.txt", f"{k}\n")
    host.remove("d1")
    report = scandirs.during(lambda: sync_share(host.share(), DirHints({"d0", ""}, {"d0/new", "d1"})))
    assert scandirs.calls == 6  # '', d0, d0/new, its three subdirectories
    tree = head(host)
    assert tree["d0/new/x2/f.txt"][1] == sha("2\n") and not [p for p in tree if p.startswith("d1")]
    assert report.committed is not None and sync_share(host.share()).committed is None


def test_a_directory_replaced_under_a_vouched_name_is_listed_again(host):
    host.remove("d2")
    settled(host, "d2/e1/f0.txt", "another d2\n")  # d2/e1 was vouched for: as a tree hint, it is not trusted
    sync_share(host.share(), DirHints(set(), {"d2"}))
    tree = head(host)
    assert tree["d2/e1/f0.txt"][1] == sha("another d2\n") and "d2/e1/f1.txt" not in tree and "d2/e0" not in tree


def test_without_a_vouched_scan_a_partial_pass_scans_everything(host, scandirs):
    settled(host, "d0/e0/f0.txt", "x\n")
    host.share().state.remember_scan(host.share().name, None)  # the state's vouch is gone
    settled(host, "d3/e2/f4.txt", "elsewhere\n")
    report = scandirs.during(lambda: sync_share(host.share(), DirHints({"d0/e0"})))
    assert scandirs.calls == all_dirs(host) and report.listed_dirs is None
    assert head(host)["d3/e2/f4.txt"][1] == sha("elsewhere\n")


def test_when_another_host_committed_a_partial_pass_lists_where_the_head_moved_too(host, hosts, tmp_path, scandirs):
    other = hosts("desktop", str(tmp_path / "store"))
    sync_share(other.share())
    settled(other, "d1/e1/from-desktop.txt", "hello\n")
    sync_share(other.share())
    settled(host, "d0/e0/f0.txt", "named\n")
    settled(host, "d3/e2/f4.txt", "not named\n")
    report = scandirs.during(lambda: sync_share(host.share(), DirHints({"d0/e0"})))
    assert scandirs.calls == report.listed_dirs == 5  # '', d0, d0/e0 (named), d1, d1/e1 (the head moved)
    assert host.read("d1/e1/from-desktop.txt") == b"hello\n"
    assert head(host)["d0/e0/f0.txt"][1] == sha("named\n")
    assert head(host)["d3/e2/f4.txt"][1] == sha("d3/e2 4\n")  # trusted to the state, as on the base
    assert remembered_scan_holds(host.share()) is False  # d3/e2 hides a change: the vouch is for the rest
    full = scandirs.during(lambda: sync_share(host.share()))  # the safety net takes it
    assert scandirs.calls == all_dirs(host) and full.committed is not None
    assert head(host)["d3/e2/f4.txt"][1] == sha("not named\n")


def test_a_directory_a_pass_could_not_vouch_for_is_listed_by_the_next_partial_pass(host, scandirs):
    host.write("d2/e2/fresh.txt", "just written\n")  # too fresh to trust: d2/e2 is held UNSURE
    sync_share(host.share(), DirHints({"d2/e2"}))
    os.utime(host.path("d2/e2/fresh.txt"), ns=(SETTLED, SETTLED))
    with open(host.path("d2/e2/fresh.txt"), "w") as f:
        f.write("rewritten, same mtime\n")
    os.utime(host.path("d2/e2/fresh.txt"), ns=(SETTLED, SETTLED))
    report = scandirs.during(lambda: sync_share(host.share(), DirHints({"d0/e0"})))
    assert report.listed_dirs == 5  # '', d0, d0/e0, and d2, d2/e2 (UNSURE)
    assert head(host)["d2/e2/fresh.txt"][1] == sha("rewritten, same mtime\n")


def test_an_unreadable_directory_makes_a_partial_pass_scan_everything(host, scandirs):
    nest_past_path_max(host, "d1")  # unreadable even for root: its path is too long to open
    settled(host, "d0/e0/f0.txt", "x\n")
    report = scandirs.during(lambda: sync_share(host.share(), DirHints({"d0/e0"}, {"d1/" + LONG_NAME})))
    assert report.listed_dirs is None and any("cannot read" in p for p in report.problems)
    assert scandirs.calls > 2 * 21  # the partial scan, then the whole folder's
    assert head(host)["d0/e0/f0.txt"][1] == sha("x\n") and "d3/e2/f4.txt" in head(host)


def test_an_unreadable_directory_makes_a_full_pass_on_the_base_keep_every_entry(host, scandirs):
    # A full scan trusting the vouched digests keeps only what a pass may load; with part of the
    # folder unreadable no digest vouches, so it scans again and keeps everything.
    nest_past_path_max(host, "d1")
    settled(host, "d0/e0/f0.txt", "x\n")
    report = scandirs.during(lambda: sync_share(host.share()))
    assert report.listed_dirs is None and any("cannot read" in p for p in report.problems)
    assert scandirs.calls >= 2 * (all_dirs(host) - 1)  # twice over all it could list (all but the top-most too deep)
    assert head(host)["d0/e0/f0.txt"][1] == sha("x\n") and "d3/e2/f4.txt" in head(host)


@pytest.fixture
def daemon(host):
    """The host's share as the daemon holds it: its own connection to the state, and a memo."""
    state = CountingState(host.share().state.path)
    yield dataclasses.replace(host.share(), state=state, memo=VouchMemo())
    state.close()


def test_a_memo_reads_the_vouched_digests_once_and_again_after_another_process_saved(host, daemon):
    for k in range(3):
        settled(host, f"d0/e0/m{k}.txt", f"{k}\n")
        assert sync_share(daemon, DirHints({"d0/e0"})).committed is not None
    assert daemon.state.digest_reads == 1
    settled(host, "d3/e2/f4.txt", "by the CLI\n")
    sync_share(host.share())  # another process's pass, through its own connection: the seal moves
    settled(host, "d1/e1/f0.txt", "by the daemon\n")
    assert sync_share(daemon, DirHints({"d1/e1"})).listed_dirs == 3
    assert daemon.state.digest_reads == 2  # its copy no longer sealed by the state: read again
    assert remembered_scan_holds(daemon)
    tree = head(host)
    assert tree["d1/e1/f0.txt"][1] == sha("by the daemon\n") and tree["d3/e2/f4.txt"][1] == sha("by the CLI\n")
    assert sync_share(host.share()).committed is None


def test_a_pass_that_found_only_directory_stats_moved_remembers_them_for_the_next(host, daemon):
    sync_share(daemon, DirHints({"d0/e0"}))
    settled(host, "d0/e0/brief.txt", "gone again\n")
    host.remove("d0/e0/brief.txt")  # d0/e0's mtime moved, so d0's digest did; nothing to commit
    assert sync_share(daemon, DirHints({"d0/e0"})).committed is None
    assert remembered_scan_holds(daemon)
    loads, reads = daemon.state.dir_loads, daemon.state.digest_reads
    assert sync_share(daemon, DirHints({"d0/e0"})).committed is None
    assert (daemon.state.dir_loads, daemon.state.digest_reads) == (loads, reads)  # as remembered: nothing loaded or read
