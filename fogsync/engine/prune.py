"""Prune: delete the blocks no root of the history needs, by mark and sweep (FORMAT.md 8).

No lock: a mark commits the candidates (blocks not live from the head and
older than the grace period) as the head's ``gc``; a sweep, once the mark is
at least the grace period old, deletes the candidates still not live from
the then head and commits ``gc`` "swept". Every step is a commit, so the
head's compare-and-swap orders it against other hosts' commits; deleting is
idempotent, so a prune cut short is finished by the next. With a grace of
zero one run marks and sweeps.

The live set is every block a bptr reachable from a root of the history
points into: the roots, their listings, block lists (any depth), content,
``kept`` and ``forgot`` blobs, and the head's candidates blob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from fogsync.engine.history import commit_meta, seal_small
from fogsync.engine.progress import PRUNING, Progress, as_progress
from fogsync.errors import FogsyncError, SwapConflict
from fogsync.format import crypto
from fogsync.format.blocks import Bptr, iter_blob, unpack_bptrs
from fogsync.format.roots import (
    MARKED,
    SWEPT,
    GcState,
    Root,
    check_writable,
    decode_candidates,
    encode_candidates,
    format_date,
)
from fogsync.format.tree import DIR, FILE
from fogsync.repo.repository import Repo
from fogsync.store.base import ObjectInfo

MAX_ATTEMPTS = 8
DEFAULT_GRACE = timedelta(hours=1)


@dataclass
class PruneResult:
    """What a prune did (or, in a dry run, would do)."""

    marked: int = 0  # blocks taken as candidates by a mark in this run
    marked_bytes: int = 0
    deleted: int = 0  # objects deleted (or that would be)
    deleted_bytes: int = 0
    epoch: int | None = None  # the gc epoch the run worked in
    state: str | None = None  # the head's gc state at the end: "marked" or "swept" (None: never marked)
    waiting_until: datetime | None = None  # a mark too young to sweep: when it may be
    notes: list[str] = field(default_factory=list)


def blob_blocks(repo: Repo, ref: bytes, into: set[bytes]) -> None:
    """Add to ``into`` every block the blob ``ref`` uses: its block lists at every depth and its pieces."""
    pieces = [Bptr.unpack(ref)]
    while True:
        into.update(p.hash for p in pieces)
        if pieces[0].depth == 0:
            return
        plain = crypto.open_blob(repo.keys, b"".join(iter_blob(pieces, repo.get_block)))
        pieces = unpack_bptrs(plain)


def live_blocks(repo: Repo, head: bytes | None) -> set[bytes]:
    """Every block a root of the history reaches (FORMAT.md 8), the head's candidates blob included."""
    live: set[bytes] = set()
    listings: set[bytes] = set()
    contents: set[bytes] = set()
    first = True
    for ref, root in repo.history(head):
        blob_blocks(repo, ref, live)
        for key in (root.kept, root.forgot):
            if key is not None:
                blob_blocks(repo, key, live)
        if first and root.gc is not None and root.gc.candidates is not None:
            blob_blocks(repo, root.gc.candidates, live)
        first = False
        _listing_blocks(repo, root.root, listings, contents, live)
    return live


def _listing_blocks(repo: Repo, top: bytes, listings: set[bytes], contents: set[bytes], live: set[bytes]) -> None:
    stack = [top]
    while stack:
        ref = stack.pop()
        if ref in listings:
            continue
        listings.add(ref)
        blob_blocks(repo, ref, live)
        for _, e in repo.read_listing(ref):
            if e.bptr is None:
                continue
            if e.type == DIR:
                stack.append(e.bptr)
            elif e.type == FILE and e.bptr not in contents:
                contents.add(e.bptr)
                blob_blocks(repo, e.bptr, live)


def stored_blocks(repo: Repo) -> dict[bytes, ObjectInfo]:
    """The share's block objects by hash: one listing of the store."""
    prefix = f"{repo.share_id}/blocks/"
    found = {}
    for info in repo.store.list_objects(prefix):
        name = info.key.rpartition("/")[2]
        if len(name) == 64:
            try:
                found[bytes.fromhex(name)] = info
            except ValueError:
                continue  # not a block's name: not prune's to delete
    return found


def prune_share(
    repo: Repo, host: str, now: Callable[[], datetime], grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False, progress: Progress | Callable[[str], None] | None = None,
    before_swap: Callable[[bytes], None] = lambda ref: None,
) -> PruneResult:
    """Mark, or sweep, or both with a grace of zero (FORMAT.md 8); retries a lost swap.

    ``before_swap(ref)`` is told of each root prune commits before the head names it.
    ``progress`` hears what prune is doing as notes; a ``Progress`` also counts
    the blocks a sweep deletes.
    """
    progress = as_progress(progress)
    progress.phase(PRUNING)
    swap = _Swapper(repo, before_swap)
    result = PruneResult()
    for _ in range(MAX_ATTEMPTS * 2):
        head = repo.read_head()
        head_ref = repo.find_root(head.root)
        head_root = repo.read_root(head_ref)
        if not dry_run:
            check_writable(head_root, f"share {repo.name!r}")
        gc = head_root.gc
        result.epoch, result.state = (gc.epoch, gc.state) if gc else (None, None)
        try:
            if gc is None or gc.state == SWEPT:
                if not _mark(swap, head, head_ref, head_root, host, now, grace, dry_run, progress, result):
                    return result  # nothing to mark
                if dry_run or grace > timedelta(0):
                    return result
                continue  # a grace of zero: sweep what was just marked
            age = now() - gc.datetime
            if age < grace:
                result.waiting_until = gc.datetime + grace
                return result
            _sweep(swap, head, head_ref, head_root, gc, host, now, dry_run, progress, result)
            return result
        except SwapConflict:
            continue  # another host committed: look at the new head's gc again
    raise FogsyncError(f"share {repo.name!r}: other hosts kept committing; prune not finished (run it again)")


class _Swapper:
    """The repo, the step every prune commit takes before its head swap, and the store's listing."""

    def __init__(self, repo: Repo, before_swap: Callable[[bytes], None]) -> None:
        self.repo = repo
        self.before_swap = before_swap
        self.listed: dict[bytes, ObjectInfo] | None = None  # the mark's listing, which a sweep in the same run reuses

    def __call__(self, ref: bytes, tag: str | None) -> None:
        self.repo.wait_uploads()
        self.before_swap(ref)
        self.repo.swap_head(ref, tag)


def _mark(swap: _Swapper, head, head_ref, head_root: Root, host, now, grace, dry_run, progress, result) -> bool:
    repo = swap.repo
    progress("listing the store")
    stored = swap.listed = stored_blocks(repo)
    progress(f"{len(stored)} blocks stored; finding the live ones")
    live = live_blocks(repo, head_ref)
    cutoff = now() - grace
    candidates = {h: info for h, info in stored.items() if h not in live and info.modified <= cutoff}
    result.marked, result.marked_bytes = len(candidates), sum(i.size for i in candidates.values())
    if dry_run and grace <= timedelta(0):
        result.deleted, result.deleted_bytes = result.marked, result.marked_bytes
    if not candidates or dry_run:
        return bool(candidates)
    epoch = (head_root.gc.epoch if head_root.gc else 0) + 1
    writer = repo.writer()
    cand_ref = seal_small(repo, writer, encode_candidates(candidates.keys()), compress=True)
    gc = GcState(epoch, MARKED, format_date(now()), cand_ref)
    ref, _ = commit_meta(repo, writer, head_ref, head_root, host, now(), gc=gc)
    swap(ref, head.tag)
    result.epoch, result.state = epoch, MARKED
    return True


def _sweep(swap: _Swapper, head, head_ref, head_root: Root, gc: GcState, host, now, dry_run, progress, result) -> None:
    repo = swap.repo
    candidates = decode_candidates(repo.read_small(gc.candidates, "candidates")) if gc.candidates else []
    progress(f"sweeping {len(candidates)} candidate blocks")
    live = live_blocks(repo, head_ref)
    stored = swap.listed if swap.listed is not None else stored_blocks(repo)
    doomed = [h for h in candidates if h not in live and h in stored]
    result.deleted += len(doomed)  # a sweep redone after a lost swap finds these gone
    result.deleted_bytes += sum(stored[h].size for h in doomed)
    if dry_run:
        return
    progress.phase(PRUNING, len(doomed), sum(stored[h].size for h in doomed))
    for h in doomed:
        repo.store.delete(repo.block_key(h))
        progress.add(1, stored.pop(h).size)
    writer = repo.writer()
    swept = GcState(gc.epoch, SWEPT, format_date(now()), None)
    ref, _ = commit_meta(repo, writer, head_ref, head_root, host, now(), gc=swept)
    swap(ref, head.tag)
    result.state = SWEPT
