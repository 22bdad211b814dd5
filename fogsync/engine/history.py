"""History: the versions of one path across a share's history, the changes between two roots,
and the commits that only rewrite history (a forget, a mark, a sweep: FORMAT.md 8).

``file_history`` reads only the listings along the path, each distinct
listing once (a directory unchanged between roots keeps its bptr, so it is
read once for all of them). ``diff`` compares two trees listing by listing and
skips every subtree whose bptr is the same on both sides, as dulwich's
``tree_changes`` does. ``commit_meta`` writes a root with the head's tree on
top of the head, with the section-8 keys a forget or a prune sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from fogsync.format import crypto
from fogsync.format.blocks import BlobWriter
from fogsync.format.roots import Root, format_date, inherited, with_gc1
from fogsync.format.tree import DIR, FILE, Entry, join
from fogsync.repo.repository import Repo

ADDED, REMOVED, MODIFIED, TYPE_CHANGED = "+", "-", "M", "T"


# --- the versions of one path ------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One root of the history where a path's content or type changed, or where it went away."""

    ref: bytes  # the root
    version: int
    date: str  # the root's commit date
    host: str  # the host that made that commit
    entry: Entry | None  # None: the path was deleted in this root


def file_history(repo: Repo, head: bytes | None, path: str) -> list[Version]:
    """Newest first: each root where ``path`` took new content or type, or was deleted."""
    parts = [p for p in path.split("/") if p]
    listings: dict[bytes, dict[str, Entry]] = {}
    runs: list[tuple[Version, tuple | None]] = []  # the oldest root of each run of one state
    for ref, root in repo.history(head):
        entry = _entry_at(repo, root.root, parts, listings)
        key = _content_key(entry)
        here = Version(ref, root.version, root.date, root.host, entry)
        if runs and runs[-1][1] == key:
            runs[-1] = (here, key)  # same state as the newer root: this older root is where it began
        else:
            runs.append((here, key))
    if runs and runs[-1][1] is None:
        runs.pop()  # absent before it was first made: not a deletion
    return [v for v, _ in runs]


def _entry_at(repo: Repo, top: bytes, parts: list[str], listings: dict[bytes, dict[str, Entry]]) -> Entry | None:
    ref = top
    for i, name in enumerate(parts):
        entries = listings.get(ref)
        if entries is None:
            entries = listings[ref] = dict(repo.read_listing(ref))
        entry = entries.get(name)
        if entry is None or i == len(parts) - 1:
            return entry
        if entry.type != DIR or entry.bptr is None:
            return None
        ref = entry.bptr
    return None


def _content_key(e: Entry | None) -> tuple | None:
    """What makes a new version: the type and the content (a new mtime alone does not)."""
    if e is None:
        return None
    return (e.type, e.sha256 if e.type == FILE else None, e.target, e.exec if e.type == FILE else None)


# --- the changes between two roots --------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    kind: str  # ADDED, REMOVED, MODIFIED or TYPE_CHANGED
    path: str
    old: Entry | None
    new: Entry | None


def diff(repo: Repo, old_top: bytes | None, new_top: bytes | None) -> Iterator[Change]:
    """Every path that differs between two top listings, in path order; subtrees with equal bptrs skipped.

    A directory added or removed is reported with everything under it; a
    file that became a directory (or back) is a T line, and the paths under
    the directory are added or removed.
    """
    yield from _diff_dirs(repo, "", old_top, new_top)


def _diff_dirs(repo: Repo, path: str, old_ref: bytes | None, new_ref: bytes | None) -> Iterator[Change]:
    if old_ref == new_ref:
        return
    old = dict(repo.read_listing(old_ref)) if old_ref else {}
    new = dict(repo.read_listing(new_ref)) if new_ref else {}
    for name in sorted(old.keys() | new.keys()):
        child, a, b = join(path, name), old.get(name), new.get(name)
        if a is None:
            yield Change(ADDED, child, None, b)
        elif b is None:
            yield Change(REMOVED, child, a, None)
        elif a.type != b.type:
            yield Change(TYPE_CHANGED, child, a, b)
        elif a.type != DIR and _content_key(a) != _content_key(b):
            yield Change(MODIFIED, child, a, b)
        yield from _diff_dirs(repo, child, _dir_ref(a), _dir_ref(b))


def _dir_ref(e: Entry | None) -> bytes | None:
    return e.bptr if e is not None and e.type == DIR else None


# --- commits that rewrite only history -----------------------------------------------------------


def seal_small(repo: Repo, writer: BlobWriter, plaintext: bytes, compress: bool) -> bytes:
    """Seal a blob for a root's key (a kept list, forgotten roots, candidates); its packed bptr."""
    (ref,) = writer.resolve([writer.write_bytes(crypto.seal(repo.keys, plaintext, compress=compress))])
    return ref


def commit_meta(
    repo: Repo, writer: BlobWriter, head_ref: bytes, head: Root, host: str, now: datetime, **keys
) -> tuple[bytes, Root]:
    """Seal a root with the head's tree on top of the head: ``requires`` gains "gc1", ``gc`` is
    the head's unless ``keys`` set it, and ``keys`` add ``kept``/``forgot``. Not yet swapped in."""
    fields = {**inherited(head), **keys}
    fields["requires"] = with_gc1(fields.get("requires") or ())
    root = Root(version=head.version + 1, prev=head_ref, date=format_date(now), host=host, root=head.root, **fields)
    ref = seal_small(repo, writer, root.encode(), compress=False)
    return ref, root
