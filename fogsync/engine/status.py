"""Status: what is waiting to sync in a share folder, without a pass.

This module adds the count ``fogsync status`` shows: the files (and their
bytes) that differ from the last pass, told from stats as a pass would
tell them (``compare``, looking only where the folder moved: ``vouch``),
without reading the store or sealing anything.
"""

from __future__ import annotations

import hashlib
import os

from fogsync.engine.excluded import keep_excluded
from fogsync.engine.vouch import Vouch
from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import Scanned, Stat, compare, scan
from fogsync.folder.state import State
from fogsync.format.tree import DIR, FILE, Entry

_HASH_CHUNK = 1 << 20


def waiting(folder: str, exclude: tuple[str, ...], state: State, name: str) -> tuple[int, int]:
    """Files (and their bytes) that differ from the last pass.

    Stats tell, without reading; only a file whose stat was too fresh to be
    recorded at the last pass, and whose size is unchanged, is hashed.
    A folder scanned as the last pass left it waits for nothing, and only
    the directories whose scan moved since are compared (as ``sync`` does).
    """
    ignore = Ignore.for_folder(folder, exclude)
    snap = scan(folder, ignore)
    vouch = Vouch.of(state, name, state.share(name), snap, on_base=True)
    if vouch.whole_folder():
        return 0, 0
    snap = vouch.narrow(snap)
    base, stats = vouch.load_base()
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
