"""Plain helpers for tests (importable as ``helpers``: tests/ is on sys.path via conftest)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def folder_tree(folder, mtimes: bool = False) -> dict[str, tuple]:
    """What hosts of a share must agree on, path by path.

    ("dir",), ("file", bytes, exec) or ("symlink", target), each followed by
    the mtime in ns when ``mtimes``.
    """
    folder = Path(folder)
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = p.lstat()
            if stat.S_ISLNK(s.st_mode):
                item: tuple = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(s.st_mode):
                item = ("dir",)
            else:
                item = ("file", p.read_bytes(), bool(s.st_mode & stat.S_IXUSR))
            out[p.relative_to(folder).as_posix()] = item + ((s.st_mtime_ns,) if mtimes else ())
    return out
