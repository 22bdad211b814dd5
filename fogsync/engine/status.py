"""Status: what is waiting to sync in a share folder, without a pass.

This module adds the count ``fogsync status`` shows: the files (and their
bytes) that differ from the last pass, told from stats as a pass would
tell them (``compare``, looking only where the folder moved: ``vouch``),
without reading the store or sealing anything. The daemon, whose watcher
says where the folder moved, has only those directories scanned.
"""

from __future__ import annotations

import hashlib
import os

from fogsync.engine.excluded import keep_excluded
from fogsync.engine.vouch import DirHints, Scope, Vouch, VouchMemo
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import Scanned, Stat, compare
from fogsync.folder.state import State
from fogsync.format.tree import DIR, FILE, Entry

_HASH_CHUNK = 1 << 20


def waiting(folder: str, exclude: tuple[str, ...], state: State, name: str, hints: DirHints | None = None,
            memo: VouchMemo | None = None) -> tuple[int, int]:
    """Files (and their bytes) that differ from the last pass.

    Stats tell, without reading; only a file whose stat was too fresh to be
    recorded at the last pass, and whose size is unchanged, is hashed.
    A folder scanned as the last pass left it waits for nothing, and only
    the directories whose scan moved since are compared (as ``sync`` does).
    With ``hints`` (where a watcher saw the folder change since the last
    pass) and the state's vouched digests (``memo``'s, when given), only the
    directories a partial pass would list are scanned (``vouch.Scope``);
    without them, or when the state vouches for no scan, the whole folder is.
    """
    ignore = Ignore.for_folder(folder, exclude)
    if hints is not None:
        memo = memo or VouchMemo()
        with memo.lock:  # the daemon's passes change its digests in their own thread
            counted = _count(folder, ignore, state, name, hints, memo)
        if counted is not None:
            return counted
    return _count(folder, ignore, state, name, None, VouchMemo())


def _count(folder: str, ignore: Ignore, state: State, name: str, hints: DirHints | None,
           memo: VouchMemo) -> tuple[int, int] | None:
    """``waiting``'s count, within the scope ``hints`` give; None when they give none (the state
    vouches for no whole scan)."""
    info = state.share(name)
    scope = Scope.of(memo, state, name, info, hints)
    if hints is not None and not scope.partial:
        return None
    snap = scope.scan(folder, ignore)
    vouch = Vouch.of(state, name, info, snap, True, scope, memo)
    if vouch.whole_folder():
        return 0, 0
    snap = vouch.narrow(snap)
    base, stats = vouch.load_base(ignore)
    changes = compare(snap, base, stats, "")
    keep_excluded(changes.tree, changes.to_read, base, ignore)
    changed = [p for p in changes.to_read if not _same_as_base(folder, p, base.get(p), stats.get(p), snap.items[p])]
    gone = [p for p, e in base.items() if e.type != DIR and p not in changes.tree and p not in snap.items]
    return len(changed) + len(gone), sum(snap.items[p].size for p in changed)


def _same_as_base(folder: str, path: str, entry: Entry | None, recorded: Stat | None, item: Scanned) -> bool:
    if entry is None or entry.type != FILE or recorded is not None or (entry.size, entry.exec) != (item.size, item.exec):
        return False
    h = hashlib.sha256()
    try:
        with open(os.path.join(folder, path), "rb") as f:
            for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
                h.update(chunk)
    except OSError:
        return False
    return not entry.size or h.hexdigest() == entry.sha256
