"""Sync: one full pass for one share, on one host.

A pass scans the folder, seals what changed, reads the head, and when
another host has committed since this folder's base, merges base -> local
with base -> remote (``merge``). It then makes the folder hold the merged
tree (``pull.apply``), and if that tree differs from the head's, commits it
as a new root on top of the head and swaps the head. A lost swap, or a file
that changed under the pass, starts the pass again; the state database
advances only when a pass completes, so a crash at any point is safe.

A pass on its base looks only where the folder moved: the state vouches
for each directory whose entries a pass found unchanged against the base,
by the digest of its scan, and a pass loads and compares just the
directories whose digest moved and those above them (``moved_dirs``).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

from fogsync.engine.merge import Conflict, differs, merge
from fogsync.engine.pull import Applied, apply
from fogsync.engine.push import (
    ContentIndex,
    resolve_sealed,
    seal_files,
    write_listings,
    write_root,
)
from fogsync.errors import ConfigError, FogsyncError, SwapConflict
from fogsync.folder.guarded import remove_stale
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import (
    RACY_NS,
    STALE_TEMP_NS,
    Local,
    Snapshot,
    compare,
    digest_of,
    scan,
    unchanged,
)
from fogsync.folder.state import ShareState, Stat, State
from fogsync.format.roots import Root
from fogsync.format.tree import DIR, FILE, Entry, parent_of, touched
from fogsync.platform.processes import start_early
from fogsync.repo.repository import Head, Repo

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


@dataclass
class Share:
    """What a pass needs to know about one share."""

    name: str
    folder: str
    repo: Repo
    state: State
    host: str
    exclude: tuple[str, ...] = ()
    workers: int = 3
    settle_ns: int = 0  # files modified more recently than this wait for a later pass
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    clock_ns: Callable[[], int] = time.time_ns


@dataclass
class Report:
    """What one pass did."""

    name: str
    root: bytes | None = None  # the head after the pass
    committed: Root | None = None  # the root this pass added, if any
    pushed: int = 0
    pushed_bytes: int = 0
    written: int = 0
    removed: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # still being written: a later pass takes them
    attempts: int = 0

    def summary(self) -> str:
        parts = [f"{self.name}:"]
        if self.committed:
            parts.append(f"committed v{self.committed.version}")
        parts.append(f"pushed {self.pushed} file(s) ({human_size(self.pushed_bytes)})")
        parts.append(f"pulled {self.written}, removed {self.removed}")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflict(s)")
        if not self.committed and not self.written and not self.removed:
            parts.append("in step")
        return " ".join(parts[:1]) + " " + ", ".join(parts[1:])


# What worker processes run in a pass: sealing files (push) and writing them (pull).
WORKER_MODULES = (seal_files.__module__, apply.__module__)


def sync_share(share: Share) -> Report:
    """One full pass: returns when the folder and the store agree."""
    share.state.ensure_share(share.name, share.repo.share_id)
    if share.state.share(share.name).base is None:
        start_early(WORKER_MODULES)  # a first pass reads or writes every file: mostly, many
    report = Report(share.name)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        report.attempts = attempt
        if _attempt(share, report):
            return report
        log.info("%s: pass %d raced with a change; starting again", share.name, attempt)
    raise FogsyncError(
        f"share {share.name!r}: gave up after {MAX_ATTEMPTS} attempts: files keep changing or other hosts keep committing"
    )


def _attempt(share: Share, report: Report) -> bool:
    repo, state, name = share.repo, share.state, share.name
    info = state.share(name)
    head = repo.read_head()
    _refuse_vanished_head(share, info.base, head)
    _refuse_namesake(share, info.base, head.root)
    snap = scan(share.folder, Ignore.for_folder(share.folder, share.exclude), share.clock_ns)
    report.problems = list(snap.problems)
    _remove_stale_temps(share, snap)
    # Only a pass on its base can vouch for directories of its scan, or trust those vouched for.
    dirs = snap.dir_digests() if head.root == info.base else None
    vouched = vouched_dirs(state, name, info) if dirs is not None else None
    if vouched is not None and vouched == dirs:
        report.root = head.root  # the folder is as a scan that matched the base: no need to load it
        return True
    loaded = moved_dirs(dirs, vouched) if vouched is not None else None
    if loaded is not None:
        # Every other directory is as a scan that matched the base. Cut before the rows load, so the
        # whole scan is freed first (6 MB on the small corpus); the directories load_moved adds are
        # ones the scan does not list, so the cut would be the same after it.
        snap = snap.only(loaded)
        base_tree, stats, loaded = load_moved(state, name, dirs, loaded)
    else:
        base_tree, stats = state.load(name)
    changes = compare(snap, base_tree, stats, share.host)
    report.deferred = _settling(snap, changes.to_read, share.settle_ns)
    to_read = [p for p in changes.to_read if p not in report.deferred]
    if head.root == info.base and _untouched(changes, base_tree):
        if dirs is not None and vouched != dirs:
            state.remember_scan(name, digest_of(dirs), dirs)
        report.root = head.root
        return True

    remote_root, remote_tree = None, base_tree
    if head.root != info.base:
        remote_root = repo.read_root(head.root)
        remote_tree = repo.load_tree(remote_root.root, known=base_tree)

    index = ContentIndex(lambda sha: state.content(name, sha), lambda: state.content_sizes(name))
    index.add_tree(base_tree)
    if remote_tree is not base_tree:
        index.add_tree(remote_tree)
    sizes = {p: snap.items[p].size for p in to_read}
    if loaded is not None and sizes:  # a copy of a file in a directory not loaded still reuses its blocks
        index.add_contents(state.contents_of_sizes(name, sizes.values()))
    writer = repo.writer()
    sealed = seal_files(share.folder, to_read, writer, repo.keys, index, share.host, share.workers, sizes)
    # Before resolving, whose list of refs was the peak of a first sync, the sizes and the scanned
    # items of the files read go: 106.7 -> 102.8 MB for 50,000 files.
    del sizes
    moved, known = _as_read(snap, changes.to_read, sealed.stats)
    stored = resolve_sealed(sealed, writer)
    report.problems += sealed.problems
    local = _local_tree(changes.tree, changes.to_read, sealed.entries, base_tree)
    pushed = [p for p, e in sealed.entries.items() if not e.same_content(base_tree.get(p))]

    if head.root == info.base:
        target, conflicts = local, []
    else:
        result = merge(base_tree, local, remote_tree, host=share.host, now=share.now())
        target, conflicts = result.tree, list(result.conflicts)
    if stored and head.root != info.base:
        repo.wait_uploads()  # a conflict copy whose local file changed since is fetched from the store
    applied = apply(repo, share.folder, known, local, target, share.workers)
    if applied.skipped:
        return False

    final_tree, new_root, committed, tag = remote_tree, head.root, None, head.tag
    if not _same_tree(target, remote_tree):
        dir_mtimes = {p: i.mtime_ns for p, i in snap.items.items() if i.type == DIR}
        top, final_tree = write_listings(writer, target, remote_tree, share.host, dir_mtimes)
        prev = (head.root, remote_root or repo.read_root(head.root)) if head.root else None
        merged = (info.base,) if info.base is not None and head.root != info.base else ()
        new_root, committed = write_root(writer, top, prev, share.host, share.now(), merged=merged)
        repo.wait_uploads()
        state.add_own_root(name, new_root)
        try:
            tag = repo.swap_head(new_root, head.tag)
        except SwapConflict:
            return False

    rows, removed = _state_rows(final_tree, base_tree, stats, known, sealed.stats, snap.taken_ns, applied)
    _keep_base_for(applied.left_alone, rows, removed, base_tree, final_tree)
    # Where a path was left alone the folder is not in step with the new head: keeping the old
    # base makes the next pass merge with the head again (head == base would skip the merge).
    unsettled = any(differs(base_tree.get(p), final_tree.get(p)) for p in applied.left_alone)
    remember = _contents_outside(final_tree, base_tree, sealed.entries, stored, rows, removed)
    if dirs is not None and _wrote_nothing(applied):
        unsure = _unvouched(moved, known, final_tree, base_tree, stats, changes.to_read, rows, removed)
        keep = {d: digest for d, digest in dirs.items() if d not in unsure}
        seal = digest_of(keep)
    else:
        keep = seal = None  # the next pass compares the slow way, and vouches for what it finds unchanged
    state.save(name, info.base if unsettled else new_root, tag, rows, removed, remember, seal, keep)
    report.root, report.committed, report.conflicts = new_root, committed, conflicts
    report.pushed = len(pushed) if committed else 0
    report.pushed_bytes = sum(sealed.entries[p].size for p in pushed) if committed else 0
    report.written, report.removed = applied.written, applied.removed
    return True


def _remove_stale_temps(share: Share, snap: Snapshot) -> None:
    """Temporary files a killed pull left in the folder go once nothing has touched them for a day."""
    if snap.stale_temps:
        removed = remove_stale(share.folder, snap.stale_temps, snap.taken_ns - STALE_TEMP_NS)
        if removed:
            log.info("%s: removed %d temporary file(s) an interrupted pull left, such as %s",
                     share.name, len(removed), removed[0])


def _refuse_vanished_head(share: Share, base: bytes | None, head: Head) -> None:
    """A store that lost a share this host synced must not make the folder look deleted."""
    if base is not None and head.root is None:
        raise FogsyncError(
            f"{share.repo.where()} has no head, but this host synced it before: wrong store, or the "
            f"store lost the share; refusing to touch {share.folder} (remove-share and add-share to start over)"
        )


def _refuse_namesake(share: Share, base: bytes | None, head: bytes | None) -> None:
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


def _local_tree(
    tree: dict[str, Entry], to_read: list[str], read: Mapping[str, Entry], base: Mapping[str, Entry]
) -> dict[str, Entry]:
    """The folder as entries: unread files keep their base entry; content equal to base keeps base's.

    Completes ``tree`` (compare's, which nothing else reads) in place: a
    copy would be one more 50,000-entry dict at the pass's peak.
    """
    out = tree
    for path in to_read:
        entry = read.get(path)
        old = base.get(path)
        if entry is None:
            if old is not None:
                out[path] = old  # could not be read: not a deletion
        elif old is not None and old.same_content(entry):
            out[path] = old  # only the stat moved (touch, or our own write)
        else:
            out[path] = entry
    return out


def _untouched(changes, base: Mapping[str, Entry]) -> bool:
    """The scan found every base path as it was, and nothing else: a no-op pass."""
    return not changes.to_read and len(changes.tree) == len(base) and all(
        base.get(p) is e for p, e in changes.tree.items())


def _settling(snap: Snapshot, paths: list[str], settle_ns: int) -> list[str]:
    if not settle_ns:
        return []
    fresh = snap.taken_ns - settle_ns
    return [p for p in paths if snap.items[p].mtime_ns > fresh]


def _as_read(snap: Snapshot, to_read: list[str], read: Mapping[str, Stat]) -> tuple[dict[str, Local], dict[str, Local]]:
    """(moved, known): what the files to read looked like when scanned, and when read.

    ``moved`` holds, as scanned, only the files to read that were not read
    with the stat they were scanned with (on a first sync, a copy of every
    scanned file would be 5 MB more at the pass's peak). ``known`` is the
    paths whose content the local tree describes, as they looked when it
    was learnt: the scan, with each file read replaced by the stat it was
    read with and each file left unread dropped; built in ``snap.items``
    itself (its last reader is the directory mtimes, which this leaves as
    they are), not beside it.
    """
    items = snap.items
    moved = {}
    for path in to_read:
        s = read.get(path)
        item = items[path]
        if s is None:
            moved[path] = item
            del items[path]
        elif item[1:4] != s:  # read as scanned, mostly: the scanned item says the same
            moved[path] = item
            items[path] = Local(FILE, s.size, s.mtime_ns, s.ino, item.exec)
    return moved, items


def _keep_base_for(paths, rows: dict, removed: list[str], base: Mapping[str, Entry], final) -> None:
    """Paths the pass could not settle keep their old base rows, so the next pass merges them properly.

    Their directories lose their bptr in the state, so the next remote tree
    is fetched there rather than assumed from these rows.
    """
    for path in paths:
        rows.pop(path, None)
        if path in removed:
            removed.remove(path)
        parent = parent_of(path)
        while parent:
            entry = rows[parent][0] if parent in rows else final.get(parent) or base.get(parent)
            if entry is not None:
                rows[parent] = (entry.with_bptr(None), None)
            parent = parent_of(parent)


def _wrote_nothing(applied: Applied) -> bool:
    return not (applied.stats or applied.written or applied.removed or applied.left_alone)


def vouched_dirs(state: State, name: str, info: ShareState) -> dict[str, bytes] | None:
    """The directory digests the state vouches for, if its seal still holds them (and None if not)."""
    if info.scan_digest is None:
        return None
    dirs = state.scan_dirs(name)
    return dirs if digest_of(dirs) == info.scan_digest else None


def moved_dirs(scanned: Mapping[str, bytes], vouched: Mapping[str, bytes]) -> set[str] | None:
    """The directories a pass must load: each whose digest moved, and each above one (their listings
    name it); None when that is every directory, and the base is loaded whole."""
    every = scanned.keys() | vouched.keys()
    out = {""}
    for d in every:
        if scanned.get(d) != vouched.get(d):
            while d not in out:
                out.add(d)
                d = parent_of(d)
    return out if len(out) < len(every) else None


def load_moved(
    state: State, name: str, scanned: Mapping[str, bytes], dirs: set[str],
) -> tuple[dict[str, Entry], dict[str, Stat], set[str]]:
    """The base rows in ``dirs``, and in every base directory below them that the scan no longer
    lists (a directory removed or retyped while no digest vouched for it: its rows go too).

    Returns the rows, their stats and all the directories loaded.
    """
    tree, stats = state.load_dirs(name, dirs)
    loaded = set(dirs)
    gone = _gone_dirs(tree, scanned, loaded)
    while gone:
        more, more_stats = state.load_dirs(name, gone)
        tree.update(more)
        stats.update(more_stats)
        loaded |= gone
        gone = _gone_dirs(more, scanned, loaded)
    return tree, stats, loaded


def _gone_dirs(tree: Mapping[str, Entry], scanned: Mapping[str, bytes], loaded: set[str]) -> set[str]:
    return {p for p, e in tree.items() if e.type == DIR and p not in scanned and p not in loaded}


def _unvouched(
    moved: Mapping[str, Local], known: Mapping[str, Local], final: Mapping[str, Entry],
    base: Mapping[str, Entry], stats: Mapping[str, Stat], to_read: list[str],
    rows: Mapping[str, tuple[Entry, Stat | None]], removed: list[str],
) -> set[str]:
    """The directories where ``compare`` would not find the folder, as scanned, unchanged against
    the base this pass saves; each other directory's digest can vouch for it.

    Only what the pass read or saved needs a look: every other path matched
    its row unchanged at this pass's compare, and its row stays as it was.
    ``moved`` holds, as scanned, the files to read that ``known`` has with
    another stat or not at all (``_as_read``).
    """
    unsure = {parent_of(p) for p in removed if p in known or p in moved}
    for path in itertools.chain(rows, (p for p in to_read if p not in rows)):  # each once: on a first sync, in both
        entry, stat = rows[path] if path in rows else (base.get(path), stats.get(path))
        item = moved.get(path) or known.get(path)
        if item is None or entry is None or path not in final or not unchanged(item, entry, stat):
            unsure.add(parent_of(path))
    return unsure


def _same_tree(a: Mapping[str, Entry], b: Mapping[str, Entry]) -> bool:
    if len(a) != len(b):
        return False
    for path in touched(a, b):  # a path missing from b is touched too: equal lengths make the key sets equal
        e, other = a[path], b.get(path)
        if other is None or (e != other if e.type != DIR else other.type != DIR):
            return False
    return True


def _state_rows(
    final: Mapping[str, Entry], base: Mapping[str, Entry], stats: Mapping[str, Stat],
    known: Mapping[str, Local], read: Mapping[str, Stat], taken_ns: int, applied: Applied,
) -> tuple[dict[str, tuple[Entry, Stat | None]], list[str]]:
    """The state rows that differ from what the database holds.

    A file's stat is remembered only when it belongs to content this pass
    knows: written by it, or read (or found unchanged) by it. A file it did
    not read keeps no stat, so the next pass reads it; a stat too fresh to
    trust is not kept either.
    """
    rows = {}
    racy = taken_ns - RACY_NS
    for path in _row_candidates(final, base, known, read, applied):
        entry, stat = final[path], None
        if entry.type == FILE:
            stat = applied.stats.get(path) or read.get(path)  # the very Stat objects: 50,000 on a first sync
            if stat is None and path in known:
                stat = Stat(*known[path][1:4])
            if stat is not None and stat.mtime_ns >= racy:
                stat = None
        if base.get(path) != entry or stats.get(path) != stat:
            rows[path] = (entry, stat)
    removed = [p for p in base if p not in final]
    return rows, removed


def _row_candidates(
    final: Mapping[str, Entry], base: Mapping[str, Entry], known: Mapping[str, Local], read: Iterable[str],
    applied: Applied,
) -> set[str]:
    """The paths whose state row may change; every other row keeps its entry and its stat.

    A row changes with its entry, or with its stat. A stat is new only for a
    file this pass read or wrote, and is dropped for a path the scan did not
    see; a file left unread was found by ``compare`` with the stat its row has.
    """
    return {*touched(final, base), *read, *applied.stats, *(final.keys() - known.keys())} & final.keys()


def _contents_outside(
    final: Mapping[str, Entry], base: Mapping[str, Entry], read: Mapping[str, Entry], stored: list[str],
    rows: Mapping[str, tuple], removed: list[str],
) -> list[tuple[str, int, bytes]]:
    """Stored content the final tree does not hold, for the state's content index.

    Content in the tree is found through the tree (``ContentIndex.add_tree``):
    the index only needs what left it, or never made it in, so that a file
    moved back, copied or restored later reuses its blocks. (For a first
    sync of 50,000 files that is 50,000 rows not written.) ``stored`` are
    the paths whose content this pass stored (``read`` has their entries);
    nearly all of them still hold it, which settles those without a search.
    """
    left = [base[p] for p in (*rows, *removed) if p in base]
    new = (read[p] for p in stored if not _holds(final.get(p), read[p].sha256))
    candidates = [
        (e.sha256, e.size, e.bptr) for e in itertools.chain(new, left) if e.type == FILE and e.bptr is not None
    ]
    if not candidates:
        return []
    wanted = {c[0] for c in candidates}  # a set lookup per entry is cheaper than collecting 50,000 hashes
    held = {e.sha256 for e in final.values() if e.sha256 in wanted and e.type == FILE and e.bptr is not None}
    return [c for c in candidates if c[0] not in held]


def _holds(entry: Entry | None, sha256: str) -> bool:
    return entry is not None and entry.type == FILE and entry.sha256 == sha256 and entry.bptr is not None


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def restore_in_place(share: Share, prefix: str | None, at: datetime | None) -> Report:
    """Make the share equal an older root, as a new commit; then bring the folder along.

    Local changes are committed first, so nothing is lost: every newer root
    stays in the history.
    """
    sync_share(share)
    repo = share.repo
    for _ in range(MAX_ATTEMPTS):
        head = repo.read_head()
        ref = repo.find_root(head.root, prefix, at)
        wanted, current = repo.read_root(ref), repo.read_root(head.root)
        if wanted.root == current.root:
            break
        writer = repo.writer()
        new_ref, _ = write_root(writer, wanted.root, (head.root, current), share.host, share.now(),
                                extra=(("restored", ref.hex()),))
        repo.wait_uploads()
        share.state.add_own_root(share.name, new_ref)
        try:
            repo.swap_head(new_ref, head.tag)
            break
        except SwapConflict:
            continue
    else:
        raise FogsyncError(f"share {share.name!r}: other hosts kept committing; restore not done")
    return sync_share(share)
