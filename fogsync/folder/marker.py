"""The folder marker: a file ``add-share`` leaves at the top of a share folder.

A folder that lacks it is not the folder that was added: an unmounted disk
(its mount point is an empty directory) or a folder put in its place. The
engine refuses to sync such a folder (``engine.refusals``), so it never
looks like every file deleted. The marker's name starts with ``.fogsync-``,
which the built-in ignore rules (``ignore.BUILTIN``) leave out: it is never
synced nor shown as a change. It names the share, never its key; only its
presence counts.
"""

from __future__ import annotations

import os
import stat

from fogsync.errors import LocalError
from fogsync.folder.ignore import TEMP_PREFIX
from fogsync.platform.fsync import fsync_dir, write_all

MARKER = f"{TEMP_PREFIX}folder"


def marker_path(folder: str) -> str:
    return os.path.join(folder, MARKER)


def has_marker(folder: str) -> bool:
    """Whether ``folder`` holds its marker, a regular file (a symlink does not count)."""
    try:
        return stat.S_ISREG(os.lstat(marker_path(folder)).st_mode)
    except OSError:
        return False


def write_marker(folder: str, share: str) -> None:
    """Leave the marker of share ``share`` in ``folder`` (an existing one is left as it is)."""
    text = (f"This folder is the FogSync share {share!r}. Leave this file here: FogSync refuses to sync\n"
            "the folder without it, so that an unmounted disk or a folder put in its place is never\n"
            "taken for every file deleted. It is never synced.\n")
    path = marker_path(folder)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return
    except OSError as e:
        raise LocalError(f"cannot write the folder marker {path}: {e.strerror or e}") from None
    try:
        write_all(fd, text.encode("utf-8"))
        os.fsync(fd)
    except OSError as e:
        raise LocalError(f"cannot write the folder marker {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    fsync_dir(folder)


def holds_most(folder: str, paths: list[str]) -> bool:
    """Whether more than half of ``paths`` (relative, POSIX) are in ``folder``; True when there are none."""
    need = len(paths) // 2 + 1
    found = 0
    for rel in paths:
        if os.path.lexists(os.path.join(folder, *rel.split("/"))):
            found += 1
            if found >= need:
                return True
    return not paths
