"""Hosts that run ``fogsync sync`` at the same instant, through the installed CLI (issue 22, case 7).

Each host edits only its own files; the syncs race for the head. A host
that pulls another's commit and then loses the race must not take what it
pulled for its own change: no conflict copies, anywhere.
"""

from __future__ import annotations

import re

NAMES = ("A", "B", "C")
ROUNDS = 5
CONFLICT = re.compile(r" \(conflict from ")


def test_hosts_editing_their_own_files_and_syncing_at_once_make_no_conflict_copy(cli_host, share_store):
    trio = [cli_host(name, share_store) for name in NAMES]
    for h in trio:
        h.write(f"own-{h.name}.txt", "0\n")
        h.write(f"{h.name}/notes.txt", "0\n")
    for _ in range(2):
        for h in trio:
            h.sync()
    for rnd in range(1, ROUNDS + 1):
        for h in trio:
            h.write(f"own-{h.name}.txt", f"{rnd}\n")
            h.write(f"{h.name}/notes.txt", f"{h.name} {rnd}\n")
        procs = [h.start("sync") for h in trio]  # started together: they race for the head
        for h, p in zip(trio, procs):
            h.finish(p)
    for h in trio:
        h.sync()
    for h in trio:
        h.sync()
        tree = h.tree()
        assert not [p for p in tree if CONFLICT.search(p)], f"{h.name} holds conflict copies: {sorted(tree)}"
        for other in NAMES:
            assert tree[f"own-{other}.txt"][1] == f"{ROUNDS}\n".encode(), h.name
            assert tree[f"{other}/notes.txt"][1] == f"{other} {ROUNDS}\n".encode(), h.name
    assert "no problem" in trio[0].run("check", "docs").stdout
