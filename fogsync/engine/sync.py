"""Sync: one full pass for one share, on one host.

A pass (``Pass.run``) does eight things in order: it reads the head, scans
the folder, compares the scan with the base, seals what changed, merges
with what other hosts committed since the base (``merge``), applies the
merged tree to the folder (``pull.apply``), commits it as a new root on
top of the head where it differs, and saves the new base in the state.
A lost head swap, or a file that changed under the pass, starts the pass
again; the state database advances only when a pass completes, so a crash
at any point is safe. A pass looks only where the folder moved (``vouch``)
and, pulling, where the head's tree moved since the base (``remote``),
when the state vouches for its last scan. A share's first pass into an
empty store (``first``) or into an empty folder (``first_pull``) works a
directory at a time instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from fogsync.engine.entry_checks import (
    leave_refused_alone,
    load_checked_tree,
    settle_refused,
)
from fogsync.engine.excluded import keep_excluded, outside_excluded
from fogsync.engine.first import FirstSync
from fogsync.engine.first_pull import FirstPull, into_empty
from fogsync.engine.gcrules import Rules, commit_keys, pruned_under
from fogsync.engine.merge import Conflict, differs, merge
from fogsync.engine.progress import SCANNING, UPLOADING
from fogsync.engine.pull import apply
from fogsync.engine.push import (
    Sealed,
    resolve_sealed,
    seal_files,
    write_listings,
    write_root,
)
from fogsync.engine.rebase import save_pulled_base
from fogsync.engine.refusals import (
    check_deletions,
    check_descent,
    check_folder,
    check_head_kept,
    check_namesake,
    remember_seen,
)
from fogsync.engine.remote import remote_moves
from fogsync.engine.rows import contents_outside, keep_base_for, state_rows
from fogsync.engine.share import Share
from fogsync.engine.vouch import (
    DirHints,
    Scope,
    Vouch,
    VouchMemo,
    sizes_worth_finding,
    unvouched,
)
from fogsync.errors import FogsyncError, SwapConflict
from fogsync.folder.guarded import remove_stale
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import STALE_TEMP_NS, Scanned, Snapshot, Stat, compare
from fogsync.format.roots import Root, check_writable
from fogsync.format.tree import DIR, FILE, Entry, touched
from fogsync.platform.processes import start_early

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


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
    listed_dirs: int | None = None  # directories a partial pass listed (None: it scanned the whole folder)

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


def sync_share(share: Share, only_dirs: DirHints | None = None) -> Report:
    """One full pass: returns when the folder and the store agree.

    ``only_dirs``: where the folder may have changed (a watcher's events); the pass lists only
    there and trusts the rest to the state's vouched scan, when it can (``vouch.Scope``).
    """
    share.state.ensure_share(share.name, share.repo.share_id)
    if share.state.share(share.name).base is None:
        start_early(WORKER_MODULES)  # a first pass reads or writes every file: mostly, many
    report = Report(share.name)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        report.attempts = attempt
        attempt_pass = Pass(share, report, only_dirs)
        with pruned_under(share.repo, attempt_pass) as lost:
            if attempt_pass.run():
                return report
        if lost.block:
            log.info("%s: pass %d read a block a prune deleted since; starting again", share.name, attempt)
            continue
        log.info("%s: pass %d raced with a change; starting again", share.name, attempt)
    raise FogsyncError(
        f"share {share.name!r}: gave up after {MAX_ATTEMPTS} attempts: files keep changing or other hosts keep committing"
    )


class Pass:
    """One attempt at a pass over one share: each step reads what the steps before it learnt."""

    def __init__(self, share: Share, report: Report, only_dirs: DirHints | None = None) -> None:
        self.share, self.report, self.only_dirs = share, report, only_dirs
        self.repo, self.state, self.name = share.repo, share.state, share.name
        self.info = share.state.share(share.name)
        self.memo = share.memo or VouchMemo()

    def run(self) -> bool:
        """True once the folder and the store agree; False when the pass raced with a change."""
        self.read_head()
        if self.info.base is None and not self.state.count_files(self.name):
            if self.head.root is None:
                return self.first_sync()
            self.ignore = Ignore.for_folder(self.share.folder, self.share.exclude)
            if into_empty(self.share, self.ignore):
                return self.first_pull()
        self.find_remote_moves()
        self.scan()
        if self.on_base and self.vouch.whole_folder():  # the folder is as a scan that matched the base
            return self.in_step()
        self.compare()
        if self.on_base and _untouched(self.changes, self.base_tree):
            self.vouch.remember_unchanged()
            return self.in_step()
        self.read_remote_tree()
        self.seal()
        self.merge()
        return self.apply() and self.commit() and self.save()

    def first_sync(self) -> bool:
        """Nothing to load, merge or write: the folder walked, sealed, listed and staged a directory at a
        time (``first``), committed and saved; False when another host's first commit came first."""
        self.writer = self.repo.writer()
        self.rules = Rules.of(self.repo, self.state, self.name, self.info, None, None, True)
        first = FirstSync(self.share, self.rules, self.writer)
        saved = False
        try:
            if self._commit_first(first):
                self._save_first(first)
                saved = True
        finally:
            if not saved:
                self.state.drop_staged(self.name)
        return saved

    def _commit_first(self, first: FirstSync) -> bool:
        top = first.run()
        _remove_stale_temps(self.share, first.snap)
        self.report.problems, self.report.deferred = list(first.snap.problems) + first.problems, first.deferred
        self.remote_root, self.new_root, self.committed, self.tag = None, None, None, self.head.tag
        return top is None or self._commit_top(top)  # an empty folder: nothing to commit

    def _save_first(self, first: FirstSync) -> None:
        self.state.save(self.name, self.new_root, self.tag, {}, (), staged=True,
                        gc_seen=self.rules.gc_seen(self.committed, True), drop_contents=self.rules.drop_contents,
                        **first.vouched())
        self.memo.forget()
        remember_seen(self.share, self.new_root, self.committed)
        report = self.report
        report.root, report.committed = self.new_root, self.committed
        if self.committed:
            report.pushed, report.pushed_bytes = first.pushed, first.pushed_bytes

    def first_pull(self) -> bool:
        """Nothing to scan, merge or commit: the head's tree written into the empty folder and staged a
        directory at a time (``first_pull``), then saved; False when something came in the way, and the
        next attempt merges the head with what was written."""
        self.remote_root = self.repo.read_root(self.head.root)
        rules = Rules.of(self.repo, self.state, self.name, self.info, self.head.root, self.remote_root, False)
        pull = FirstPull(self.share, self.remote_root.root, self.ignore)
        try:
            pull.run()
        except BaseException:
            self.state.drop_staged(self.name)
            raise
        settled = not pull.unsettled
        self.state.save(self.name, self.head.root if settled else None, self.head.tag, {}, (), staged=True,
                        gc_seen=rules.gc_seen(None, settled), drop_contents=rules.drop_contents, **pull.vouched())
        self.memo.forget()
        remember_seen(self.share, self.head.root, self.remote_root)
        report = self.report
        report.root, report.written, report.problems = self.head.root, pull.written, pull.problems
        return not pull.skipped

    def in_step(self) -> bool:
        self.report.root = self.head.root
        return True

    def read_head(self) -> None:
        """The store's head, refused if it cannot be this folder's share as this host knew it."""
        check_folder(self.share, self.info)
        self.head = self.repo.read_head()
        self.on_base = self.head.root == self.info.base
        check_head_kept(self.share, self.info.base, self.head)
        if check_descent(self.share, self.info, self.head):  # rolled back, and accepted: the head is the base now
            self.info, self.on_base = self.state.share(self.name), True
        check_namesake(self.share, self.info.base, self.head.root)

    def find_remote_moves(self) -> None:
        """Off the base, where the head's tree moved since it (``remote``), when the state vouches for a
        scan: the pass then looks only there and where the folder moved. Else it loads everything."""
        self.remote_root, self.moves = None, None
        if self.on_base:
            return
        self.remote_root = self.repo.read_root(self.head.root)
        if self.info.base is not None and self.memo.vouched(self.state, self.name, self.info) is not None:
            self.moves = remote_moves(self.repo, self.state, self.name, self.remote_root.root)

    def scan(self) -> None:
        """The folder's stats, and what the state vouches for of them."""
        share = self.share
        share.progress.phase(SCANNING)
        self.ignore = Ignore.for_folder(share.folder, share.exclude)
        trusted, also = self.on_base or self.moves is not None, self.moves.dirs if self.moves else ()
        scope = Scope.of(self.memo, self.state, self.name, self.info, self.only_dirs, trusted, also)
        self.snap = scope.scan(share.folder, self.ignore, share.clock_ns)
        self.report.problems = list(self.snap.problems)
        self.report.listed_dirs = len(self.snap.listed) if scope.partial else None
        _remove_stale_temps(share, self.snap)
        self.vouch = Vouch.of(self.state, self.name, self.info, self.snap, trusted, scope, self.memo, also)

    def compare(self) -> None:
        """The base rows where the folder may have moved, and the files to read there."""
        self.snap = self.vouch.narrow(self.snap)  # the whole scan goes before the rows load
        self.base_tree, self.stats = self.vouch.load_base(self.ignore, self.moves and self.moves.rows())
        self.changes = compare(self.snap, self.base_tree, self.stats, self.share.host)
        keep_excluded(self.changes.tree, self.changes.to_read, self.base_tree, self.ignore)
        self.report.deferred = _settling(self.snap, self.changes.to_read, self.share.settle_ns)
        self.to_read = [p for p in self.changes.to_read if p not in self.report.deferred]

    def read_remote_tree(self) -> None:
        """The head's tree, where another host committed since the base: where the pass loaded the base."""
        self.remote_tree, self.refused = self.base_tree, {}
        if self.moves is not None:
            self.remote_tree, self.refused = self.moves.head_tree(self.base_tree), self.moves.refused
        elif not self.on_base:
            self.remote_tree, self.refused = load_checked_tree(self.repo, self.remote_root.root, self.base_tree)
        check_deletions(self.share, self.base_tree, self.changes, self.remote_tree)

    def seal(self) -> None:
        """The files to read, read and sealed; the folder as a tree (``folder_tree``)."""
        self.writer = self.repo.writer()
        self.rules = Rules.of(self.repo, self.state, self.name, self.info, self.head.root, self.remote_root, self.on_base)
        self.sealed = self._read_and_seal()
        # Before resolving, whose list of refs is the peak of a first sync, the scanned items of
        # the files read go (``_as_read`` reuses ``snap.items``).
        self.moved, self.last_seen = _as_read(self.snap, self.changes.to_read, self.sealed.stats)
        self.stored = resolve_sealed(self.sealed, self.writer)
        self.report.problems += self.sealed.problems
        self.folder_tree = _folder_tree(self.changes.tree, self.changes.to_read, self.sealed.entries, self.base_tree)

    def _read_and_seal(self) -> Sealed:
        share, base_tree = self.share, self.base_tree
        index = self.rules.content_index(base_tree, self.remote_tree)  # only what FORMAT.md 8 lets a writer reuse
        items = self.snap.items
        wanted = sizes_worth_finding(items[p].size for p in self.to_read) if self.vouch.loaded is not None else []
        if wanted:  # a copy of a file in a directory not loaded still reuses its blocks
            index.add_contents(self.rules.vetted(self.state.contents_of_sizes(self.name, wanted)))
        return seal_files(share.folder, self.to_read, self.writer, self.repo.keys, index, share.host, share.workers,
                          progress=share.progress, scanned=items)

    def merge(self) -> None:
        """The tree the folder should hold: its own, or merged with what other hosts committed."""
        if self.on_base:
            self.target, self.conflicts = self.folder_tree, []
        else:
            result = merge(self.base_tree, self.folder_tree, self.remote_tree, host=self.share.host, now=self.share.now())
            self.target, self.conflicts = result.tree, list(result.conflicts)
            self.rules.reconcile(self.target, self._uploaded())
        self.writable = self.target if self.on_base else outside_excluded(self.target, self.last_seen, self.ignore)
        self.writable = leave_refused_alone(self.writable, self.folder_tree, self.last_seen, self.refused)

    def _uploaded(self) -> list[bytes]:
        """The bptrs of the content this attempt stored."""
        return [self.sealed.entries[p].bptr for p in self.stored]

    def apply(self) -> bool:
        """The folder made to hold the target; False when a file changed under the pass."""
        if self.stored and not self.on_base:
            self.repo.wait_uploads()  # a conflict copy whose local file changed since is fetched from the store
        self.applied = apply(self.repo, self.share.folder, self.last_seen, self.folder_tree, self.writable,
                             self.share.workers, progress=self.share.progress)
        self.report.problems += settle_refused(self.applied, self.refused, (self.target, self.folder_tree, self.base_tree))
        return not self.applied.skipped

    def commit(self) -> bool:
        """The target as a new root on the head, where it differs; False when the head swap is lost."""
        head = self.head
        self.final_tree, self.new_root, self.committed, self.tag = self.remote_tree, head.root, None, head.tag
        if _same_tree(self.target, self.remote_tree):
            return True
        dir_mtimes = {p: i.mtime_ns for p, i in self.snap.items.items() if i.type == DIR}
        top, self.final_tree = write_listings(self.writer, self.target, self.remote_tree, self.share.host, dir_mtimes)
        return self._commit_top(top)

    def _commit_top(self, top: bytes) -> bool:
        """A root naming the listing ``top``, on the head; False when the head swap is lost."""
        head = self.head
        prev = (head.root, self.remote_root or self.repo.read_root(head.root)) if head.root else None
        merged = (self.info.base,) if self.info.base is not None and not self.on_base else ()
        check_writable(prev and prev[1], f"share {self.name!r}")
        self.new_root, self.committed = write_root(
            self.writer, top, prev, self.share.host, self.share.now(), merged=merged,
            keys=commit_keys(self.repo, prev and prev[1], merged))
        self.share.progress.phase(UPLOADING)
        self.repo.wait_uploads()
        self.state.add_own_root(self.name, self.new_root)
        try:
            self.tag = self.repo.swap_head(self.new_root, head.tag)
        except SwapConflict:
            self._rebase()
            return False
        return True

    def _rebase(self) -> None:
        """The folder holds a merge with the head's root: the next attempt starts from that root."""
        if not self.on_base:
            save_pulled_base(self.state, self.name, self.head, self.remote_tree, self.target, self.base_tree,
                             self.stats, self.last_seen, self.sealed.stats, self.snap.taken_ns, self.applied,
                             self.sealed.entries, self.stored)

    def save(self) -> bool:
        """The new base and the rows that changed, in the state; what the pass did, in the report."""
        final, base, applied = self.final_tree, self.base_tree, self.applied
        rows, removed = state_rows(
            final, base, self.stats, self.last_seen, self.sealed.stats, self.snap.taken_ns, applied)
        keep_base_for(applied.left_alone, rows, removed, base, final)
        # Where a path was left alone the folder is not in step with the new head: keeping the old
        # base makes the next pass merge with the head again (head == base would skip the merge).
        unsettled = any(differs(base.get(p), final.get(p)) for p in applied.left_alone)
        remember = contents_outside(final, base, self.sealed.entries, self.stored, rows, removed)
        remember = self.rules.to_remember(remember, self._uploaded())
        unsure = None  # the next pass compares the slow way, and vouches for what it finds unchanged
        if self.vouch.can_vouch and not applied.left_alone:  # where the pass wrote or removed, unvouched
            unsure = unvouched(self.moved, self.last_seen, final, base, self.stats, self.changes.to_read, rows, removed)
        base_now = self.info.base if unsettled else self.new_root
        self.state.save(self.name, base_now, self.tag, rows, removed, remember,
                        gc_seen=self.rules.gc_seen(self.committed, not unsettled), drop_contents=self.rules.drop_contents,
                        **self.vouch.to_save(unsure))
        self.vouch.saved()
        remember_seen(self.share, self.new_root, self.committed or self.remote_root)
        self._report()
        return True

    def _report(self) -> None:
        report, committed = self.report, self.committed
        pushed = [p for p, e in self.sealed.entries.items() if not e.same_content(self.base_tree.get(p))]
        report.root, report.committed, report.conflicts = self.new_root, committed, self.conflicts
        report.pushed = len(pushed) if committed else 0
        report.pushed_bytes = sum(self.sealed.entries[p].size for p in pushed) if committed else 0
        report.written, report.removed = self.applied.written, self.applied.removed


def _remove_stale_temps(share: Share, snap: Snapshot) -> None:
    """Temporary files a killed pull left in the folder go once nothing has touched them for a day."""
    if snap.stale_temps:
        removed = remove_stale(share.folder, snap.stale_temps, snap.taken_ns - STALE_TEMP_NS)
        if removed:
            log.info("%s: removed %d temporary file(s) an interrupted pull left, such as %s",
                     share.name, len(removed), removed[0])


def _folder_tree(
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


def _as_read(snap: Snapshot, to_read: list[str], read: Mapping[str, Stat]) -> tuple[dict[str, Scanned], dict[str, Scanned]]:
    """(moved, last_seen): what the files to read looked like when scanned, and when read.

    ``moved`` holds, as scanned, only the files to read that were not read
    with the stat they were scanned with (on a first sync, a copy of every
    scanned file would raise the pass's peak memory). ``last_seen`` is the
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
            items[path] = Scanned(FILE, s.size, s.mtime_ns, s.ino, item.exec)
    return moved, items


def _same_tree(a: Mapping[str, Entry], b: Mapping[str, Entry]) -> bool:
    if len(a) != len(b):
        return False
    for path in touched(a, b):  # a path missing from b is touched too: equal lengths make the key sets equal
        e, other = a[path], b.get(path)
        if other is None or (e != other if e.type != DIR else other.type != DIR):
            return False
    return True


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def restore_in_place(share: Share, prefix: str | None, at: datetime | None) -> Report:
    """Make the share equal an older root, as a new commit; then bring the folder along.

    Scanned changes are committed first, so nothing is lost: every newer root
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
        check_writable(current, f"share {share.name!r}")
        writer = repo.writer()
        new_ref, _ = write_root(writer, wanted.root, (head.root, current), share.host, share.now(),
                                extra=(("restored", ref.hex()),), keys=commit_keys(repo, current))
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
