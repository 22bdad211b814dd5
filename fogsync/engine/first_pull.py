"""First pull: a share's first pass into an empty folder, one directory at a time.

When the state holds no base and no rows for a share, the store has a head
and the folder holds nothing to sync (``into_empty``), a pass has nothing
to scan, compare, seal, merge or commit: it writes the head's tree.
``FirstPull`` walks the head's listings depth first and writes them in
rounds of whole directories through ``pull.apply`` (the guarded
temp-and-rename path of every pull), so that it holds a round and the
directories on the walk's way, not the share. Each round's rows go to the
state as staged rows (``State.stage``), which become the base only with the
pass's save (``sync.Pass.first_pull``).

Once a directory and every directory in it are written, it is listed
again: if it holds just what the pull wrote, as the pull wrote it, its
digest vouches for it (``vouch``), so the pass after a first pull loads
nothing from the state.

It saves what a whole-tree pass saves. An excluded path is not written but
keeps its row. A refused entry, and a path something else is in the way
of, keeps no row and the directories above it lose their bptr
(``rows.keep_base_for``): the pass is then saved with no base, and the next
one merges the head with the rows, as after any pull that left paths
unsettled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fogsync.engine.entry_checks import (
    leave_refused_alone,
    listing_refusals,
    refused_lines,
    under_refused,
)
from fogsync.engine.excluded import outside_excluded
from fogsync.engine.prepare import set_dir_mtimes
from fogsync.engine.progress import PULLING
from fogsync.engine.pull import Applied, apply
from fogsync.engine.share import Share
from fogsync.engine.vouch import UNSURE
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import (
    RACY_NS,
    Snapshot,
    Stat,
    digest_of,
    dir_digest,
    listed,
    matches_base,
)
from fogsync.format.tree import DIR, FILE, Entry, decode_listing, join, parent_of

ROUND = 65536  # entries listed before a round writes them (whole directories: a big one makes a big round)


def into_empty(share: Share, ignore: Ignore) -> bool:
    """Whether the share folder holds nothing to sync: a first pull only writes into it."""
    snap = Snapshot()
    return listed(share.folder, "", ignore, snap) == {} and not snap.problems


@dataclass(slots=True)
class _Dir:
    """A directory listed: how many of it and its directories are still to write, then its rows."""

    path: str
    entry: Entry | None  # as its parent's listing has it; None for the top
    waiting: int = 1  # itself, and each directory in it that has a listing to walk
    rows: dict[str, tuple[Entry, Stat | None]] = field(default_factory=dict)  # once written
    sure: bool = True  # each of its entries written as listed, with a stat to trust


class FirstPull:
    """The tree of the listing ``top`` written into an empty share folder, its rows staged."""

    def __init__(self, share: Share, top: bytes, ignore: Ignore) -> None:
        self.share, self.repo, self.top, self.ignore = share, share.repo, top, ignore
        self.racy = share.clock_ns() - RACY_NS
        self.dirs: dict[str, _Dir] = {}  # listed and not yet vouched for
        self.round: dict[str, Entry] = {}
        self.round_dirs: list[_Dir] = []
        self.refused: dict[str, str] = {}  # path -> why its entry is not written
        self.unsettled: set[str] = set()  # paths not written, which keep no row
        self.skipped = False  # something came in the way while it was written: the pass goes again
        self.digests: dict[str, bytes] = {}
        self.written = 0

    def run(self) -> None:
        """Every directory listed, written and staged."""
        share = self.share
        share.state.drop_staged(share.name)  # a first pass's that failed
        share.progress.phase(PULLING, 0, 0)  # the totals grow with each round
        stack: list[tuple[str, bytes, Entry | None]] = [("", self.top, None)]
        while stack:
            self._list(*stack.pop(), stack)
            if len(self.round) >= ROUND:
                self._write_round()
        self._write_round()
        if self.unsettled:
            share.state.unlist_staged(share.name, _above(self.unsettled))

    @property
    def problems(self) -> list[str]:
        return refused_lines(self.refused)

    def vouched(self) -> dict:
        """``State.save``'s keywords for the directory digests: none when a path was left unsettled."""
        if self.unsettled:
            return {"scan_digest": None}
        return {"scan_digest": digest_of(self.digests), "scan_dirs": self.digests}

    def _list(self, path: str, ref: bytes, named_by: Entry | None, stack: list) -> None:
        """One directory's listing read into the round; its subdirectories' onto ``stack``."""
        data = self.repo.read_small(ref, f"listing {ref.hex()[:16]}")
        entries = decode_listing(data)
        self.refused.update(listing_refusals(path, named_by, data, entries))
        d = self._listed(path, named_by)
        for name, entry in entries:
            child = join(path, name)
            self.round[child] = entry
            if entry.type == DIR:
                d.waiting += 1
                if entry.bptr is not None:
                    stack.append((child, entry.bptr, entry))
                else:
                    self._listed(child, entry)  # empty: no listing to read

    def _listed(self, path: str, entry: Entry | None) -> _Dir:
        d = self.dirs[path] = _Dir(path, entry)
        self.round_dirs.append(d)
        return d

    def _write_round(self) -> None:
        """The round's directories written, their rows staged, and each directory vouched for once
        it and its directories are written."""
        tree, dirs = self.round, self.round_dirs
        if not dirs:
            return
        self.round, self.round_dirs = {}, []
        share = self.share
        writable = leave_refused_alone(outside_excluded(tree, {}, self.ignore), {}, {}, self.refused)
        applied = apply(self.repo, share.folder, {}, {}, writable, share.workers, progress=share.progress,
                        growing=True)
        self.written += applied.written
        self.refused.update(applied.refused)
        self.skipped = self.skipped or bool(applied.skipped)
        rows = self._rows(tree, writable, applied, dirs)
        share.state.stage(share.name, rows)
        made = {d.path: d.entry for d in dirs if d.path and self._in_folder(d.path)}
        set_dir_mtimes(share.folder, made, made)  # writing in them moved them
        for d in dirs:
            self._one_less(d)
            if d.path:
                self._one_less(self.dirs[parent_of(d.path)])

    def _rows(self, tree: dict[str, Entry], writable, applied: Applied, dirs: list[_Dir]) -> dict:
        """The round's rows: each path's entry, and a written file's stat unless too fresh to trust; none
        for a path left unsettled."""
        unsettled = applied.left_alone.union(applied.skipped)
        rows: dict[str, tuple[Entry, Stat | None]] = {}
        by_dir = {d.path: d for d in dirs}
        for path, entry in tree.items():
            d = by_dir[parent_of(path)]
            if path in unsettled or under_refused(path, self.refused):
                self.unsettled.add(path)
                d.sure = False
                continue
            stat = applied.stats.get(path) if entry.type == FILE else None
            if stat is not None and stat.mtime_ns >= self.racy:
                stat = None
            if path not in writable or (entry.type == FILE and stat is None):
                d.sure = False  # not in the folder, or no stat to find it by: the next pass looks
            rows[path] = d.rows[path] = (entry, stat)
        for d in dirs:
            if not d.sure:
                d.rows = {}  # no digest will vouch for it
        return rows

    def _one_less(self, d: _Dir) -> None:
        """One more of what ``d`` waits for is written; with nothing left, its digest is taken."""
        d.waiting -= 1
        if d.waiting:
            return
        del self.dirs[d.path]
        if self._in_folder(d.path):
            self.digests[d.path] = self._digest(d)

    def _in_folder(self, path: str) -> bool:
        """Whether the pull made directory ``path`` (its entry is written before anything in it)."""
        return not path or not (
            path in self.unsettled or under_refused(path, self.refused) or self.ignore.ignored(path, True))

    def _digest(self, d: _Dir) -> bytes:
        """``d``'s scan digest if a scan finds in it just the rows the pull wrote, else ``UNSURE``."""
        if not d.sure:
            return UNSURE
        snap = Snapshot()
        items = listed(self.share.folder, d.path, self.ignore, snap)
        rows = d.rows
        if items is None or snap.problems or items.keys() != rows.keys():
            return UNSURE
        if not all(matches_base(item, *rows[p]) for p, item in items.items()):
            return UNSURE
        return dir_digest(d.path, list(items), list(items.values()))


def _above(paths: set[str]) -> set[str]:
    """Every directory above one of ``paths`` (not the top)."""
    out: set[str] = set()
    for p in paths:
        p = parent_of(p)
        while p and p not in out:
            out.add(p)
            p = parent_of(p)
    return out
