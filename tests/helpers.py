"""Plain helpers for tests (importable as ``helpers``: tests/ is on sys.path via conftest)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import resource
import signal
import stat
import subprocess
import time
from pathlib import Path

from fogsync.engine.progress import Progress, Snapshot
from fogsync.folder.marker import MARKER
from fogsync.folder.state import State
from fogsync.format import crypto
from fogsync.format.tree import DIR, FILE, SYMLINK, Entry
from fogsync.repo.repository import Repo

KEYS = crypto.ShareKeys.derive(bytes(range(32)))
MTIME = 1_700_000_000_123_456_789
SETTLED = 1_700_000_000_000_000_000  # mtimes this old are trusted at once (no racy wait)


def folder_tree(folder, mtimes: bool = False) -> dict[str, tuple]:
    """What hosts of a share must agree on, path by path.

    ("dir",), ("file", bytes, exec) or ("symlink", target), each followed by
    the mtime in ns when ``mtimes``. The folder's marker (``folder.marker``)
    is this host's own, never synced: left out.
    """
    folder = Path(folder)
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p == folder / MARKER:
                continue
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


TAMPERED = "hash does not match its name"  # how a read reports a block flip_last_block changed


def flip_last_block(repo: Repo, entry: Entry) -> None:
    """Flip one bit in the last byte of ``entry``'s last piece, in a local store's block file.

    The block no longer hashes to its name: a read of it fails with TAMPERED."""
    last = repo.pieces(entry.bptr)[-1]
    path = os.path.join(repo.store.root, *repo.block_key(last.hash).split("/"))
    block = bytearray(open(path, "rb").read())
    block[last.end - 1] ^= 1
    open(path, "wb").write(bytes(block))


@contextlib.contextmanager
def files_limited_to(size: int):
    """Writes past ``size`` bytes of a file fail with EFBIG, as the kernel enforces RLIMIT_FSIZE: a
    disk that fills up under a write, for this process, without patching any of its code."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal's kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def temporary_files(folder) -> list[str]:
    """fogsync's temporary files anywhere under ``folder``."""
    return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if n.startswith(".fogsync-tmp")]


def vouched_dirs(share) -> dict[str, bytes]:
    """The directory digests a share's state vouches for: those its seal still holds ({} if none),
    but for the directories it holds ``UNSURE`` (looked at again by the next pass)."""
    from fogsync.engine.vouch import UNSURE
    from fogsync.folder.scan import digest_of

    info = share.state.share(share.name)
    dirs = share.state.scan_dirs(share.name)
    if info is None or info.scan_digest is None or digest_of(dirs) != info.scan_digest:
        return {}
    return {d: digest for d, digest in dirs.items() if digest != UNSURE}


def remembered_scan_holds(share) -> bool:
    """Check the directories a share's state vouches for against the slow way; whether the whole scan was vouched.

    A directory's digest is a promise: where a scan has it, ``compare``
    finds every path directly in that directory unchanged against the base,
    and the base holds nothing else there. ``sync`` skips loading and
    comparing those directories, or the whole base when every digest matches.
    """
    from fogsync.engine.excluded import keep_excluded
    from fogsync.folder.ignore import Ignore
    from fogsync.folder.scan import compare, scan
    from fogsync.format.tree import parent_of

    vouched = vouched_dirs(share)
    snap = scan(share.folder, Ignore.for_folder(share.folder, share.exclude), share.clock_ns)
    dirs = snap.dir_digests()
    if not vouched or dirs is None:
        return False
    same = {d for d, digest in dirs.items() if vouched.get(d) == digest}
    base, stats = share.state.load(share.name)
    changes = compare(snap, base, stats, share.host)
    keep_excluded(changes.tree, changes.to_read, base, Ignore.for_folder(share.folder, share.exclude))
    inside = [p for p in (*base, *changes.tree, *changes.to_read) if parent_of(p) in same]
    assert not [p for p in changes.to_read if parent_of(p) in same], "a vouched directory hides a changed file"
    assert {p for p in inside if p in base} == {p for p in inside if p in changes.tree}, (
        "a vouched directory hides an added or removed path")
    assert all(changes.tree[p] is base[p] for p in inside if p in base), "a vouched directory hides a changed entry"
    return vouched == dirs


def signalled_when(h, args: tuple[str, ...], ready, sig: int, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI command ``args`` of host ``h`` on pipes, sent ``sig`` once ``ready(pid)`` holds (within 60 s)."""
    # A shell runs a command it puts in the background with SIGINT ignored, and the CLI would inherit
    # that: the signal sent here must find its default handling, as at a terminal.
    proc = subprocess.Popen(h.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=h.env(), preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not ready(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.005)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def settled(h, rel: str, data: str | bytes, ns: int = SETTLED) -> None:
    """Write ``rel`` in host ``h``'s folder with an mtime of ``ns`` (by default old enough to trust at once)."""
    h.write(rel, data)
    os.utime(h.path(rel), ns=(ns, ns))


def committed_tree(repo: Repo) -> dict[str, Entry]:
    """The tree of the root the store's head names, read back from the store."""
    return repo.load_tree(repo.read_root(repo.read_head().root).root)


class Recorder(Progress):
    """A Progress that keeps each phase's last snapshot: ``ends()`` once the work is over."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[Snapshot] = []

    def phase(self, name: str, files_total: int | None = None, bytes_total: int | None = None) -> None:
        if self.snapshot().phase is not None:
            self.ended.append(self.snapshot())
        super().phase(name, files_total, bytes_total)

    def ends(self) -> dict[str, tuple]:
        last = self.ended + [self.snapshot()]
        return {s.phase: (s.files_done, s.files_total, s.bytes_done, s.bytes_total) for s in last}


class CountingState(State):
    """A state database that counts the loads of its base rows, whole (``load``) or by directory
    (``load_dirs``), and the reads of its directory digests (``scan_dirs``)."""

    loads = dir_loads = digest_reads = 0

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.dirs_loaded: set[str] = set()  # every directory ``load_dirs`` was asked for

    def load(self, name):
        self.loads += 1
        return super().load(name)

    def load_dirs(self, name, dirs):
        self.dir_loads += 1
        dirs = set(dirs)
        self.dirs_loaded |= dirs
        return super().load_dirs(name, dirs)

    def scan_dirs(self, name):
        self.digest_reads += 1
        return super().scan_dirs(name)


TOO_DEEP = 20  # directories nested by ``nest_past_path_max``
LONG_NAME = "L" * 250


def nest_past_path_max(h, rel: str, file: bytes | None = None) -> None:
    """Directories nested past PATH_MAX under ``rel`` (made through descriptors; opened by path by
    nobody, not even root), with ``hidden.txt`` holding ``file`` in the deepest if given."""
    fd = os.open(h.path(rel), os.O_RDONLY)
    try:
        for _ in range(TOO_DEEP):
            os.mkdir(LONG_NAME, dir_fd=fd)
            inner = os.open(LONG_NAME, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        if file is not None:
            with open(os.open("hidden.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
                f.write(file)
    finally:
        os.close(fd)


def described(tree) -> dict[str, tuple]:
    """A committed tree as what a folder shows of it: per path its type and, for files, size, sha256 and exec."""
    out = {}
    for path, e in tree.items():
        if e.type == DIR:
            out[path] = (DIR,)
        elif e.type == SYMLINK:
            out[path] = (SYMLINK, e.target)
        else:
            out[path] = (FILE, e.size, e.sha256, e.exec)
    return out


def expected(files: dict[str, bytes], dirs=(), links=None, execs=()) -> dict[str, tuple]:
    """What ``described`` must give for a folder of ``files``, ``dirs``, ``links`` and executable ``execs``.

    An empty file has no sha256 (FORMAT.md: sha256 for a file with size > 0)."""
    out = {p: (FILE, len(d), hashlib.sha256(d).hexdigest() if d else None, p in execs) for p, d in files.items()}
    out.update({p: (SYMLINK, t) for p, t in (links or {}).items()})
    for p in [*files, *dirs, *(links or {})]:
        parts = p.split("/")
        for i in range(1, len(parts) + (p in dirs)):
            out.setdefault("/".join(parts[:i]), (DIR,))
    return out


def file_rows(h) -> tuple[dict, dict]:
    """The share's state rows (entries, and the stats of the files whose stat it trusts)."""
    return h.share().state.load(h.share().name)


def on_store(share, store) -> object:
    """``share`` with its repo on ``store`` instead (the same share, keys and spool)."""
    repo = share.repo
    return dataclasses.replace(share, repo=Repo(store, repo.keys, share.name, repo.spool_dir))
