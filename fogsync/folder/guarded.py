"""Changes in a share folder that never replace what the scan did not see, nor pass a symlink.

This layer adds the guarded steps ``pull`` places files with: a rename
into a directory descriptor (``Dirs``) that was opened from the folder
down, one name at a time without following a symlink, and that is the
very directory the file was written in; a rename that refuses to replace
anything (``rename_new``: ``renameat2`` with ``RENAME_NOREPLACE``); a
check that a path still has the stat it was scanned with (``unchanged``);
the checks made before a file is written at all (``real_parent``,
``present``); and the removal of a killed pull's temporary files
(``remove_stale``). What to write, and in what order, is ``pull``'s business.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
from typing import Callable

from fogsync.folder.scan import Scanned, Stat
from fogsync.format.tree import DIR, name_of, parent_of


def present(folder: str, paths: list[str]) -> list[str]:
    """Which of ``paths`` name something in the folder now. Nothing is looked up under a
    directory that is not there: a first pull asks once per directory, not once per file."""
    there: dict[str, bool] = {"": True}

    def is_there(path: str) -> bool:
        if path not in there:
            there[path] = is_there(parent_of(path)) and os.path.lexists(os.path.join(folder, path))
        return there[path]

    return [p for p in paths if is_there(p)]


_RENAME_NOREPLACE = 1  # linux/fs.h
_NOREPLACE_REFUSED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)  # by the file system, or the kernel


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    try:
        rename = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+
    except (AttributeError, OSError):
        return None
    rename.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rename.restype = ctypes.c_int
    return rename


class NoReplace:
    """``renameat2`` with ``RENAME_NOREPLACE`` (this C library's, unless given), and the file
    systems (``st_dev``) that refused it: each is asked once."""

    def __init__(self, renameat2: Callable[..., int] | None = None) -> None:
        self._given = renameat2
        self.refused_on: set[int] = set()

    def function(self) -> Callable[..., int] | None:
        return self._given if self._given is not None else _renameat2()


_NO_REPLACE = NoReplace()


def rename_new(dir_fd: int, tmp: str, name: str, dev: int, no_replace: NoReplace = _NO_REPLACE) -> None:
    """Rename ``tmp`` to ``name`` in directory ``dir_fd``, where the scan saw nothing;
    FileExistsError if something is there now.

    In one step where the file system allows it (``renameat2`` with
    ``RENAME_NOREPLACE``, on ``dev``): a file the person saves at that path
    a moment before is never replaced. Elsewhere, a check, then the rename.
    """
    rename = no_replace.function()
    if rename is not None and dev not in no_replace.refused_on:
        if rename(dir_fd, os.fsencode(tmp), dir_fd, os.fsencode(name), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _NOREPLACE_REFUSED:
            raise OSError(err, os.strerror(err), name)  # EEXIST makes a FileExistsError
        no_replace.refused_on.add(dev)
    if not unchanged(name, None, dir_fd):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def unchanged(path: str, item: Scanned | None, dir_fd: int | None = None) -> bool:
    """Whether the path (in ``dir_fd``, if given) still is what the scan saw (absent if it saw nothing)."""
    try:
        s = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return item is None
    if item is None:
        return False
    if item.type == DIR:
        return stat.S_ISDIR(s.st_mode)
    return Stat(s.st_size, s.st_mtime_ns, s.st_ino) == item.stat


def real_parent(folder: str, path: str) -> bool:
    """Whether ``path``'s parent is the directory it names in the folder, not reached through a
    symlink: each directory from the folder down is one, or is not there yet (``makedirs`` makes
    real ones). A few lstats, not realpath, which would resolve the folder's own path too."""
    parent = parent_of(path)
    full = folder
    for name in parent.split("/") if parent else ():
        full = os.path.join(full, name)
        try:
            mode = os.lstat(full).st_mode
        except FileNotFoundError:
            return True
        if not stat.S_ISDIR(mode):
            return False
    return True


def stat_id(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of what ``path`` names, a symlink followed: the share folder may be one
    (any other symlink on the way fails ``real_parent``)."""
    s = os.stat(path)
    return s.st_dev, s.st_ino


# Directories are opened only to name them in renames and stats: O_PATH needs no read permission.
_DIR_OPEN = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
DIRS_OPEN_MAX = 64  # descriptors one batch keeps open; more, and they are closed and opened again
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # ELOOP: a symlink met with O_NOFOLLOW


class Dirs:
    """The directories one batch renames into, each opened from the folder down, one name at a
    time and never through a symlink, then held while the batch is placed.

    A file is renamed in through the descriptor of its directory, and only
    if that is the very directory it was written in (same ``st_dev`` and
    ``st_ino``): a directory swapped for a symlink, or for another
    directory, is never written into. One open per directory and batch:
    a check of every directory on the way, for every file, was a good part
    of placing a big first pull.
    """

    def __init__(self, folder: str, open_max: int = DIRS_OPEN_MAX) -> None:
        self._folder = folder
        self._open_max = open_max
        self._open: dict[str, tuple[int, tuple[int, int]] | None] = {}  # dir -> (fd, (st_dev, st_ino))

    def __enter__(self) -> "Dirs":
        return self

    def __exit__(self, *exc) -> None:
        self._close_all()

    def fd(self, parent: str, written_in: tuple[int, int]) -> int | None:
        """A descriptor of ``parent``, if it now is the directory ``written_in``; else None."""
        found = self._held(parent)
        return found[0] if found is not None and found[1] == written_in else None

    def opened(self, parent: str) -> int | None:
        """A descriptor of ``parent`` as it is now in the folder (reached without a symlink), or None."""
        found = self._held(parent)
        return None if found is None else found[0]

    def _held(self, parent: str) -> tuple[int, tuple[int, int]] | None:
        if parent not in self._open and len(self._open) >= self._open_max:
            self._close_all()
        return self._opened(parent)

    def _opened(self, parent: str) -> tuple[int, tuple[int, int]] | None:
        if parent in self._open:
            return self._open[parent]
        found = fd = None
        try:
            if not parent:
                fd = os.open(self._folder, _DIR_OPEN)  # the folder as configured, a symlink or not
            else:
                up = self._opened(parent_of(parent))
                fd = None if up is None else os.open(name_of(parent), _DIR_OPEN | os.O_NOFOLLOW, dir_fd=up[0])
            if fd is not None:
                s = os.fstat(fd)
                found = fd, (s.st_dev, s.st_ino)
        except OSError as e:
            if fd is not None:
                os.close(fd)
            if e.errno not in _NOT_THERE:
                raise  # out of descriptors, no permission, a failing disk: the caller says which file
        self._open[parent] = found  # None: gone, or no longer a directory; nothing is renamed into it
        return found

    def _close_all(self) -> None:
        for found in self._open.values():
            if found is not None:
                os.close(found[0])
        self._open.clear()


def remove_stale(folder: str, paths: list[str], before_ns: int) -> list[str]:
    """Remove the files at ``paths`` that still are regular files whose inode last changed before
    ``before_ns``, each through a descriptor of its directory opened from the folder down (a
    directory swapped for a symlink since the scan leads nowhere). Returns the paths removed.

    For a killed pull's temporary files (``scan.Snapshot.stale_temps``): one
    that is gone, or was touched since, is left alone, and so is one that
    cannot be removed; the next pass tries again.
    """
    removed = []
    with Dirs(folder) as dirs:
        for path in paths:
            try:
                fd = dirs.opened(parent_of(path))
                if fd is None:
                    continue
                s = os.stat(name_of(path), dir_fd=fd, follow_symlinks=False)
                if stat.S_ISREG(s.st_mode) and s.st_ctime_ns < before_ns:
                    os.unlink(name_of(path), dir_fd=fd)
                    removed.append(path)
            except OSError:
                continue
    return removed
