"""Remote: where the head's tree moved since the base, a directory at a time.

A pass that pulls another host's commit into a share it already synced
needs the head's tree only where it differs from the base. This module
adds that walk (``remote_moves``): from the top, each head listing whose
bptr is not the base's at the same path is fetched, and checked as
``load_checked_tree`` checks a whole tree; a directory whose bptr is the
base's is not, and neither is anything below it (FORMAT.md 5: a listing's
bptr names its bytes, and so everything below it). The base rows are loaded
from the state for each directory fetched, to compare with, and for each
base directory the head no longer holds with the same listing, and every
base directory below one (their paths go, or change type).

Those directories (``RemoteMoves.dirs``) are where the merge can change
the base; in every other directory the head holds the base's entries,
which ``head_tree`` copies from the rows the pass loaded. A pass that can
trust the state's directory digests (``vouch``) therefore loads, merges
and applies only there and where its scan moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from fogsync.engine.entry_checks import listing_refusals
from fogsync.folder.scan import Stat
from fogsync.folder.state import State
from fogsync.format.tree import DIR, Entry
from fogsync.repo.repository import Repo, Walked


@dataclass
class RemoteMoves:
    """The head's listings that moved since the base, and the base rows of the directories they touch."""

    walked: Walked
    refused: dict[str, str]  # path -> why: entries of the fetched listings the format forbids
    base: dict[str, Entry] = field(default_factory=dict)  # the base rows directly in ``dirs``
    stats: dict[str, Stat] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)  # fetched, and base directories gone from the head as they were

    def rows(self) -> tuple[dict[str, Entry], dict[str, Stat], set[str]]:
        """(rows, stats, directories) of the base loaded so far: what a pass need not load again."""
        return self.base, self.stats, self.dirs

    def head_tree(self, base: Mapping[str, Entry]) -> dict[str, Entry]:
        """The head's tree in the directories whose rows ``base`` holds, and in those fetched: a
        directory not fetched holds the base's entries if it lies at or below one whose listing is the
        base's (``Walked.with_known``); otherwise the head does not hold it (the base's was removed, or
        is another type or empty now). Built in the walk's own dict, once: a big remote change's
        entries are not copied."""
        return self.walked.with_known(base)


def remote_moves(repo: Repo, state: State, name: str, listing: bytes) -> RemoteMoves:
    """The head's listings under ``listing`` that moved since the share's base (its state rows)."""
    refused: dict[str, str] = {}
    moves = RemoteMoves(Walked({}, [], set()), refused)

    def known_in(path: str) -> Mapping[str, Entry]:
        return _load(moves, state, name, {path})

    def inspect(path: str, named_by: Entry | None, data: bytes, entries: list[tuple[str, Entry]]) -> None:
        refused.update(listing_refusals(path, named_by, data, entries))

    moves.walked = repo.walk_changed(listing, known_in, inspect)
    gone = _gone_from_head(moves.base, moves.walked, moves.dirs)
    while gone:  # a removed or retyped directory's rows go, all the way down
        rows = _load(moves, state, name, gone)
        gone = {p for p, e in rows.items() if e.type == DIR and p not in moves.dirs}
    return moves


def _load(moves: RemoteMoves, state: State, name: str, dirs: set[str]) -> dict[str, Entry]:
    rows, stats = state.load_dirs(name, dirs)
    moves.base.update(rows)
    moves.stats.update(stats)
    moves.dirs |= dirs
    return rows


def _gone_from_head(base: Mapping[str, Entry], walked: Walked, loaded: set[str]) -> set[str]:
    """The base's directories in the fetched ones that the head holds neither fetched nor as they were."""
    return {p for p, e in base.items() if e.type == DIR and p not in walked.same and p not in loaded}
