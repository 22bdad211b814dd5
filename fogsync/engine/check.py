"""Check: verify everything reachable from a share's head.

Walks every root of the history (FORMAT.md 8: the chain to the last forget,
then the roots it kept; a forgotten root is not looked for), the kept list,
forgotten-roots and candidates blobs, every listing reachable from any root
(each once), and every content blob: each block is checked against its name,
each blob's tag is verified and its plaintext checked against the listing's
sha256. Problems are collected, not raised, so one run reports them all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from fogsync.engine.entry_checks import entry_flaw, listing_flaw
from fogsync.engine.progress import CHECKING, Progress, as_progress
from fogsync.errors import FogsyncError
from fogsync.format.roots import decode_candidates, decode_kept
from fogsync.format.tree import DIR, FILE, decode_listing, join
from fogsync.repo.repository import Repo


@dataclass
class CheckReport:
    roots: int = 0
    listings: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)


def check_share(repo: Repo, progress: Progress | Callable[[str], None] | None = None) -> CheckReport:
    """Verify the whole share (``repo`` checks each block against its name as it reads it).

    ``progress`` hears of each root as a note; a ``Progress`` also counts the
    file contents checked, its totals growing as the walk finds them.
    """
    progress = as_progress(progress)
    progress.phase(CHECKING)
    report = CheckReport()
    try:
        head = repo.read_head()
    except FogsyncError as e:
        report.problems.append(str(e))
        return report
    seen_listings: set[bytes] = set()
    seen_content: set[bytes] = set()
    try:
        for ref, root in repo.history(head.root):
            report.roots += 1
            progress(f"root v{root.version}")
            _check_history_blobs(repo, ref, root, head.root, report)
            _walk(repo, root.root, "", seen_listings, seen_content, report, progress)
    except FogsyncError as e:
        report.problems.append(f"history: {e}")
    return report


def _check_history_blobs(repo: Repo, ref: bytes, root, head: bytes | None, report: CheckReport) -> None:
    """The section-8 blobs a root names open and decode (the head's candidates only: older ones are spent)."""
    checks = [(root.forgot, lambda r: repo.forgotten(ref, root))]
    if root.kept is not None:
        checks.append((root.kept, lambda r: decode_kept(repo.read_small(r, "kept list"))))
    if ref == head and root.gc is not None and root.gc.candidates is not None:
        checks.append((root.gc.candidates, lambda r: decode_candidates(repo.read_small(r, "candidates"))))
    for blob, read in checks:
        if blob is None:
            continue
        try:
            read(blob)
        except FogsyncError as e:
            report.problems.append(f"root {ref.hex()[:16]}: {e}")


def _walk(repo, listing: bytes, path: str, seen_listings, seen_content, report: CheckReport,
          progress: Progress) -> None:
    stack = [(path, listing, None)]
    while stack:
        where, ref, named_by = stack.pop()
        if ref in seen_listings:
            continue
        seen_listings.add(ref)
        try:
            data = repo.read_small(ref, f"listing {ref.hex()[:16]}")
            entries = decode_listing(data)
        except FogsyncError as e:
            report.problems.append(f"listing of /{where}: {e}")
            continue
        report.listings += 1
        report.problems += _entry_problems(where, named_by, data, entries)
        new = [(join(where, name), e) for name, e in entries if e.type == FILE and e.bptr is not None and
               e.bptr not in seen_content]
        progress.grow(len(new), sum(e.size for _, e in new))
        for name, e in entries:
            if e.type == DIR and e.bptr is not None:
                stack.append((join(where, name), e.bptr, e))
        for child, e in new:
            if e.bptr in seen_content:
                progress.add(1, e.size)  # the same content twice in one listing: checked once
                continue
            seen_content.add(e.bptr)
            report.files += 1
            progress.current = child
            _check_content(repo, child, e, report)
            progress.add(1, e.size)


def _entry_problems(where: str, named_by, data: bytes, entries) -> list[str]:
    """The entries of one listing the format forbids, and the directory entry that named it if it lies."""
    flaws = [(where, listing_flaw(named_by, data) if named_by is not None else None)]
    flaws += [(join(where, name), entry_flaw(e)) for name, e in entries]
    return [f"/{path}: {why}" for path, why in flaws if why is not None]


def _check_content(repo: Repo, path: str, e, report: CheckReport) -> None:
    try:
        h = hashlib.sha256()
        n = 0
        with repo.verified(e.bptr, f"/{path}", size=e.size) as chunks:
            for chunk in chunks:
                h.update(chunk)
                n += len(chunk)
        if n != e.size or h.hexdigest() != e.sha256:
            report.problems.append(f"/{path}: content does not match its listing's size and sha256")
    except FogsyncError as err:
        report.problems.append(f"/{path}: {err}")
