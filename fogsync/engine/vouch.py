"""Vouch: a pass on its base looks only where the folder moved.

This module adds the directory-digest shortcut of a pass (and of
``status``). The state vouches for each directory whose entries a pass
found unchanged against the base, by the digest of its scan
(``Snapshot.dir_digests``), sealed by one digest of them all. A later scan
whose digests all match needs no comparing; otherwise only the directories
whose digest moved, and those above them (their listings name them), are
loaded and compared (``moved_dirs``). Only a scan made on the base can
vouch, or be vouched for.

A partial pass (``Scope``, given ``DirHints``: where a watcher saw the
folder change) goes one step further: it lists only the directories named,
those above them and those the state does not vouch for, and takes every
other directory's digest from the state, as the scan would have found it.
It falls back to a full scan whenever the state vouches for no scan, or
the partial one cannot vouch (part of it unreadable). A directory a pass
could not vouch for keeps an ``UNSURE`` digest, so that partial passes
look at it again until one can.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Mapping

from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import Scanned, Snapshot, Stat, digest_of, matches_base, scan
from fogsync.folder.state import ShareState, State
from fogsync.format.blocks import BLOCK_SIZE
from fogsync.format.tree import DIR, Entry, parent_of

# The digest of a directory a pass could not vouch for: no scan's (those are 32 bytes), so it
# always counts as moved, and a partial pass lists it.
UNSURE = b""


@dataclass(frozen=True)
class DirHints:
    """Where the folder may have changed since the last pass, as a watcher saw it."""

    dirs: Collection[str] = frozenset()  # directories whose entries may have changed ('' is the top)
    trees: Collection[str] = frozenset()  # directories that may have changed anywhere below (made, moved in)


class Scope:
    """What a pass scans: the whole folder, or (partial) only where it may have moved.

    A partial scope lists the directories hinted at, every directory above
    them, each directory the state holds ``UNSURE``, and every directory the
    state does not vouch for at all (new ones); the others are ``skip``ped,
    and ``complete`` puts their vouched digests back beside the scan's.
    """

    def __init__(self, vouched: dict[str, bytes] | None = None, skip: frozenset[str] = frozenset()) -> None:
        self.vouched = vouched  # the state's digests; None for a full scan
        self.skip = skip

    @property
    def partial(self) -> bool:
        return self.vouched is not None

    @classmethod
    def of(cls, state: State, name: str, info: ShareState | None, hints: DirHints | None) -> "Scope":
        """A partial scope for ``hints`` if the state vouches for a whole scan; else a full one.

        Pass None as ``hints`` for a full scan (and when not on the base).
        """
        if hints is None or info is None:
            return cls()
        vouched = vouched_dirs(state, name, info)
        if not vouched or "" not in vouched or any(d and parent_of(d) not in vouched for d in vouched):
            return cls()  # a remembered scan with holes tells too little of what lies below them
        listed = _with_parents(itertools.chain(
            hints.dirs, hints.trees, (d for d, digest in vouched.items() if digest == UNSURE)))
        trees = [t + "/" for t in hints.trees if t]
        if "" in hints.trees:
            return cls()
        skip = frozenset(d for d in vouched if d not in listed and not any(d.startswith(t) for t in trees))
        return cls(vouched, skip)

    def scan(self, folder: str, ignore: Ignore, clock: Callable[[], int] = time.time_ns) -> Snapshot:
        """The folder's scan within this scope; a full one when a partial one cannot vouch."""
        if self.partial:
            snap = scan(folder, ignore, clock, self.skip)
            if not snap.unreadable:
                return snap
            self.vouched, self.skip = None, frozenset()
        return scan(folder, ignore, clock)

    def complete(self, digests: dict[str, bytes], snap: Snapshot) -> dict[str, bytes]:
        """Every directory's digest: the scan's, and the vouched one of each skipped directory still
        there (its parent's listing has it as a directory, or it lies below one such)."""
        out = dict(digests)
        for d in sorted(self.skip, key=lambda d: d.count("/")):  # parents first
            parent = parent_of(d)
            if parent in digests:
                item = snap.items.get(d)
                there = item is not None and item.type == DIR
            else:
                there = parent in out
            if there:
                out[d] = self.vouched[d]
        return out


def _with_parents(dirs) -> set[str]:
    out = {""}
    for d in dirs:
        while d not in out:
            out.add(d)
            d = parent_of(d)
    return out


class Vouch:
    """What the state vouches for of one scan: which directories need loading, and what to remember."""

    def __init__(self, state: State, name: str, scanned: dict[str, bytes] | None,
                 vouched: dict[str, bytes] | None, partial: bool = False) -> None:
        self.state, self.name = state, name
        self.partial = partial  # the scan skipped directories: the base is never loaded whole
        self.scanned = scanned  # the scan's directory digests; None when it cannot vouch
        self.vouched = vouched  # the digests the state vouches for; None when it vouches for none
        self.loaded: set[str] | None = None  # the directories loaded, when not the whole base

    @classmethod
    def of(cls, state: State, name: str, info: ShareState | None, snap: Snapshot, on_base: bool,
           scope: Scope | None = None) -> "Vouch":
        """The shortcut for ``snap``; ``on_base``: the head is this folder's base; ``scope``: what
        ``snap`` covers, when not the whole folder."""
        scanned = snap.dir_digests() if on_base else None
        if scope is not None and scope.partial and scanned is not None:
            return cls(state, name, scope.complete(scanned, snap), scope.vouched, partial=True)
        vouched = vouched_dirs(state, name, info) if scanned is not None and info is not None else None
        return cls(state, name, scanned, vouched)

    @property
    def can_vouch(self) -> bool:
        """The scan was made on the base: its directories can be vouched for after the pass."""
        return self.scanned is not None

    def whole_folder(self) -> bool:
        """Every directory is as a scan that matched the base: nothing to load or compare."""
        return self.vouched is not None and self.vouched == self.scanned

    def narrow(self, snap: Snapshot) -> Snapshot:
        """The scan cut to the directories to load (all of it when the state vouches for too few).

        Call before ``load_base``, and drop the whole scan: it is then freed
        before the rows load. The directories ``load_moved`` adds are ones
        the scan does not list, so the cut would be the same after it.
        """
        if self.vouched is not None:
            self.loaded = moved_dirs(self.scanned, self.vouched)
            if self.loaded is None and self.partial:  # its snapshot lacks what it skipped: not the whole base
                self.loaded = set(self.scanned) | set(self.vouched)
        return snap.only(self.loaded) if self.loaded is not None else snap

    def load_base(self) -> tuple[dict[str, Entry], dict[str, Stat]]:
        """The base rows and their stats, where ``narrow`` said to look."""
        if self.loaded is None:
            return self.state.load(self.name)
        tree, stats, self.loaded = load_moved(self.state, self.name, self.scanned, self.loaded)
        return tree, stats

    def remember_unchanged(self) -> None:
        """The scan matched the base everywhere: the state vouches for all its directories from now."""
        if self.scanned is not None and self.vouched != self.scanned:
            self.state.remember_scan(self.name, digest_of(self.scanned), self.scanned)

    def to_save(self, unsure: set[str] | None) -> tuple[dict[str, bytes] | None, str | None]:
        """(directory digests, their seal) for the state to save: every scanned directory's, ``UNSURE``
        for the ``unsure`` ones; (None, None) when this pass cannot vouch (the next compares the slow way)."""
        if self.scanned is None or unsure is None:
            return None, None
        keep = {d: UNSURE if d in unsure else digest for d, digest in self.scanned.items()}
        return keep, digest_of(keep)


def sizes_worth_finding(sizes: Iterable[int]) -> list[int]:
    """Those of the sizes of files to read whose copies elsewhere in the base (in directories a pass
    did not load) are worth a look for: a block or more. The look is a scan of every row of the
    state; a smaller file costs less to seal again."""
    return [s for s in sizes if s >= BLOCK_SIZE]


def vouched_dirs(state: State, name: str, info: ShareState) -> dict[str, bytes] | None:
    """The directory digests the state vouches for, if its seal still holds them (and None if not)."""
    if info.scan_digest is None:
        return None
    dirs = state.scan_dirs(name)
    return dirs if digest_of(dirs) == info.scan_digest else None


def moved_dirs(scanned: Mapping[str, bytes], vouched: Mapping[str, bytes]) -> set[str] | None:
    """The directories a pass must load: each whose digest moved, and each above one (their listings
    name it); None when that is every directory, and the base is loaded whole."""
    every = scanned.keys() | vouched.keys()
    out = {""}
    for d in every:
        if scanned.get(d) != vouched.get(d):
            while d not in out:
                out.add(d)
                d = parent_of(d)
    return out if len(out) < len(every) else None


def load_moved(
    state: State, name: str, scanned: Mapping[str, bytes], dirs: set[str],
) -> tuple[dict[str, Entry], dict[str, Stat], set[str]]:
    """The base rows in ``dirs``, and in every base directory below them that the scan no longer
    lists (a directory removed or retyped while no digest vouched for it: its rows go too).

    Returns the rows, their stats and all the directories loaded.
    """
    tree, stats = state.load_dirs(name, dirs)
    loaded = set(dirs)
    gone = _gone_dirs(tree, scanned, loaded)
    while gone:
        more, more_stats = state.load_dirs(name, gone)
        tree.update(more)
        stats.update(more_stats)
        loaded |= gone
        gone = _gone_dirs(more, scanned, loaded)
    return tree, stats, loaded


def _gone_dirs(tree: Mapping[str, Entry], scanned: Mapping[str, bytes], loaded: set[str]) -> set[str]:
    return {p for p, e in tree.items() if e.type == DIR and p not in scanned and p not in loaded}


def unvouched(
    moved: Mapping[str, Scanned], as_read: Mapping[str, Scanned], final: Mapping[str, Entry],
    base: Mapping[str, Entry], stats: Mapping[str, Stat], to_read: list[str],
    rows: Mapping[str, tuple[Entry, Stat | None]], removed: list[str],
) -> set[str]:
    """The directories where ``compare`` would not find the folder, as scanned, unchanged against
    the base a pass saves; each other directory's digest can vouch for it.

    Only what the pass read or saved needs a look: every other path matched
    its row unchanged at the pass's compare, and its row stays as it was.
    ``moved`` holds, as scanned, the files to read that ``as_read`` has with
    another stat or not at all (``sync.as_read``).
    """
    unsure = {parent_of(p) for p in removed if p in as_read or p in moved}
    for path in itertools.chain(rows, (p for p in to_read if p not in rows)):  # each once: on a first sync, in both
        entry, stat = rows[path] if path in rows else (base.get(path), stats.get(path))
        item = moved.get(path) or as_read.get(path)
        if item is None or entry is None or path not in final or not matches_base(item, entry, stat):
            unsure.add(parent_of(path))
    return unsure
