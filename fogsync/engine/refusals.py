"""Refusals: a pass stops before one host's mistake, or the store's, becomes every host's loss.

This module adds the checks a pass makes before it touches the folder or
the store. Three of them (CLI.md, "Refusals that protect the share") raise
a ``Refusal`` whose one line says why and what to run:

- ``check_folder``: the folder must hold the marker ``add-share`` left
  (``folder.marker``): an unmounted disk or a folder put in its place lacks
  it. A share with no base yet gets its marker on its first pass; a share
  synced before markers existed gets it on its next pass if its folder
  still holds more than half of the base's files (``holds_most``).
- ``check_descent``: the store's head must descend (FORMAT.md 8, "Descent")
  from the newest root this host committed or synced (``remember_seen``,
  kept in the state); else the store was rolled back or forked. With
  ``Share.accept_rollback`` the head becomes the base instead
  (``State.rebase``): the pass then keeps every file of the folder and
  commits it on top, sealing again every file, as the store may have lost
  the blocks the old base named.
- ``check_deletions``: local changes that delete more than half of the
  files of a share holding more than 20 wait for ``Share.allow_mass_delete``
  (rclone bisync's ``--max-delete`` default).

And two refuse a store or a host name that cannot be this share's as this
host knew it: ``check_head_kept`` (a store with no head where this host
synced before) and ``check_namesake`` (another host committing under this
host's name).
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

from fogsync.errors import ConfigError, FogsyncError, Refusal
from fogsync.folder.marker import MARKER, has_marker, holds_most, write_marker
from fogsync.folder.scan import Changes
from fogsync.folder.state import ShareState
from fogsync.format.roots import Root
from fogsync.format.tree import DIR, Entry
from fogsync.repo.repository import Head

log = logging.getLogger(__name__)

MASS_DELETE_FILES = 20  # a share holding more files than this ...
MASS_DELETE_SHARE = 0.5  # ... refuses local changes that delete more than this share of them


class FolderRefusal(Refusal):
    """The folder is not there or lacks its marker: the daemon tries again on its own (a disk mounted later)."""

    retries_alone = True


def check_folder(share, info: ShareState) -> None:
    """Refuse a folder that is not the one added; give a marker to one that has nothing to lose or
    that still holds its files (synced before markers existed)."""
    folder, name, state = share.folder, share.name, share.state
    if not os.path.isdir(folder):
        raise FolderRefusal(f"share {name!r}: its folder {folder} is not there (an unmounted disk?): "
                            f"mount or recreate it, then sync again")
    if has_marker(folder):
        if not info.folder_marked:
            state.mark_folder(name)
        return
    if info.base is None or (not info.folder_marked and holds_most(folder, state.file_paths(name))):
        write_marker(folder, name)
        state.mark_folder(name)
        return
    raise FolderRefusal(
        f"share {name!r}: its folder {folder} lacks the marker file {MARKER}, so it is not the folder that was "
        f"synced (an unmounted disk? a folder put in its place?); nothing was touched: mount the disk or put the "
        f"folder back; if {folder} is the share's folder, create the marker (touch '{folder}/{MARKER}') and sync again"
    )


def check_descent(share, info: ShareState, head: Head) -> bool:
    """Refuse a head that does not descend from the newest root this host has seen.

    With ``share.accept_rollback`` the head becomes the base instead: True
    then (the caller reads the share's state again).
    """
    if head.root is None or info.base is None:
        return False
    seen, version = _seen(share, info)
    if seen is None or head.root == seen or share.repo.descends(head.root, seen, version):
        return False
    shown = share.repo.read_root(head.root)
    if not share.accept_rollback:
        raise Refusal(
            f"share {share.name!r}: the store shows v{shown.version} (root {head.root.hex()[:16]}), which does not "
            f"descend from v{version} (root {seen.hex()[:16]}) that this host last saw: the store was rolled back "
            f"or restored from an old copy; nothing was touched; run 'fogsync sync {share.name} --accept-rollback' "
            f"to keep every file of this folder and commit them on top of the store's head"
        )
    log.warning("%s: the store went back from v%d to v%d: taking its head as the base and committing the folder "
                "on top of it (--accept-rollback)", share.name, version, shown.version)
    share.state.rebase(share.name, head.root, share.repo.load_tree(shown.root), shown.version)
    return True


def _seen(share, info: ShareState) -> tuple[bytes | None, int]:
    """The newest root this host has seen; a state from before it was kept takes its base's."""
    if info.seen_root is not None:
        return info.seen_root, info.seen_version
    try:
        version = share.repo.read_root(info.base).version
    except FogsyncError:
        return None, 0  # the base's root is gone from the store: the next pass remembers its own
    share.state.remember_seen(share.name, info.base, version)
    return info.base, version


def remember_seen(share, ref: bytes | None, root: Root | None) -> None:
    """After a pass: ``ref`` (``root``) is the newest root this host has committed or synced."""
    if ref is not None and root is not None:
        share.state.remember_seen(share.name, ref, root.version)


def check_head_kept(share, base: bytes | None, head: Head) -> None:
    """A store that lost a share this host synced must not make the folder look deleted."""
    if base is not None and head.root is None:
        raise FogsyncError(
            f"{share.repo.where()} has no head, but this host synced it before: wrong store, or the "
            f"store lost the share; refusing to touch {share.folder} (remove-share and add-share to start over)"
        )


def check_namesake(share, base: bytes | None, head: bytes | None) -> None:
    """A root since the base made under this host's name, but not by this host: two hosts share a name.

    Only the roots between the base and the head are read; the store learns nothing.
    """
    if base is None or head is None or head == base:
        return
    try:
        floor = share.repo.read_root(base).version  # a store rolled back below the base: stop there too
    except FogsyncError:
        return
    mine = {}
    for ref, root in share.repo.history(head):
        if ref == base or root.version <= floor:
            break
        if root.host == share.host:
            mine[ref] = root
    own = share.state.own_roots(share.name, mine)
    for ref, root in mine.items():
        if ref not in own:
            raise ConfigError(
                f"another host also calls itself {share.host!r} in share {share.name!r} (root v{root.version}): "
                "give each host its own name with --host or 'host' in the config"
            )


def check_deletions(share, base: Mapping[str, Entry], changes: Changes, remote: Mapping[str, Entry]) -> None:
    """Refuse local changes that delete more than half of the files of a share that holds more than 20.

    A deletion is a base file the scan did not find that the remote tree
    still holds: another host's deletion, pulled, is not this host's.
    """
    if share.allow_mass_delete:
        return
    gone = [p for p, e in base.items() if e.type != DIR and p not in changes.tree and p in remote]
    least = int(MASS_DELETE_FILES * MASS_DELETE_SHARE)  # fewer deletions can never be too many
    if len(gone) <= least:
        return
    reading = set(changes.to_read)
    deleted = sum(1 for p in gone if p not in reading)
    if deleted <= least:
        return
    total = share.state.count_files(share.name)
    if total > MASS_DELETE_FILES and deleted > total * MASS_DELETE_SHARE:
        raise Refusal(
            f"share {share.name!r}: this host's changes would delete {deleted} of the share's {total} files "
            f"(more than half); nothing was touched: put them back, or run "
            f"'fogsync sync {share.name} --allow-mass-delete' to commit the deletions"
        )
