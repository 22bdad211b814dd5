"""Entry checks: listing entries the format forbids are refused one by one, never the whole pass.

FORMAT.md section 5 says what an entry's ``size``, ``bptr`` and ``sha256``
are: a directory's are its listing's byte length and SHA-256, a symlink's
size is its target's length in UTF-8, and only a file or directory with
``size > 0`` has a ``bptr``. A file whose content is not what its entry
declares is found while it is written (``pull``, ``ListingMismatch``).

A refused entry is reported with its reason and left alone: nothing is
written at its path or below it, and the folder's path is neither
replaced nor removed (a refused entry is never taken for a deletion).
The pass goes on with every other path, and keeps the old base rows of
the refused ones, so the next pass tries them again.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

from fogsync.engine.pull import Applied
from fogsync.folder.scan import Scanned
from fogsync.format.tree import SYMLINK, Entry, join, parent_of
from fogsync.repo.repository import Repo


def entry_flaw(entry: Entry) -> str | None:
    """Why the format forbids ``entry`` as it stands alone (None: it does not)."""
    if entry.type == SYMLINK:
        length = len(entry.target.encode("utf-8", "surrogateescape"))
        if entry.size != length:
            return f"a symlink's size must be its target's length in UTF-8 ({length}), not {entry.size}"
    if entry.size == 0 and any(key == "bptr" for key, _ in entry.extra):
        return f"an entry of size 0 must have no bptr (a {entry.type} here has one)"
    return None


def listing_flaw(entry: Entry, listing: bytes) -> str | None:
    """Why a directory entry does not describe ``listing``, the JSON its bptr leads to (None: it does)."""
    sha = hashlib.sha256(listing).hexdigest()
    if entry.size != len(listing) or entry.sha256 != sha:
        return (f"a directory's size and sha256 must be its listing's ({len(listing)} bytes, {sha[:16]}...), "
                f"not {entry.size} and {(entry.sha256 or '')[:16]}...")
    return None


def load_checked_tree(
    repo: Repo, listing: bytes, known: Mapping[str, Entry] | None = None,
) -> tuple[dict[str, Entry], dict[str, str]]:
    """``repo.load_tree``, with each fetched entry checked: (the flat tree, refused path -> why).

    A refused directory's listing is still read, so its paths stay in the
    tree (a merge takes none of them for deleted); they are refused with it.
    """
    refused: dict[str, str] = {}

    def inspect(path: str, named_by: Entry | None, data: bytes, entries: list[tuple[str, Entry]]) -> None:
        refused.update(listing_refusals(path, named_by, data, entries))

    return repo.load_tree(listing, known, inspect), refused


def listing_refusals(
    path: str, named_by: Entry | None, data: bytes, entries: list[tuple[str, Entry]],
) -> dict[str, str]:
    """The refused paths of one listing: the directory ``path`` itself if ``named_by`` (its entry; None
    for the top) does not describe ``data``, and each entry the format forbids; path -> why."""
    refused = {}
    why = listing_flaw(named_by, data) if named_by is not None else None
    if why is not None:
        refused[path] = why
    for name, entry in entries:
        why = entry_flaw(entry)
        if why is not None:
            refused[join(path, name)] = why
    return refused


def under_refused(path: str, refused: Mapping[str, str]) -> bool:
    """Whether ``path`` or a directory above it is refused."""
    while path:
        if path in refused:
            return True
        path = parent_of(path)
    return False


def leave_refused_alone(
    target: Mapping[str, Entry], folder_tree: Mapping[str, Entry], last_seen: Mapping[str, Scanned],
    refused: Mapping[str, str],
) -> Mapping[str, Entry]:
    """What a pull may make the folder hold: ``target``, where every path at or below a refused entry
    holds what the folder holds there now (so it is neither written nor removed); ``target`` itself
    when nothing is refused."""
    if not refused:
        return target
    out = dict(target)
    for path in [*target, *last_seen]:
        if under_refused(path, refused):
            if path in last_seen and path in folder_tree:
                out[path] = folder_tree[path]
            else:
                out.pop(path, None)
    return out


def settle_refused(applied: Applied, refused: Mapping[str, str], trees: Iterable[Mapping[str, Entry]]) -> list[str]:
    """The problem lines of a pass's refused entries; every path at or below one is left alone
    (``applied.left_alone``), so the state keeps its old base rows and the next pass tries again."""
    refused = {**refused, **applied.refused}
    if not refused:
        return []
    for tree in trees:
        applied.left_alone.update(p for p in tree if under_refused(p, refused))
    return refused_lines(refused)


def refused_lines(refused: Mapping[str, str]) -> list[str]:
    """A problem line for each refused path, in path order."""
    return [f"refused {path!r}: {why}; left as it is in the folder" for path, why in sorted(refused.items())]
