"""Three-way merge of trees: what the folder holds after a sync.

This layer adds the merge rules on top of ``tree``'s ``Entry`` and ``Tree``.
Given the base (the tree this host was last in step with), the local tree and
the remote tree, it decides path by path what the merged tree holds: a change
on one side wins over no change and over a deletion; when both sides changed a
path differently, or one side holds a file where the other holds a directory,
both versions are kept, the remote one under the name and the local one under
a conflict name (``conflict_name``). No content either side changed or added
is dropped, and every parent of a merged path is present as a directory.

It is pure, in the spirit of dulwich's ``three_way_merge``: no I/O and no
clock (the caller passes the host name and the time for conflict names), and
the result depends only on the inputs, never on their dict order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import count
from typing import Container, Mapping

from fogsync.format.tree import DIR, Entry, join, name_of, parent_of, subtree

Side = Mapping[str, Entry]  # a base, local or remote tree, read only

BOTH_CHANGED = "both-changed"  # both sides changed a path from base, differently
BOTH_ADDED = "both-added"  # both sides added a path absent from base, differently
TYPE = "type"  # one side holds a directory, file or symlink where the other holds another type
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
HOST_MAX = 64  # bytes of the host name shown in a conflict name: the tag never crowds out the name


@dataclass(frozen=True)
class Conflict:
    """A contested path: the remote version keeps ``path``, the local one moved to ``copy_path``."""

    path: str
    kind: str
    copy_path: str


@dataclass(frozen=True)
class MergeResult:
    tree: dict[str, Entry]  # sorted by path; every parent present as a directory
    conflicts: tuple[Conflict, ...]  # sorted by path


def differs(old: Entry | None, new: Entry | None) -> bool:
    """Whether a path's content changed from ``old`` to ``new``; adding and deleting count."""
    if old is None:
        return new is not None
    return not old.same_content(new)


def merge(base: Side, local: Side, remote: Side, *, host: str, now: datetime) -> MergeResult:
    """Merge ``local`` and ``remote``, both descended from ``base``; ``host`` is the local host."""
    draft = _merge_each_path(base, local, remote)
    draft = _with_parents(draft, base, local, remote)
    contested = _both_changed_differently(base, local, remote) | _files_over_directories(draft)
    taken = set(base) | set(local) | set(remote)
    conflicts = []
    for path in sorted(contested):
        copy_path = conflict_name(path, host, now, taken)
        taken.add(copy_path)
        _keep_local_as_copy(draft, path, copy_path, local[path], remote[path])
        conflicts.append(Conflict(path, _kind(base.get(path), local[path], remote[path]), copy_path))
    return MergeResult({p: draft[p] for p in sorted(draft)}, tuple(conflicts))


def conflict_name(path: str, host: str, now: datetime, taken: Container[str]) -> str:
    """Where to keep the local version of ``path``: beside it, with who and when in the name.

    ``report.txt`` -> ``report (conflict from laptop 2026-11-21 2334).txt``; the
    extension stays last, dotfiles and names without an extension get the tag
    at the end, and a taken name gets a counter inside the parentheses
    (``... 2334 2)``). ``now`` is shown in UTC (a naive ``now`` is taken as UTC).

    The name always fits in ``NAME_MAX`` bytes of UTF-8: a long stem is cut
    (on a character boundary) to make room for the tag and the extension; an
    extension too long to leave room for any stem is cut as part of the stem.
    """
    stem, extension = _split_extension(name_of(path))
    host_part = _cut_utf8(_safe_host(host), HOST_MAX)
    stamp = f"conflict from {host_part} {_as_utc(now):%Y-%m-%d %H%M}"
    tags = (stamp if n == 1 else f"{stamp} {n}" for n in count(1))
    candidates = (join(parent_of(path), _fitted(stem, f" ({tag})", extension)) for tag in tags)
    return next(c for c in candidates if c not in taken)


def _fitted(stem: str, tag: str, extension: str) -> str:
    """``stem + tag + extension``, the stem cut so the whole fits in NAME_MAX bytes."""
    room = NAME_MAX - _utf8_len(tag) - _utf8_len(extension)
    if room < 1:
        stem, extension = stem + extension, ""
        room = NAME_MAX - _utf8_len(tag)
    return f"{_cut_utf8(stem, room)}{tag}{extension}"


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _cut_utf8(text: str, limit: int) -> str:
    """The longest start of ``text`` that is at most ``limit`` bytes of UTF-8 (whole characters only)."""
    used = 0
    for i, ch in enumerate(text):
        used += _utf8_len(ch)
        if used > limit:
            return text[:i]
    return text


# --- per-path rules -----------------------------------------------------------


def _winner(b: Entry | None, l: Entry | None, r: Entry | None) -> Entry | None:
    """The entry a path keeps by the per-path rules (None: gone).

    A side's change wins over no change and over a deletion; when both changed
    differently the remote entry keeps the name (the local one is copied later).
    """
    if not differs(b, l):
        return r
    if not differs(b, r):
        return l
    return r if r is not None else l


def _merge_each_path(base: Side, local: Side, remote: Side) -> dict[str, Entry]:
    draft = {}
    for path in sorted(base.keys() | local.keys() | remote.keys()):
        entry = _winner(base.get(path), local.get(path), remote.get(path))
        if entry is not None:
            draft[path] = entry
    return draft


def _both_changed_differently(base: Side, local: Side, remote: Side) -> set[str]:
    return {
        p
        for p in local.keys() & remote.keys()
        if differs(base.get(p), local[p]) and differs(base.get(p), remote[p]) and differs(local[p], remote[p])
    }


def _kind(b: Entry | None, l: Entry, r: Entry) -> str:
    if l.type != r.type:
        return TYPE
    return BOTH_ADDED if b is None else BOTH_CHANGED


# --- structure ----------------------------------------------------------------


def _with_parents(draft: Side, base: Side, local: Side, remote: Side) -> dict[str, Entry]:
    """``draft`` plus every missing parent directory, taken from remote, else local, else base."""
    out = dict(draft)
    for path in sorted(draft):
        parent = parent_of(path)
        while parent and parent not in out:
            out[parent] = _directory_entry(parent, remote, local, base)
            parent = parent_of(parent)
    return out


def _directory_entry(path: str, *trees: Side) -> Entry:
    """The first directory entry at ``path``; a merged path's parents are directories on its side."""
    return next(t[path] for t in trees if path in t and t[path].type == DIR)


def _files_over_directories(draft: Side) -> set[str]:
    """Paths where one side's file or symlink won but the other side's changes survive below it."""
    parents = {parent_of(p) for p in draft}
    return {p for p, e in draft.items() if e.type != DIR and p in parents}


def _keep_local_as_copy(draft: dict[str, Entry], path: str, copy_path: str, l: Entry, r: Entry) -> None:
    """Give ``path`` to the remote entry and move the local one (with what survives below it) to ``copy_path``.

    When the local side holds a directory here the remote one holds a file or
    symlink, so every merged path below ``path`` came from the local side.
    """
    draft[path] = r
    if l.type == DIR:
        for below in sorted(subtree(draft, path)):
            draft[copy_path + below[len(path) :]] = draft.pop(below)
    draft[copy_path] = l


# --- naming -------------------------------------------------------------------


def _split_extension(name: str) -> tuple[str, str]:
    """'report.txt' -> ('report', '.txt'); '.bashrc', 'Makefile', 'odd.' -> (name, '')."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1 or not name[:dot].strip("."):
        return name, ""
    return name[:dot], name[dot:]


def _safe_host(host: str) -> str:
    return host.replace("/", "-").replace("\0", "-")


def _as_utc(now: datetime) -> datetime:
    return now.astimezone(timezone.utc) if now.tzinfo else now
