"""Private places: the state dir (0700) and the files in it (0600), tightened if they were looser.

The state dir holds every file name, size and hash of every share (the
SQLite database), spool files and the daemon's log and socket: other users
of the machine must not read them, whatever the umask was when it was made.
"""

from __future__ import annotations

import os
import stat

from fogsync.errors import LocalError

__all__ = ["private_dir", "private_file"]


def private_dir(path: str) -> str:
    """Make ``path`` (and its parents) if missing; the directory itself ends up mode 0700."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        _tighten(path, 0o700)
    except OSError as e:
        raise LocalError(f"cannot make {path} private (mode 0700): {e.strerror or e}") from None
    return path


def private_file(path: str, create: bool = True) -> None:
    """Make ``path`` mode 0600, creating it empty if ``create`` and it is missing."""
    try:
        if create:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        _tighten(path, 0o600)
    except FileNotFoundError:
        if create:
            raise LocalError(f"cannot create {path}: its directory vanished") from None
    except OSError as e:
        raise LocalError(f"cannot make {path} private (mode 0600): {e.strerror or e}") from None


def _tighten(path: str, mode: int) -> None:
    current = stat.S_IMODE(os.stat(path).st_mode)
    if current & 0o077:
        os.chmod(path, current & 0o700 | mode)
