"""GC rules: what a writer may put in a root while other hosts forget and prune (FORMAT.md 8, "Writers").

A prune deletes blocks that no root of the history reaches. A writer that
remembers content from earlier (its base tree, the state's content table)
must therefore not offer a remembered bptr once the blocks behind it may
have been marked or swept. This module adds:

- ``gc_of``: the (epoch, state) of a root's ``gc`` that writers compare;
- ``commit_keys``: the section-8 keys a pass's or a restore's root carries
  (``requires`` and ``gc`` copied from the head, a merge's union);
- ``Rules``: for one attempt of a pass, which bptrs the content index may
  offer (``content_index``), the merged tree with the head's bptr for
  content the head holds (``reconcile``), and what the state remembers
  afterwards (``to_remember``, ``gc_seen``, ``drop_contents``).

The rules are FORMAT.md's: a bptr may be (1) reachable from the head the
pass commits on top of (here: in the head's tree), (2) uploaded in this
attempt, or (3) known from earlier while the head's ``gc`` had the epoch and
state it has now, and not among the head's candidates. A lost swap starts
a new attempt (``sync.sync_share``), which compares the new head's ``gc``
with the one the state remembers, so a mark that won the race drops what the
failed attempt uploaded as well as what the host remembered.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from fogsync.engine.prune import blob_blocks
from fogsync.engine.push import ContentIndex
from fogsync.errors import FogsyncError, IntegrityError, ObjectNotFound
from fogsync.folder.state import ShareState, State
from fogsync.format.blocks import Bptr
from fogsync.format.roots import MARKED, Root, decode_candidates, inherited, merged_keys
from fogsync.format.tree import FILE, Entry, touched
from fogsync.repo.repository import Repo

NO_GC = (0, "none")  # what the state remembers for a head without ``gc``


def gc_of(root: Root | None) -> tuple[int, str]:
    """The (epoch, state) a writer remembers of a root's ``gc``."""
    return (root.gc.epoch, root.gc.state) if root is not None and root.gc is not None else NO_GC


def commit_keys(repo: Repo, head: Root | None, merged: Iterable[bytes] = ()) -> dict:
    """``requires`` and ``gc`` of a root on top of ``head`` that names ``merged`` roots it took in.

    A merged root that can no longer be read (forgotten and swept) adds
    nothing: the head descends from it, so its keys are the head's already.
    """
    keys = inherited(head)
    for ref in merged:
        try:
            other = repo.read_root(ref)
        except (ObjectNotFound, IntegrityError):
            continue
        if head is not None:
            keys = merged_keys(Root(1, None, head.date, head.host, head.root, **keys), other)
    return keys


@dataclass
class Rules:
    """What one attempt of a pass may reuse, given the head it commits on top of."""

    repo: Repo
    state: State
    name: str
    head_gc: tuple[int, str]
    trusted: bool  # what the host remembers was learnt under the head's gc: rule (3) may apply
    on_base: bool  # the head is the base: the base tree is the head's
    candidates_ref: bytes | None = None  # the head's candidates blob, while marked
    _candidates: frozenset[bytes] | None = None
    _head_bptrs: set[bytes] | None = None
    head_tree: Mapping[str, Entry] = field(default_factory=dict)

    @classmethod
    def of(cls, repo: Repo, state: State, name: str, info: ShareState, head_ref: bytes | None,
           head_root: Root | None, on_base: bool) -> "Rules":
        """The rules for an attempt on ``head_ref`` (its root ``head_root``, read if None and needed)."""
        seen = (info.gc_epoch, info.gc_state) if info.gc_state is not None else None
        if on_base and seen is not None:
            # The state saves the base and the gc it was learnt under together: they still agree.
            return cls(repo, state, name, seen, True, True)
        if head_root is None and head_ref is not None:
            head_root = repo.read_root(head_ref)
        head_gc = gc_of(head_root)
        return cls(repo, state, name, head_gc, seen == head_gc, on_base, _candidates_of(head_root))

    # --- what the content index offers --------------------------------------------------------

    def content_index(self, base_tree: Mapping[str, Entry], head_tree: Mapping[str, Entry]) -> ContentIndex:
        """The index of stored content this attempt may reuse: the head's tree always; the base
        tree and the state's content table only as far as the rules allow."""
        self.head_tree = head_tree
        index = ContentIndex(self._remembered, lambda: self.state.content_sizes(self.name) if self.trusted else set())
        index.add_tree(base_tree if self.on_base or self.trusted else self._held_by_head(base_tree))
        if head_tree is not base_tree:
            index.add_tree(head_tree)
        return index

    def vetted(self, contents: Iterable[tuple[str, int, bytes]]) -> list[tuple[str, int, bytes]]:
        """Base-tree content found by size (``State.contents_of_sizes``) that this attempt may reuse."""
        if self.on_base or self.trusted:
            return list(contents)
        head = self.head_bptrs()
        return [c for c in contents if c[2] in head]

    def _remembered(self, sha: str) -> bytes | None:
        """A bptr from the content table, rule (3): only under the same gc, and not a candidate."""
        if not self.trusted:
            return None
        ref = self.state.content(self.name, sha)
        if ref is None or self._names_candidate(ref):
            return None
        return ref

    def _held_by_head(self, tree: Mapping[str, Entry]) -> dict[str, Entry]:
        head = self.head_bptrs()
        return {p: e for p, e in tree.items() if e.type == FILE and e.bptr in head}

    def head_bptrs(self) -> set[bytes]:
        if self._head_bptrs is None:
            self._head_bptrs = {e.bptr for e in self.head_tree.values() if e.type == FILE and e.bptr is not None}
        return self._head_bptrs

    def _names_candidate(self, ref: bytes) -> bool:
        """Whether a blob uses a block the head's mark names (its block lists read, at any depth)."""
        if self.candidates_ref is None:
            return False
        if self._candidates is None:
            plain = self.repo.read_small(self.candidates_ref, "candidates")
            self._candidates = frozenset(decode_candidates(plain))
        if Bptr.unpack(ref).hash in self._candidates:
            return True
        blocks: set[bytes] = set()
        try:
            blob_blocks(self.repo, ref, blocks)
        except (ObjectNotFound, IntegrityError):
            return True  # a block list already gone: certainly not to be reused
        return not blocks.isdisjoint(self._candidates)

    # --- the merged tree ----------------------------------------------------------------------

    def reconcile(self, target: dict[str, Entry], uploaded: Iterable[bytes]) -> dict[str, Entry]:
        """``target`` with the head's bptr for every file whose content the head holds, in place.

        A merge takes entries from the base or the local side whose bptr
        the host remembers; FORMAT.md 8 wants the head's where the head
        holds the content, and no bptr the rules do not allow anywhere.
        """
        if self.on_base:
            return target
        head = self.head_tree
        by_sha: dict[str, bytes] | None = None
        fresh: set[bytes] | None = None
        for path in touched(target, head):
            e = target[path]
            if e.type != FILE or e.bptr is None:
                continue
            h = head.get(path)
            if h is not None and h.bptr == e.bptr:
                continue
            if by_sha is None:
                by_sha = {x.sha256: x.bptr for x in head.values() if x.type == FILE and x.bptr is not None}
            held = by_sha.get(e.sha256)
            if held is not None:
                if held != e.bptr:
                    target[path] = e.with_bptr(held)
                continue
            if fresh is None:
                fresh = set(uploaded)
            if e.bptr not in fresh and not (self.trusted and not self._names_candidate(e.bptr)):
                raise FogsyncError(
                    f"share {self.name!r}: {path!r} would refer to stored content that a prune may have "
                    "deleted; not committing (run the sync again)"
                )
        return target

    # --- what the state remembers afterwards --------------------------------------------------

    @property
    def drop_contents(self) -> bool:
        """The content table was learnt under another gc: it goes when the pass saves."""
        return not self.trusted

    def to_remember(self, contents: list[tuple[str, int, bytes]], uploaded: Iterable[bytes]) -> list[tuple[str, int, bytes]]:
        """Content for the state's content table: under another gc, only what this attempt may use."""
        if self.trusted:
            return contents
        allowed = self.head_bptrs() | set(uploaded)
        return [c for c in contents if c[2] in allowed]

    def gc_seen(self, committed: Root | None, settled: bool) -> tuple[int, str] | None:
        """The gc the saved state was learnt under; None keeps the old one.

        A pass that left paths unsettled keeps its old base rows, which the
        rules did not vet: the state keeps the old gc too, so the next pass
        vets them again.
        """
        if not settled and not self.trusted:
            return None
        return gc_of(committed) if committed is not None else self.head_gc


def _candidates_of(root: Root | None) -> bytes | None:
    gc = root.gc if root is not None else None
    return gc.candidates if gc is not None and gc.state == MARKED else None


@dataclass
class Lost:
    block: bool = False  # the attempt read a block that a prune deleted after the attempt read the head


@contextmanager
def pruned_under(repo: Repo, attempt: Any) -> Iterator[Lost]:
    """Turn a missing block into a new attempt when the head has moved since ``attempt`` read it.

    A reader is not protected by the rules: with a short grace, the roots it
    reads from can be forgotten, marked and swept while it pulls. The new
    head no longer needs those blocks, so the pass starts again from it; a
    block missing under an unchanged head is a damaged store, and stays an error.
    """
    lost = Lost()
    try:
        yield lost
    except ObjectNotFound:
        head = getattr(attempt, "head", None)
        if head is None or repo.read_head().tag == head.tag:
            raise
        lost.block = True
