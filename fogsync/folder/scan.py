"""Scan: what the share folder holds now, and what changed since the base.

``scan`` walks the folder with ``os.scandir`` and records each path's type
and stat without reading any content. ``compare`` sets that snapshot
against the base tree and its recorded stats: a file whose size, mtime and
inode are as recorded keeps its base entry unread; the rest must be read.
Paths that could not be read are reported and keep their base entries, so an
unreadable directory never looks like a deletion. A pull's temporary file
that nothing has touched for a day (the pull was killed) is noted for the
pass to remove. ``Snapshot.dir_digests``
fingerprints what ``compare`` looks at, directory by directory, so that a
pass can tell which directories are as a scan already compared found them,
and load the base for the others only; ``scan``'s ``skip`` leaves such
directories out of the walk altogether (a partial pass). ``walk`` is the
same scan handed out a directory at a time, for a pass that works as it
walks (a first sync); ``listed`` lists one directory alone (a first pull
vouching for what it wrote).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import marshal
import os
import stat as st
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Container, Iterator, Mapping, NamedTuple

from fogsync.errors import LocalError
from fogsync.folder.ignore import Ignore, temp_file
from fogsync.format.tree import DIR, FILE, SYMLINK, Entry

# A file modified this close to the scan may change again within the same
# mtime tick; its stat is not trusted next time (git's "racily clean" rule).
RACY_NS = 2_000_000_000
# A pull's temporary file whose inode has not changed for this long was left by a pull that was
# killed: a live one writes, stamps and renames its file within minutes at most (Syncthing too waits a day).
STALE_TEMP_NS = 24 * 3600 * 1_000_000_000
_S_IFMT = 0o170000  # the file-type bits of st_mode
_S_IFREG, _S_IFDIR, _S_IFLNK, _S_IXUSR = st.S_IFREG, st.S_IFDIR, st.S_IFLNK, st.S_IXUSR  # one lookup per path, not two


class Stat(NamedTuple):
    """What a file's stat said when it was last in step; a change means it must be read again."""

    size: int
    mtime_ns: int
    ino: int


class Scanned(NamedTuple):
    """A path as found in the folder (a tuple: tens of thousands are made per scan)."""

    type: str
    size: int
    mtime_ns: int
    ino: int
    exec: bool = False
    target: str | None = None

    @property
    def stat(self) -> Stat:
        return Stat(self.size, self.mtime_ns, self.ino)


# What a digest's bytes mean: another marshal or Python version, or another Scanned, is another fingerprint.
_PYTHON = "%d.%d" % sys.version_info[:2]
_DIGEST_FORMAT = f"fogsync scan digest 3; marshal 2; Python {_PYTHON}; {Scanned._fields}\n".encode()


@dataclass
class Snapshot:
    items: dict[str, Scanned] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)  # keep base entries at and below these
    problems: list[str] = field(default_factory=list)
    taken_ns: int = 0
    stale_temps: list[str] = field(default_factory=list)  # pulls' temporary files left for a day: to remove
    # Each directory listed, in scan order, with how many of ``items`` (which follow in that
    # order) it added; None for a snapshot not made by ``scan``. A scan given ``vouched`` leaves
    # out the directories whose entries it did not keep.
    listed: list[tuple[str, int]] | None = None
    digests: dict[str, bytes] | None = None  # every directory's, taken as it was listed (``vouched``)

    def dir_digests(self) -> dict[str, bytes] | None:
        """Each directory's fingerprint: its path and everything ``compare`` looks at in its entries.

        Two scans with the same digest for a directory found the same names
        in it, in the same order, with the same types, stats, exec bits and
        link targets: a base that one matched unchanged there, the other
        matches too (``sync`` loads only the directories whose digest moved).
        None if part of the folder was unreadable. Hashed with ``marshal``
        over whole directories, so it runs at nearly C speed.
        """
        if self.unreadable:
            return None
        if self.digests is not None:
            return self.digests
        return {where: dir_digest(where, paths, items) for where, paths, items in self._by_dir()}

    def only(self, dirs: Container[str]) -> "Snapshot":
        """The scan of just the entries directly in ``dirs`` ('' is the top), as if nothing else were there."""
        part = Snapshot(problems=self.problems, taken_ns=self.taken_ns, listed=[])
        for where, paths, items in self._by_dir():
            if where in dirs:
                part.items.update(zip(paths, items))
                part.listed.append((where, len(paths)))
        return part

    def _by_dir(self) -> Iterator[tuple[str, list[str], list[Scanned]]]:
        """Each directory with its entries' paths and items, in scan order.

        By ``listed`` when it accounts for every item, as it does for a scan
        (slices, at C speed); else by each path's parent.
        """
        if self.listed is not None and sum(n for _, n in self.listed) == len(self.items):
            paths, items = iter(self.items), iter(self.items.values())
            for where, n in self.listed:
                yield where, list(itertools.islice(paths, n)), list(itertools.islice(items, n))
            return
        groups: dict[str, tuple[list[str], list[Scanned]]] = {"": ([], [])}
        for path, item in self.items.items():
            group = groups.setdefault(path[: max(path.rfind("/"), 0)], ([], []))
            group[0].append(path)
            group[1].append(item)
            if item.type == DIR:
                groups.setdefault(path, ([], []))
        for where, (paths, items) in groups.items():
            yield where, paths, items


def dir_digest(where: str, paths: list[str], items: list[Scanned]) -> bytes:
    """One directory's fingerprint (``Snapshot.dir_digests``): its path, and its entries' paths and
    items in scan order."""
    # Names hold no NUL, a Scanned has a fixed number of fields, and marshal says its own
    # length: the bytes parse one way only.
    h = hashlib.sha256(where.encode() + b"\0%d\0" % len(paths))
    h.update("\0".join(paths).encode())
    h.update(marshal.dumps(list(itertools.chain.from_iterable(items)), 2))
    return h.digest()


def digest_of(dirs: Mapping[str, bytes]) -> str:
    """One fingerprint for a whole scan, from its ``dir_digests``; equal for equal scans only.

    The state keeps it beside the directory digests it was made from, as
    their seal: digests it no longer matches are not trusted. It is their
    count and a sum of one hash per directory, so a change to a few
    directories moves it at the cost of those alone (``resealed``).
    """
    return _seal(len(dirs), sum(_term(where, digest) for where, digest in dirs.items()))


def resealed(seal: str, gone: Mapping[str, bytes], added: Mapping[str, bytes]) -> str:
    """``digest_of`` of the digests ``seal`` sealed, with ``gone`` taken out and then ``added`` put in
    (each as it was, and as it is: a directory whose digest moved is in both)."""
    count, total = seal.split(":")
    total = int(total, 16) - sum(_term(w, d) for w, d in gone.items()) + sum(_term(w, d) for w, d in added.items())
    return _seal(int(count) - len(gone) + len(added), total)


def _term(where: str, digest: bytes) -> int:
    # A name holds no NUL: the bytes parse one way only.
    return int.from_bytes(hashlib.sha256(_DIGEST_FORMAT + where.encode() + b"\0" + digest).digest(), "big")


def _seal(count: int, total: int) -> str:
    return f"{count}:{total % (1 << 256):064x}"


def scan(
    folder: str, ignore: Ignore, clock: Callable[[], int] = time.time_ns, skip: Container[str] = (),
    vouched: Mapping[str, bytes] | None = None, keep: Container[str] = (),
) -> Snapshot:
    """Every syncable path under ``folder`` (relative POSIX paths).

    ``skip`` names directories not to list: their parent's listing still
    has them, but nothing in or below them is looked at (a partial scan,
    for directories the caller knows as they were: ``vouch.Scope``).

    ``vouched``: directory digests the caller trusts (``vouch.Scope``). The
    scan then takes each directory's digest as it lists it (``digests``),
    and keeps the entries of a directory only if its digest moved or it
    holds a subdirectory: a pass loads a directory whose digest did not
    move only as the parent of one that did, so the others' entries would
    only be dropped later, and they are most of a big share's scan. It
    keeps those of the directories in ``keep`` too (a pass loads them anyway).

    Each directory is listed through a file descriptor where the platform
    allows, so each entry's lstat is an fstatat on its name rather than a
    walk of its whole path, and a
    directory below the folder that became a symlink is not followed.
    """
    if vouched is not None:
        return _scan_trusting(folder, ignore, clock(), vouched, keep)
    _check_folder(folder)
    snap = Snapshot(taken_ns=clock(), listed=[])
    stack = [""]
    while stack:
        rel = stack.pop()
        if rel in skip:
            continue
        before = len(snap.items)
        if _list_dir(snap, snap.items, folder, rel, ignore, stack):
            snap.listed.append((rel, len(snap.items) - before))
    return snap


def walk(folder: str, ignore: Ignore, snap: Snapshot) -> Iterator[tuple[str, dict[str, Scanned] | None]]:
    """``scan``, a directory at a time: each directory with its entries (path -> Scanned), in scan
    order; None for one that could not be listed. What else a scan finds (problems, unreadable
    paths, stale temporary files) goes into ``snap``, whose ``taken_ns`` says when the walk began;
    its ``items`` stay as they are."""
    _check_folder(folder)
    stack = [""]
    while stack:
        rel = stack.pop()
        items: dict[str, Scanned] = {}
        yield rel, items if _list_dir(snap, items, folder, rel, ignore, stack) else None


def listed(folder: str, rel: str, ignore: Ignore, snap: Snapshot) -> dict[str, Scanned] | None:
    """The entries directly in directory ``rel``, as ``walk`` finds them; None if it could not be
    listed (``snap`` says why)."""
    items: dict[str, Scanned] = {}
    return items if _list_dir(snap, items, folder, rel, ignore, []) else None


def _scan_trusting(
    folder: str, ignore: Ignore, taken_ns: int, vouched: Mapping[str, bytes], keep: Container[str],
) -> Snapshot:
    """``scan`` with ``vouched``: every directory's digest, the entries of those that moved, hold a
    subdirectory or are to be kept."""
    snap = Snapshot(taken_ns=taken_ns, listed=[], digests={})
    for where, items in walk(folder, ignore, snap):
        if items is None:
            continue
        digest = snap.digests[where] = dir_digest(where, list(items), list(items.values()))
        if digest != vouched.get(where) or where in keep or any(item.type == DIR for item in items.values()):
            snap.items.update(items)
            snap.listed.append((where, len(items)))
    return snap


def _check_folder(folder: str) -> None:
    if not os.path.isdir(folder):
        raise LocalError(f"share folder {folder} does not exist or is not a directory")


def _list_dir(
    snap: Snapshot, items: dict[str, Scanned], folder: str, rel: str, ignore: Ignore, stack: list[str],
) -> bool:
    """The entries of directory ``rel`` into ``items``, its subdirectories onto ``stack``; False if
    it could not be listed (``snap`` says so)."""
    try:
        with _listed(os.path.join(folder, rel) if rel else folder, below=bool(rel)) as (entries, dir_fd):
            _add_entries(snap, items, rel + "/" if rel else "", entries, ignore, stack, dir_fd)
        return True
    except OSError as e:
        _unreadable(snap, rel, e)
        return False


_BY_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd and os.readlink in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def _listed(where: str, below: bool) -> Iterator[tuple[list[os.DirEntry], int | None]]:
    """A directory's entries, and the descriptor their stat and readlink are relative to (None: by path)."""
    if not _BY_FD:
        with os.scandir(where) as it:
            entries = list(it)
        yield entries, None
        return
    fd = os.open(where, _DIR_FLAGS | (os.O_NOFOLLOW if below else 0))  # the share folder itself may be a link
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        yield entries, fd
    finally:
        os.close(fd)


def _add_entries(
    snap: Snapshot, items: dict[str, Scanned], prefix: str, entries: list[os.DirEntry], ignore: Ignore,
    stack: list[str], dir_fd: int | None,
) -> None:
    """One directory's entries into ``items``; subdirectories onto ``stack``; problems into ``snap``.

    The loop body runs once per path (50,000 in the small corpus), so the
    common case, a regular file or directory, is decided inline.
    """
    ignored = ignore.ignored_name
    for de in entries:
        name = de.name
        path = prefix + name
        if not name.isascii() and not _valid_name(snap, path):
            continue
        try:
            s = de.stat(follow_symlinks=False)
        except OSError as e:
            _unreadable(snap, path, e)
            continue
        kind = s.st_mode & _S_IFMT
        if ignored(name, path, kind == _S_IFDIR):
            if kind == _S_IFREG and s.st_ctime_ns < snap.taken_ns - STALE_TEMP_NS and temp_file(name):
                snap.stale_temps.append(path)
            continue
        if kind == _S_IFREG:
            items[path] = Scanned(FILE, s.st_size, s.st_mtime_ns, s.st_ino, bool(s.st_mode & _S_IXUSR))
        elif kind == _S_IFDIR:
            items[path] = Scanned(DIR, 0, s.st_mtime_ns, s.st_ino)
            stack.append(path)
        elif kind == _S_IFLNK:
            item = _symlink(de, path, s, snap, dir_fd)
            if item is not None:
                items[path] = item
        else:
            snap.problems.append(f"skipped {path!r}: not a regular file, directory or symlink")


def _valid_name(snap: Snapshot, path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes come back as lone surrogates
        snap.problems.append(f"skipped {path!r}: its name is not valid UTF-8")
        return False


def _symlink(de: os.DirEntry, path: str, s: os.stat_result, snap: Snapshot, dir_fd: int | None) -> Scanned | None:
    try:
        target = os.readlink(de.name, dir_fd=dir_fd) if dir_fd is not None else os.readlink(de.path)
        return Scanned(SYMLINK, len(target.encode("utf-8")), s.st_mtime_ns, s.st_ino, target=target)
    except UnicodeEncodeError:
        snap.problems.append(f"skipped symlink {path!r}: its target is not valid UTF-8")
    except OSError as e:
        _unreadable(snap, path, e)
    return None


def _unreadable(snap: Snapshot, path: str, e: OSError) -> None:
    snap.unreadable.add(path)
    snap.problems.append(f"cannot read {path or '.'!r}: {e.strerror or e}")


@dataclass
class Changes:
    """The local tree as far as stats tell, and the files whose content must be read."""

    tree: dict[str, Entry]
    to_read: list[str]


def compare(snap: Snapshot, base: Mapping[str, Entry], stats: Mapping[str, Stat], host: str) -> Changes:
    """Set a snapshot against the base: unchanged paths keep their base entries."""
    tree: dict[str, Entry] = {}
    to_read: list[str] = []
    for path, item in snap.items.items():
        old = base.get(path)
        if old is not None and matches_base(item, old, stats.get(path)):
            tree[path] = old
        elif item.type == FILE:
            to_read.append(path)
        elif item.type == SYMLINK:
            tree[path] = Entry(SYMLINK, item.mtime_ns, host, item.size, target=item.target)
        else:
            tree[path] = Entry(DIR, item.mtime_ns, host)
    for top in snap.unreadable:
        for p in at_or_below(base, top):
            tree.setdefault(p, base[p])
    return Changes(tree, to_read)


def matches_base(item: Scanned, entry: Entry, stat: Stat | None) -> bool:
    """Whether a path as scanned still is the base entry (with its recorded stat), unread."""
    if item.type == FILE:
        # item[1:4] is (size, mtime_ns, ino) as a plain tuple: equal to a Stat, and cheaper than building one
        return entry.type == FILE and entry.exec == item.exec and stat is not None and stat == item[1:4]
    if item.type == SYMLINK:
        return entry.type == SYMLINK and entry.target == item.target
    return entry.type == DIR


def at_or_below(tree: Mapping[str, Entry], top: str) -> list[str]:
    """``top`` and every path under it ('' is the whole tree)."""
    if not top:
        return list(tree)
    prefix = top + "/"
    return [p for p in tree if p == top or p.startswith(prefix)]
