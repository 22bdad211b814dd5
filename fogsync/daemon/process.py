"""The daemon's process: one per state dir, and its logs.

Adds, around ``service``'s workers, an flock on ``<state_dir>/daemon.lock``
(held for the daemon's life, naming its pid, so a second daemon for the
same state dir refuses to start) and the logging: INFO to a rotating
``<state_dir>/fogsync.log``, and to stderr with ``--verbose``.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os

from fogsync.errors import FogsyncError, LocalError
from fogsync.platform.private import private_dir, private_file

LOG_BYTES, LOG_FILES = 1 << 20, 3


def lock_state_dir(state_dir: str) -> int:
    """An flock held for the daemon's life; the file names the pid that holds it."""
    path = os.path.join(state_dir, "daemon.lock")
    try:
        private_dir(state_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise LocalError(f"cannot open the daemon lock {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise FogsyncError(f"a daemon already runs for {state_dir} (pid {pid})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def setup_logging(state_dir: str, verbose: bool) -> logging.Handler:
    """INFO (DEBUG with --debug) to the rotating log file; stderr shows INFO only with --verbose."""
    root = logging.getLogger()
    level = logging.DEBUG if root.level == logging.DEBUG else logging.INFO
    logging.getLogger("fogsync").setLevel(level)
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(level if verbose else logging.WARNING)
    path = os.path.join(state_dir, "fogsync.log")
    try:
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_FILES,
                                                       encoding="utf-8")
        private_file(path, create=False)
    except OSError as e:
        raise LocalError(f"cannot open the log file {path}: {e.strerror or e}") from None
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda r: r.name.startswith("fogsync") or r.levelno >= logging.WARNING)
    root.addHandler(handler)
    return handler
