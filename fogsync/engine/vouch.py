"""Vouch: a pass looks only where the folder moved.

This module adds the directory-digest shortcut of a pass (and of
``status``). The state vouches for each directory whose entries a pass
found unchanged against the base, by the digest of its scan
(``Snapshot.dir_digests``), sealed by one digest of them all. A later scan
whose digests all match needs no comparing; otherwise only the directories
whose digest moved, and those above them (their listings name them), are
loaded and compared (``moved_dirs``). A pass off its base (pulling another
host's commit) trusts the digests too, but only once it knows every
directory where the head moved since the base (``remote``), and loads those
whatever their digest (``also``): the merge changes the base nowhere else.
After any pass, each directory of its scan it left as it found it is
vouched for (``unvouched``).

A partial pass (``Scope``, given ``DirHints``: where a watcher saw the
folder change) goes one step further: it lists only the directories named,
those where the head moved, those above them and those the state does not
vouch for, and takes every
other directory's digest from the state, as the scan would have found it.
It falls back to a full scan whenever the state vouches for no scan, or
the partial one cannot vouch (part of it unreadable). A directory a pass
could not vouch for keeps an ``UNSURE`` digest, so that partial passes
look at it again until one can.

What a partial pass does costs what it names, not the share: it keeps the
vouched digests as they were and says only where it found them otherwise
(``ScanDigests``), the state writes just those rows, and the seal moves by
the directories that changed (``scan.resealed``). A long-lived process
(the daemon) keeps the vouched digests between passes (``VouchMemo``),
trusting its copy only while the state's seal is the one it holds: a pass
another process saves (``sync NAME`` beside the daemon) moves the seal, and
the next pass reads the state's digests again.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Iterator, Mapping

from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import (
    Scanned,
    Snapshot,
    Stat,
    digest_of,
    matches_base,
    resealed,
    scan,
)
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


class Vouched:
    """The directory digests a state's seal holds, and what a partial pass asks of them."""

    def __init__(self, dirs: dict[str, bytes], seal: str) -> None:
        self.dirs, self.seal = dirs, seal
        self.unsure = {d for d, digest in dirs.items() if digest == UNSURE}
        self._children: dict[str, set[str]] | None = None
        self._whole: bool | None = None

    @property
    def whole(self) -> bool:
        """They are a whole scan's: the top's, and each directory's parent's (a remembered scan with
        holes tells too little of what lies below them). A pass's changes keep them whole."""
        if self._whole is None:
            dirs = self.dirs
            self._whole = "" in dirs and all(not d or parent_of(d) in dirs for d in dirs)
        return self._whole

    def children(self, where: str) -> Collection[str]:
        """The directories directly in ``where`` that have a digest."""
        if self._children is None:
            children: dict[str, set[str]] = {}
            for d in self.dirs:
                if d:
                    children.setdefault(parent_of(d), set()).add(d)
            self._children = children  # whole, or not at all, to a reader in another thread
        return self._children.get(where, ())

    def below(self, top: str) -> set[str]:
        """``top`` and every directory under it that has a digest."""
        out, todo = set(), [top]
        while todo:
            d = todo.pop()
            out.add(d)
            todo.extend(self.children(d))
        return out

    def change(self, written: Mapping[str, bytes], gone: Collection[str], seal: str) -> None:
        """Make them what a save of ``written`` and ``gone`` left in the state, sealed by ``seal``."""
        for d in gone:
            del self.dirs[d]
            self.unsure.discard(d)
            if self._children is not None and d:
                self._children[parent_of(d)].discard(d)
        for d, digest in written.items():
            if self._children is not None and d and d not in self.dirs:
                self._children.setdefault(parent_of(d), set()).add(d)
            self.dirs[d] = digest
            (self.unsure.add if digest == UNSURE else self.unsure.discard)(d)
        self.seal = seal


class VouchMemo:
    """The digests the state vouches for of one share, kept between the passes of one process.

    A pass without one reads them from the state and checks their seal
    (O(directories)); with one, only the first pass does, and each after it
    while the state's seal is still the one held. Whoever saves a pass's
    digests (``Vouch.saved``) updates the copy held, under ``lock``; a
    reader in another thread (the daemon's ``status``) holds it too.
    """

    def __init__(self) -> None:
        self._held: Vouched | None = None
        self.lock = threading.Lock()

    def vouched(self, state: State, name: str, info: ShareState | None) -> Vouched | None:
        """The digests the state vouches for, if its seal holds them (None if it vouches for none)."""
        seal = info.scan_digest if info is not None else None
        if seal is None:
            return None
        if self._held is None or self._held.seal != seal:
            dirs = state.scan_dirs(name)
            self._held = Vouched(dirs, seal) if digest_of(dirs) == seal else None
        return self._held

    def hold(self, vouched: Vouched) -> None:
        self._held = vouched

    def forget(self) -> None:
        """Hold nothing: the next pass reads the state's digests. What a full scan saved is read again
        rather than kept: its strings lie among what the scan freed, and would keep it from the system."""
        self._held = None


class ScanDigests(Mapping[str, bytes]):
    """Every directory's digest after a partial scan: the vouched ones, but for ``written`` (listed,
    and found with another digest, or new) and ``gone`` (no longer there). Valid until a save
    changes ``vouched`` (``Vouch.saved``)."""

    def __init__(self, vouched: Vouched, written: dict[str, bytes], gone: set[str]) -> None:
        self.vouched, self.written, self.gone = vouched, written, gone
        self._new = sum(1 for d in written if d not in vouched.dirs)

    def __getitem__(self, d: str) -> bytes:
        if d in self.written:
            return self.written[d]
        if d in self.gone:
            raise KeyError(d)
        return self.vouched.dirs[d]

    def __contains__(self, d: object) -> bool:
        return d in self.written or (d not in self.gone and d in self.vouched.dirs)

    def __iter__(self) -> Iterator[str]:
        yield from self.written
        yield from (d for d in self.vouched.dirs if d not in self.written and d not in self.gone)

    def __len__(self) -> int:
        return len(self.vouched.dirs) - len(self.gone) + self._new

    def moved(self) -> set[str]:
        """The directories whose digest is not the vouched one."""
        return self.written.keys() | self.gone


class _Skipped:
    """The directories a partial scan does not list: vouched for, neither named nor above one named,
    nor in a tree named."""

    def __init__(self, vouched: Mapping[str, bytes], listed: Collection[str], trees: tuple[str, ...]) -> None:
        self.vouched, self.listed, self.trees = vouched, listed, trees

    def __contains__(self, d: str) -> bool:
        return d in self.vouched and d not in self.listed and not d.startswith(self.trees)


class Scope:
    """What a pass scans: the whole folder, or (partial) only where it may have moved.

    A partial scope lists the directories hinted at, every directory above
    them, each directory the state holds ``UNSURE``, and every directory the
    state does not vouch for at all (new ones); the others are skipped, and
    ``complete`` puts their vouched digests back beside the scan's. A full
    scope on the base lists everything but keeps only the entries a pass
    may load (``scan``'s ``vouched``): a big share's no-op pass holds its
    directory digests, not its entries.
    """

    def __init__(self, vouched: Vouched | None = None, listed: Collection[str] = (),
                 trees: tuple[str, ...] = (), known: Vouched | None = None, keep: Collection[str] = ()) -> None:
        self.vouched = vouched  # the state's digests; None for a full scan
        self.skip = _Skipped(vouched.dirs, listed, trees) if vouched is not None else ()
        self.known = known  # the state's digests, for a full scan to trust (``scan``'s ``vouched``)
        self.keep = keep  # directories whose entries a full scan keeps whatever their digest

    @property
    def partial(self) -> bool:
        return self.vouched is not None

    @classmethod
    def of(cls, memo: VouchMemo, state: State, name: str, info: ShareState | None,
           hints: DirHints | None, trusted: bool = True, also: Collection[str] = ()) -> "Scope":
        """A partial scope for ``hints`` if the state vouches for a whole scan; else a full one, which
        trusts the state's digests (``known``) when there are any and the pass may (``trusted``: on its
        base, or pulling only where the head moved). ``also``: directories the pass loads whatever
        their digest (where the head moved), which any scope lists.

        Pass None as ``hints`` for a full scan.
        """
        # Read before any scan, also for a full one: what the memo keeps between passes then lies
        # apart from what the scan frees, which the process can give back.
        vouched = memo.vouched(state, name, info)
        if vouched is None or not trusted:
            return cls()
        if hints is None or "" in hints.trees or not vouched.whole:
            return cls(known=vouched, keep=also)
        listed = _with_parents(itertools.chain(hints.dirs, hints.trees, vouched.unsure, also))
        return cls(vouched, listed, tuple(t + "/" for t in hints.trees))

    def scan(self, folder: str, ignore: Ignore, clock: Callable[[], int] = time.time_ns) -> Snapshot:
        """The folder's scan within this scope; a full one when a partial one cannot vouch."""
        if self.partial:
            snap = scan(folder, ignore, clock, self.skip)
            if not snap.unreadable:
                return snap
            self.vouched, self.skip = None, ()
        elif self.known is not None:
            snap = scan(folder, ignore, clock, vouched=self.known.dirs, keep=self.keep)
            if not snap.unreadable:
                return snap
            # Part of the folder unreadable: no digest vouches, and the pass compares every entry.
        return scan(folder, ignore, clock)

    def complete(self, digests: dict[str, bytes], snap: Snapshot) -> ScanDigests:
        """Every directory's digest: the scan's, and the vouched one of each skipped directory still
        there (its parent's listing has it as a directory, or it lies below one such).

        Looks only at the directories listed and their vouched subdirectories:
        one not listed is gone exactly when the nearest listed directory above
        it no longer has the subdirectory on its way as a directory.
        """
        vouched = self.vouched
        written = {d: digest for d, digest in digests.items() if vouched.dirs.get(d) != digest}
        gone: set[str] = set()
        for where, _ in snap.listed:
            for d in vouched.children(where):
                if d not in digests and d not in gone:
                    item = snap.items.get(d)
                    if item is None or item.type != DIR:
                        gone |= vouched.below(d)
        return ScanDigests(vouched, written, gone)


def _with_parents(dirs) -> set[str]:
    out = {""}
    for d in dirs:
        while d not in out:
            out.add(d)
            d = parent_of(d)
    return out


class Vouch:
    """What the state vouches for of one scan: which directories need loading, and what to remember."""

    def __init__(self, state: State, name: str, scanned: Mapping[str, bytes] | None, vouched: Vouched | None,
                 memo: VouchMemo, also: Collection[str] = ()) -> None:
        self.state, self.name, self.memo = state, name, memo
        self.scanned = scanned  # the scan's directory digests; None when it cannot vouch
        self.vouched = vouched  # the digests the state vouches for; None when it vouches for none
        self.also = also  # directories to load whatever their digest (where the head moved)
        self.loaded: set[str] | None = None  # the directories loaded, when not the whole base
        self._saving: tuple | None = None  # what ``to_save`` gave the state, for ``saved``

    @classmethod
    def of(cls, state: State, name: str, info: ShareState | None, snap: Snapshot, trusted: bool,
           scope: Scope | None = None, memo: VouchMemo | None = None, also: Collection[str] = ()) -> "Vouch":
        """The shortcut for ``snap``; ``trusted``: the state's digests may vouch (``Scope.of``);
        ``scope``: what ``snap`` covers, when not the whole folder; ``memo``: the digests kept since the
        last pass; ``also``: directories to load whatever their digest (``Scope.of``)."""
        memo = memo or VouchMemo()
        scanned = snap.dir_digests()
        if scope is not None and scope.partial and scanned is not None:
            return cls(state, name, scope.complete(scanned, snap), scope.vouched, memo, also)
        # A merge may change rows the state's digests vouch for anywhere, unless the pass loads
        # every directory where the head moved (``remote``): untrusted, none is.
        # The scan can still vouch, after the pass, for the directories the pass left as it found them.
        vouched = memo.vouched(state, name, info) if scanned is not None and trusted else None
        return cls(state, name, scanned, vouched, memo, also)

    @property
    def partial(self) -> bool:
        """The scan skipped directories: the base is never loaded whole."""
        return isinstance(self.scanned, ScanDigests)

    @property
    def can_vouch(self) -> bool:
        """The scan covers the folder's directories (none unreadable): they can be vouched for after the pass."""
        return self.scanned is not None

    def whole_folder(self) -> bool:
        """Every directory is as a scan that matched the base: nothing to load or compare."""
        if self.vouched is None:
            return False
        if self.partial:
            return not self.scanned.moved()
        return self.vouched.dirs == self.scanned

    def narrow(self, snap: Snapshot) -> Snapshot:
        """The scan cut to the directories to load (all of it when the state vouches for too few).

        Call before ``load_base``, and drop the whole scan: it is then freed
        before the rows load. The directories ``load_moved`` adds are ones
        the scan does not list, so the cut would be the same after it.
        """
        if self.partial:  # its snapshot lacks what it skipped: never the whole base
            self.loaded = _with_parents(itertools.chain(self.scanned.moved(), self.also))
        elif self.vouched is not None:
            self.loaded = moved_dirs(self.scanned, self.vouched.dirs)
            if self.loaded is not None:
                self.loaded |= _with_parents(self.also)
        return snap.only(self.loaded) if self.loaded is not None else snap

    def load_base(self, ignore: Ignore, have: tuple[dict[str, Entry], dict[str, Stat], set[str]] | None = None,
                  ) -> tuple[dict[str, Entry], dict[str, Stat]]:
        """The base rows and their stats, where ``narrow`` said to look; ``ignore``: the share's exclude
        rules (``load_moved``); ``have``: (rows, stats, directories) already loaded, not loaded again."""
        if self.loaded is None:
            return self.state.load(self.name)
        tree, stats, self.loaded = load_moved(self.state, self.name, self.scanned, self.loaded, ignore, have)
        return tree, stats

    def remember_unchanged(self) -> None:
        """The scan matched the base everywhere: the state vouches for all its directories from now."""
        if self.scanned is None:
            return
        if self.partial:
            if self.scanned.moved():
                written, gone, seal = self._change(())
                self.state.remember_scan(self.name, seal, delta=(self.vouched.seal, written, gone))
                self._saving = (written, gone, seal)
                self.saved()
        elif self.vouched is None or self.vouched.dirs != self.scanned:
            seal = digest_of(self.scanned)
            self.state.remember_scan(self.name, seal, self.scanned)
            self.memo.forget()

    def to_save(self, unsure: set[str] | None) -> dict:
        """What the state is to save of the directory digests (``State.save``'s keywords): every
        scanned directory's, ``UNSURE`` for the ``unsure`` ones, and their seal; no seal when this pass
        cannot vouch (the next compares the slow way). A partial pass gives only what changed."""
        self._saving = None
        if self.scanned is None or unsure is None:
            return {"scan_digest": None}
        if self.partial:
            written, gone, seal = self._saving = self._change(unsure)
            return {"scan_digest": seal, "scan_delta": (self.vouched.seal, written, gone)}
        keep = {d: UNSURE if d in unsure else digest for d, digest in self.scanned.items()}
        seal = digest_of(keep)
        self._saving = ()
        return {"scan_digest": seal, "scan_dirs": keep}

    def saved(self) -> None:
        """The state saved what ``to_save`` gave it: the memo holds that from now on."""
        if self._saving is None:
            return
        if self.partial:
            with self.memo.lock:
                self.vouched.change(*self._saving)
                self.memo.hold(self.vouched)
        else:
            self.memo.forget()
        self._saving = None

    def _change(self, unsure: Collection[str]) -> tuple[dict[str, bytes], set[str], str]:
        """(digests to write, directories to drop, the seal after) of a partial scan, ``unsure`` ones
        ``UNSURE``."""
        scanned, dirs = self.scanned, self.vouched.dirs
        written = dict(scanned.written)
        written.update((d, UNSURE) for d in unsure if d in scanned)
        written = {d: digest for d, digest in written.items() if dirs.get(d) != digest}
        old = {d: dirs[d] for d in itertools.chain(scanned.gone, written) if d in dirs}
        return written, scanned.gone, resealed(self.vouched.seal, old, written)


def sizes_worth_finding(sizes: Iterable[int]) -> list[int]:
    """Those of the sizes of files to read whose copies elsewhere in the base (in directories a pass
    did not load) are worth a look for: a block or more. The look is a scan of every row of the
    state; a smaller file costs less to seal again."""
    return [s for s in sizes if s >= BLOCK_SIZE]


# Fewer directories than this, all moved, still load one by one: the base may hold many more that
# the scan does not see (a host that excludes most of its share), and a few queries cost little.
WHOLE_LOAD_MIN = 256


def moved_dirs(scanned: Mapping[str, bytes], vouched: Mapping[str, bytes]) -> set[str] | None:
    """The directories a pass must load: each whose digest moved, and each above one (their listings
    name it); None when that is every directory, at least ``WHOLE_LOAD_MIN`` of them, and the base is
    loaded whole."""
    every = scanned.keys() | vouched.keys()
    out = {""}
    for d in every:
        if scanned.get(d) != vouched.get(d):
            while d not in out:
                out.add(d)
                d = parent_of(d)
    return out if len(out) < len(every) or len(out) < WHOLE_LOAD_MIN else None


def load_moved(
    state: State, name: str, scanned: Mapping[str, bytes], dirs: set[str],
    ignore: Ignore, have: tuple[dict[str, Entry], dict[str, Stat], set[str]] | None = None,
) -> tuple[dict[str, Entry], dict[str, Stat], set[str]]:
    """The base rows in ``dirs``, and in every base directory below them that the scan no longer
    lists (a directory removed or retyped while no digest vouched for it: its rows go too), but
    for those ``ignore`` excludes (the scan leaves them out; their rows stay as they are, ``excluded.py``);
    ``have``: (rows, stats, directories among ``dirs``) already loaded, taken as they are.

    Returns the rows, their stats and all the directories loaded.
    """
    had_rows, had_stats, had = have or ({}, {}, set())
    tree, stats = state.load_dirs(name, dirs - had)
    tree.update(had_rows)
    stats.update(had_stats)
    loaded = set(dirs)
    gone = _gone_dirs(tree, scanned, loaded, ignore)
    while gone:
        more, more_stats = state.load_dirs(name, gone)
        tree.update(more)
        stats.update(more_stats)
        loaded |= gone
        gone = _gone_dirs(more, scanned, loaded, ignore)
    return tree, stats, loaded


def _gone_dirs(tree: Mapping[str, Entry], scanned: Mapping[str, bytes], loaded: set[str], ignore: Ignore) -> set[str]:
    return {p for p, e in tree.items()
            if e.type == DIR and p not in scanned and p not in loaded and not ignore.ignored(p, True)}


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
