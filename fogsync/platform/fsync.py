"""Writing and flushing files whole: the loops and syscalls that local writers share."""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Callable


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: str) -> None:
    """Make the names in ``directory`` durable (a rename is not, until its directory is synced)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(directory: str) -> None:
    """Make everything written so far on ``directory``'s file system durable: one syncfs(2), else sync(2)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def syncfs(fd: int) -> None:
    """syncfs(2) on the file system that holds ``fd``; sync(2) where libc has no syncfs."""
    call = libc_syncfs()
    if call is None:
        os.sync()
        return
    if call(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@functools.cache
def libc_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
