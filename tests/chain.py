"""A share's history built directly on a Repo, for the section-8 tests (importable as ``chain``).

``Chain.commit`` seals the files it is given in one writer (so their tails
share partial blocks, as a pass's do), writes the listings and a root that
copies its prev's section-8 keys, and swaps the head.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Callable

from fogsync.engine.push import write_listings
from fogsync.format import crypto
from fogsync.format.roots import Root, format_date, inherited
from fogsync.format.tree import DIR, FILE, Entry, parent_of
from fogsync.repo.repository import Repo

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)


class Chain:
    def __init__(
        self, repo: Repo, host: str = "h", start: datetime = T0, clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.repo = repo
        self.host = host
        self.tree: dict[str, Entry] = {}
        self.when = start  # each commit is dated an hour after the one before, or by ``clock``
        self.clock = clock
        self.refs: list[bytes] = []  # every root committed here, oldest first

    def commit(
        self, files: dict[str, bytes | None], when: datetime | None = None, raw: dict[str, Entry] | None = None,
        **keys,
    ) -> bytes:
        """Add (bytes) or remove (None) files, and put ``raw`` entries as they are; commit on the head;
        return the new root's ref."""
        self.when = when or (self.clock() if self.clock else self.when + timedelta(hours=1))
        head = self.repo.read_head()
        prev = self.repo.read_root(head.root) if head.root else None
        if prev is not None and head.root not in self.refs:  # another writer moved the head: start from it
            self.tree = self.repo.load_tree(prev.root)
        w = self.repo.writer()
        new = {p: d for p, d in files.items() if d is not None}
        pendings = [w.write(crypto.seal_stream(self.repo.keys, [d], compress=False)) for d in new.values()]
        refs = w.resolve(pendings)
        previous = dict(self.tree)
        for (p, d), ref in zip(new.items(), refs):
            self.tree[p] = Entry(FILE, 1, self.host, len(d), ref, hashlib.sha256(d).hexdigest())
            for parent in _parents(p):
                self.tree.setdefault(parent, Entry(DIR, 1, self.host))
        for p, e in (raw or {}).items():
            self.tree[p] = e
        for p, d in files.items():
            if d is None:
                for q in [q for q in self.tree if q == p or q.startswith(p + "/")]:
                    del self.tree[q]
        top, self.tree = write_listings(w, self.tree, previous, self.host)
        fields = {**inherited(prev), **keys}
        root = Root(version=prev.version + 1 if prev else 1, prev=head.root, date=format_date(self.when),
                    host=self.host, root=top, **fields)
        (ref,) = w.resolve([w.write_bytes(crypto.seal(self.repo.keys, root.encode(), compress=False))])
        self.repo.wait_uploads()
        self.repo.swap_head(ref, head.tag)
        self.refs.append(ref)
        return ref


def _parents(path: str) -> list[str]:
    out = []
    while "/" in path:
        path = parent_of(path)
        out.append(path)
    return out
