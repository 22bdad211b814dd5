"""Plain helpers for tests (importable as ``helpers``: tests/ is on sys.path via conftest)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from fogsync import crypto
from fogsync.repo import Repo
from fogsync.tree import FILE, Entry

KEYS = crypto.ShareKeys.derive(bytes(range(32)))
MTIME = 1_700_000_000_123_456_789


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


def stored(repo: Repo, data: bytes, compress: bool = False) -> Entry:
    """``data`` sealed into ``repo`` as a file entry (mtime MTIME)."""
    w = repo.writer()
    (ref,) = w.resolve([w.write(crypto.seal_stream(repo.keys, [data], compress=compress))])
    repo.wait_uploads()
    return Entry(FILE, MTIME, "h", len(data), ref, hashlib.sha256(data).hexdigest())


def small_tree(repo: Repo, files: dict[str, bytes]) -> dict[str, Entry]:
    return {p: stored(repo, d) for p, d in files.items()}


def flip_last_block(repo: Repo, entry: Entry) -> None:
    """Flip one bit in the last byte of ``entry``'s last piece, in a local store's block file."""
    last = repo.pieces(entry.bptr)[-1]
    path = os.path.join(repo.store.root, *repo.block_key(last.hash).split("/"))
    block = bytearray(open(path, "rb").read())
    block[last.end - 1] ^= 1
    open(path, "wb").write(bytes(block))


def temporary_files(folder) -> list[str]:
    """fogsync's temporary files anywhere under ``folder``."""
    return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if n.startswith(".fogsync-tmp")]


def remembered_scan_holds(share) -> bool:
    """Check the scan digest a share's state remembers against the slow way; whether there was one to check.

    A digest is a promise: the folder, scanned with that digest, matches the
    base unchanged. So when a scan now has it, ``compare`` must read nothing
    and keep every base entry, as the no-op pass it lets ``sync`` skip would.
    """
    from fogsync.ignore import Ignore
    from fogsync.scan import compare, scan

    info = share.state.share(share.name)
    if info is None or info.scan_digest is None:
        return False
    snap = scan(share.folder, Ignore.for_folder(share.folder, share.exclude), share.clock_ns)
    if snap.digest() != info.scan_digest:
        return False
    base, stats = share.state.load(share.name)
    changes = compare(snap, base, stats, share.host)
    assert changes.to_read == [], f"the remembered scan hides changed files: {changes.to_read}"
    assert changes.tree.keys() == base.keys(), f"the remembered scan hides {changes.tree.keys() ^ base.keys()}"
    assert all(changes.tree[p] is base[p] for p in base), "the remembered scan hides a changed entry"
    return True
