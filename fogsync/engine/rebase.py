"""Rebase: a pass that pulled a remote root, then lost its head swap, starts again from that root.

Once ``apply`` has made the folder hold what a merge with the remote root R
produced, R is the common ancestor for the next attempt (git's rule). If
the next attempt started from the old base instead, every file it had just
pulled from R would look like a local change, and would meet a newer
remote version of it as a conflict no person made. So a pass that loses
its swap after pulling saves R as the base, with R's entries as the rows.

A row keeps a stat only where the folder holds R's entry there: a path
where the merge kept a local change over R (or a local addition R lacks)
keeps R's entry with no stat, so the next attempt reads the file and finds
it changed against R. Paths the pull left alone keep their old base rows,
as at the end of a pass (``rows.keep_base_for``).
"""

from __future__ import annotations

from typing import Mapping

from fogsync.engine.pull import Applied
from fogsync.engine.rows import Rows, contents_outside, keep_base_for, state_rows
from fogsync.folder.scan import Scanned, Stat
from fogsync.folder.state import State
from fogsync.format.tree import Entry
from fogsync.repo.repository import Head


def save_pulled_base(
    state: State, name: str, head: Head, remote: Mapping[str, Entry], target: Mapping[str, Entry],
    base: Mapping[str, Entry], stats: Mapping[str, Stat], last_seen: Mapping[str, Scanned],
    read: Mapping[str, Stat], taken_ns: int, applied: Applied, sealed: Mapping[str, Entry], stored: list[str],
) -> None:
    """Make ``head`` (whose tree ``remote`` the folder was merged with into ``target``) the base.

    ``base``/``stats`` are the rows the pass loaded, ``last_seen``, ``read``
    and ``applied`` what it learnt of the folder, ``sealed`` and ``stored``
    the content it sealed (remembered in the content index, so the next
    attempt reuses its blocks).
    """
    rows, removed = state_rows(remote, base, stats, last_seen, read, taken_ns, applied)
    keep_base_for(applied.left_alone, rows, removed, base, remote)
    unclaim_local_changes(rows, target)
    remember = contents_outside(remote, base, sealed, stored, rows, removed)
    state.save(name, head.root, head.tag, rows, removed, remember)


def unclaim_local_changes(rows: Rows, target: Mapping[str, Entry]) -> None:
    """No row says a file holds its entry where the folder holds something else (``target``'s entry).

    A stat kept there would make the next scan take the local file for the
    remote's version, and the local change would be lost.
    """
    for path, (entry, stat) in rows.items():
        if stat is not None and not entry.same_content(target.get(path)):
            rows[path] = (entry, None)
