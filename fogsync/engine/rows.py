"""Rows: what a finished pass saves to the state database.

This module adds the choice of state rows after a pass: which rows
changed (an entry, or a stat to trust), which keep their old base because
the pass could not settle them, and which stored content the content index
must remember because the tree no longer holds it. Pure: no I/O.
"""

from __future__ import annotations

import itertools
from typing import Mapping

from fogsync.engine.pull import Applied
from fogsync.folder.scan import RACY_NS, Scanned, Stat
from fogsync.format.tree import FILE, Entry, parent_of

Rows = dict[str, tuple[Entry, Stat | None]]


def state_rows(
    final: Mapping[str, Entry], base: Mapping[str, Entry], stats: Mapping[str, Stat],
    last_seen: Mapping[str, Scanned], read: Mapping[str, Stat], taken_ns: int, applied: Applied,
) -> tuple[Rows, list[str]]:
    """The state rows that differ from what the database holds.

    A file's stat is remembered only when it belongs to content this pass
    knows: written by it, or read (or found unchanged) by it. A file it did
    not read keeps no stat, so the next pass reads it; a stat too fresh to
    trust is not kept either.

    A row changes with its entry, or with its stat. A stat is new only for
    a file this pass read or wrote, and is dropped for a path the scan did
    not see; a file left unread was found by ``compare`` with the stat its
    row has. So every other path (an entry that is the base's very object)
    is passed over at a glance: one walk over ``final``, no set of candidates.
    """
    rows = {}
    racy = taken_ns - RACY_NS
    written = applied.stats
    base_get, stats_get, read_get, written_get = base.get, stats.get, read.get, written.get
    for path, entry in final.items():
        old = base_get(path)
        if entry is old and path in last_seen and path not in read and path not in written:
            continue
        stat = None
        if entry.type == FILE:
            stat = written_get(path) or read_get(path)  # the very Stat objects: 50,000 on a first sync
            if stat is None and path in last_seen:
                stat = Stat(*last_seen[path][1:4])
            if stat is not None and stat.mtime_ns >= racy:
                stat = None
        if old is None or old != entry or stats_get(path) != stat:
            rows[path] = (entry, stat)
    removed = [p for p in base if p not in final]
    return rows, removed


def keep_base_for(paths, rows: Rows, removed: list[str], base: Mapping[str, Entry], final) -> None:
    """Paths the pass could not settle keep their old base rows, so the next pass merges them properly.

    Their directories lose their bptr in the state, so the next remote tree
    is fetched there rather than assumed from these rows.
    """
    for path in paths:
        rows.pop(path, None)
        if path in removed:
            removed.remove(path)
        parent = parent_of(path)
        while parent:
            entry = rows[parent][0] if parent in rows else final.get(parent) or base.get(parent)
            if entry is not None:
                rows[parent] = (entry.with_bptr(None), None)
            parent = parent_of(parent)


def contents_outside(
    final: Mapping[str, Entry], base: Mapping[str, Entry], read: Mapping[str, Entry], stored: list[str],
    rows: Mapping[str, tuple], removed: list[str],
) -> list[tuple[str, int, bytes]]:
    """Stored content the final tree does not hold, for the state's content index.

    Content in the tree is found through the tree (``ContentIndex.add_tree``):
    the index only needs what left it, or never made it in, so that a file
    moved back, copied or restored later reuses its blocks. (A first sync
    writes no row at all here.) ``stored`` are the paths whose content this
    pass stored (``read`` has their entries); nearly all of them still hold
    it, which settles those without a search.
    """
    left = [base[p] for p in (*rows, *removed) if p in base]
    # A stored entry still in the final tree as the very object holds its content (a first sync: all of them).
    new = (e for p in stored if (e := read[p]) is not final.get(p) and not _holds(final.get(p), e.sha256))
    candidates = [
        (e.sha256, e.size, e.bptr) for e in itertools.chain(new, left) if e.type == FILE and e.bptr is not None
    ]
    if not candidates:
        return []
    wanted = {c[0] for c in candidates}  # a set lookup per entry is cheaper than collecting every hash
    held = {e.sha256 for e in final.values() if e.sha256 in wanted and e.type == FILE and e.bptr is not None}
    return [c for c in candidates if c[0] not in held]


def _holds(entry: Entry | None, sha256: str) -> bool:
    return entry is not None and entry.type == FILE and entry.sha256 == sha256 and entry.bptr is not None
