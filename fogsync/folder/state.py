"""Local state: what each share's folder was last in step with (SQLite).

Per share this remembers the base — the root the folder last agreed with,
and that root's whole tree as flat rows, one per path — together with the
local ``stat`` (size, mtime_ns, inode) each file had then. The engine uses
the base as the common ancestor of a three-way merge, and the stats to skip
unchanged files without opening them. A content index (sha256 -> bptr)
of stored content that the base tree no longer holds (the tree itself
indexes the rest) lets files moved back, copied or restored reuse what the
store already has. The roots
this host committed are remembered too, and when it last forgot and pruned
(``upkeep``, what ``status`` shows), so a root under this host's name
that it did not make reveals a second host using the same name. And the
digests of the directories a scan found as in the base
(``Snapshot.dir_digests``), sealed by their whole-scan digest in the share
row, let a pass load only the directories whose scan moved
(``load_dirs``), or none; every ``save`` replaces the seal, as the rows it
vouched for change.

The share row also keeps the newest root this host has committed or
synced (``seen_root``, ``seen_version``: a store whose head does not
descend from it was rolled back) and whether this host has seen the
folder's marker (``folder_marked``); ``rebase`` makes a rolled-back
store's head the base, on consent.

All writes of one sync pass happen in one transaction, so a crash leaves
the previous base intact; the next pass rescans. A first sync, which does
not hold its whole tree at once, puts its rows aside as it goes
(``stage``, the ``staged_entry`` table); they become the base only in its
save's transaction, and are dropped otherwise.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Collection, Iterable, Iterator, Mapping

from fogsync.errors import LocalError
from fogsync.folder.scan import Stat
from fogsync.format.tree import Entry
from fogsync.platform.private import private_dir, private_file

PAGE_SIZE = 16384

SCHEMA = """
CREATE TABLE IF NOT EXISTS share (
    name TEXT PRIMARY KEY,
    share_id TEXT NOT NULL,
    base BLOB,
    head_tag TEXT,
    synced_at TEXT,
    scan_digest TEXT,
    gc_epoch INTEGER,
    gc_state TEXT,
    seen_root BLOB,
    seen_version INTEGER,
    folder_marked INTEGER
);
CREATE TABLE IF NOT EXISTS entry (
    share TEXT NOT NULL, path TEXT NOT NULL,
    type TEXT NOT NULL, mtime INTEGER NOT NULL, host TEXT NOT NULL, size INTEGER NOT NULL,
    bptr BLOB, sha256 TEXT, exec INTEGER NOT NULL, target TEXT, extra TEXT,
    st_size INTEGER, st_mtime INTEGER, st_ino INTEGER,
    PRIMARY KEY (share, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staged_entry (
    share TEXT NOT NULL, path TEXT NOT NULL,
    type TEXT NOT NULL, mtime INTEGER NOT NULL, host TEXT NOT NULL, size INTEGER NOT NULL,
    bptr BLOB, sha256 TEXT, exec INTEGER NOT NULL, target TEXT, extra TEXT,
    st_size INTEGER, st_mtime INTEGER, st_ino INTEGER
);
CREATE TABLE IF NOT EXISTS content (
    share TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, bptr BLOB NOT NULL,
    PRIMARY KEY (share, sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scan_dir (
    share TEXT NOT NULL, dir TEXT NOT NULL, digest BLOB NOT NULL,
    PRIMARY KEY (share, dir)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS own_root (
    share TEXT NOT NULL, root BLOB NOT NULL,
    UNIQUE (share, root)
);
CREATE TABLE IF NOT EXISTS upkeep (
    share TEXT PRIMARY KEY,
    forget_at TEXT, forgot INTEGER,
    prune_at TEXT, deleted INTEGER, deleted_bytes INTEGER, sweep_at TEXT
);
"""

# A remembered scan vouches for the rows it was checked against. Every save moves the base or
# the head tag and names the scan it vouches for; one that names none, as a FogSync from before
# the column does, leaves no stale scan behind either.
TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS share_saved_without_scan AFTER UPDATE OF base, head_tag ON share
WHEN NEW.scan_digest IS NOT NULL AND NEW.scan_digest IS OLD.scan_digest
BEGIN
    UPDATE share SET scan_digest = NULL WHERE name = NEW.name;
END;
"""

# Roots this host committed, newest kept: a pass only asks about roots newer
# than its base, and the base catches up with every completed pass.
OWN_ROOTS_KEPT = 1000


def stat_of(entry: Entry, size: int, mtime_ns: int, ino: int) -> Stat:
    """A file's Stat, sharing its entry's int objects where they agree, as they do unless it
    changed: one int object per field and file, not two."""
    return Stat(entry.size if size == entry.size else size, entry.mtime if mtime_ns == entry.mtime else mtime_ns, ino)


@dataclass(frozen=True)
class ShareState:
    share_id: str
    base: bytes | None  # packed bptr of the root the folder last agreed with
    head_tag: str | None
    scan_digest: str | None = None  # the seal of the directory digests that match the base (``scan.digest_of``)
    gc_epoch: int | None = None  # the gc of the head last synced (FORMAT.md 8, "Writers"): 0 for none;
    gc_state: str | None = None  # None for a state from before these columns, or never synced
    seen_root: bytes | None = None  # the newest root this host committed or synced: the store must descend from it
    seen_version: int | None = None  # that root's version
    folder_marked: bool = False  # this host has seen the folder's marker (``folder.marker``)


@dataclass(frozen=True)
class Upkept:
    """The last forget and prune this host ran on a share (RFC 3339 UTC times), and when a sweep is due."""

    forget_at: str | None = None
    forgot: int | None = None  # roots forgotten
    prune_at: str | None = None
    deleted: int | None = None  # objects the prune deleted
    deleted_bytes: int | None = None
    sweep_at: str | None = None  # a mark waits for its grace period until then


class State:
    """The state database of one host (one ``state_dir``). Safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        private_dir(os.path.dirname(os.path.abspath(path)))
        private_file(path)  # SQLite gives the -wal and -shm files the database's mode
        for extra in ("-wal", "-shm"):
            private_file(path + extra, create=False)
        try:
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            # A new database only (an existing one keeps its pages): bigger pages save a first
            # sync's rows faster, and cost nothing in loading them or in a one-row save.
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            _add_missing_columns(self._db)
            self._db.executescript(TRIGGERS)
        except sqlite3.Error as e:
            raise LocalError(f"cannot open state database {path}: {e}") from None
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    # --- reading ------------------------------------------------------------

    def share(self, name: str) -> ShareState | None:
        row = self._query_one("SELECT share_id, base, head_tag, scan_digest, gc_epoch, gc_state, seen_root,"
                              " seen_version, folder_marked FROM share WHERE name=?", (name,))
        return ShareState(*row[:8], bool(row[8])) if row else None

    def load(self, name: str) -> tuple[dict[str, Entry], dict[str, Stat]]:
        """The base tree and the local stats recorded with it."""
        tree: dict[str, Entry] = {}
        stats: dict[str, Stat] = {}
        self._load_into(tree, stats, "", (name,))
        return tree, stats

    def _load_into(self, tree: dict[str, Entry], stats: dict[str, Stat], where: str, args: tuple) -> None:
        words: dict[str, str] = {}  # one str object per distinct type and host, not one per row
        same = words.setdefault
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT path, type, mtime, host, size, bptr, sha256, exec, target, extra,"
                    " st_size, st_mtime, st_ino FROM entry WHERE share=?" + where,
                    args,
                )
                # Row by row, not fetchall: every row held at once as a tuple would raise the peak memory.
                for path, kind, mtime, host, size, bptr, sha, ex, target, extra, s_size, s_mtime, s_ino in rows:
                    tree[path] = entry = Entry(same(kind, kind), mtime, same(host, host), size, bptr, sha, ex == 1,
                                               target, _thaw(extra) if extra else ())
                    if s_size is not None:
                        stats[path] = stat_of(entry, s_size, s_mtime, s_ino)
            except sqlite3.Error as e:
                raise LocalError(f"state database {self.path}: {e}") from None

    def load_dirs(self, name: str, dirs: Iterable[str]) -> tuple[dict[str, Entry], dict[str, Stat]]:
        """Like ``load``, for just the entries directly in ``dirs`` ('' is the top)."""
        tree: dict[str, Entry] = {}
        stats: dict[str, Stat] = {}
        for where in dirs:
            if not where:
                top = self._top_paths(name)
                for i in range(0, len(top), 500):  # well under any SQLite's limit on parameters
                    chunk = top[i:i + 500]
                    self._load_into(tree, stats, f" AND path IN ({','.join('?' * len(chunk))})", (name, *chunk))
                continue
            # A range of the primary key (what follows 'where/' and precedes 'where0', as '0'
            # follows '/'), then its direct children: no parent column to keep.
            self._load_into(tree, stats, " AND path >= ? AND path < ? AND instr(substr(path, ?), '/') = 0",
                            (name, where + "/", where + "0", len(where) + 2))
        return tree, stats

    def _top_paths(self, name: str) -> list[str]:
        """The paths directly in the top directory, found by one seek of the primary key per path
        (and one past each directory's rows), not by reading every row of the share."""
        out, bound, op = [], "", ">="
        while True:
            row = self._query_one(f"SELECT path FROM entry WHERE share=? AND path {op} ? ORDER BY path LIMIT 1",
                                  (name, bound))
            if row is None:
                return out
            path = row[0]
            slash = path.find("/")
            if slash < 0:
                out.append(path)
                bound, op = path, ">"
            else:  # below a top directory: past its rows ('0' follows '/')
                bound, op = path[:slash] + "0", ">="

    def scan_dirs(self, name: str) -> dict[str, bytes]:
        """The directory digests of the remembered scan (``Snapshot.dir_digests``), as far as they go.

        Only those ``ShareState.scan_digest`` seals are to be trusted (``scan.digest_of``).
        """
        return dict(self._query("SELECT dir, digest FROM scan_dir WHERE share=?", (name,)))

    def content(self, name: str, sha256: str) -> bytes | None:
        row = self._query_one("SELECT bptr FROM content WHERE share=? AND sha256=?", (name, sha256))
        return row[0] if row else None

    def contents_of_sizes(self, name: str, sizes: Iterable[int]) -> list[tuple[str, int, bytes]]:
        """(sha256, size, bptr) of each stored file in the base tree with one of ``sizes``.

        For a pass that loaded part of the base (``load_dirs``): only content
        of a size it reads can be reused, so these are all it needs of the rest.
        """
        wanted = sorted(set(sizes))
        out: list[tuple[str, int, bytes]] = []
        for i in range(0, len(wanted), 500):  # well under any SQLite's limit on parameters
            chunk = wanted[i:i + 500]
            out += self._query(
                "SELECT sha256, size, bptr FROM entry WHERE share=? AND type='file' AND bptr IS NOT NULL"
                f" AND size IN ({','.join('?' * len(chunk))})", (name, *chunk))
        return out

    def content_sizes(self, name: str) -> set[int]:
        return {r[0] for r in self._query("SELECT DISTINCT size FROM content WHERE share=?", (name,))}

    def own_roots(self, name: str, refs: Iterable[bytes]) -> set[bytes]:
        """Those of ``refs`` that this host committed (``add_own_root``)."""
        return {ref for ref in refs if self._query_one(
            "SELECT 1 FROM own_root WHERE share=? AND root=?", (name, ref))}

    # --- writing ------------------------------------------------------------

    def ensure_share(self, name: str, share_id: str) -> None:
        with self._lock:
            row = self._query_one("SELECT share_id FROM share WHERE name=?", (name,))
            if row and row[0] != share_id:
                # Same name, different key or store identity: the old base means nothing now.
                self.forget(name)
                row = None
            if not row:
                self._db.execute("INSERT INTO share(name, share_id) VALUES (?, ?)", (name, share_id))

    def save(
        self,
        name: str,
        base: bytes | None,
        head_tag: str | None,
        changed: Mapping[str, tuple[Entry, Stat | None]],
        removed: Iterable[str],
        contents: Iterable[tuple[str, int, bytes]] = (),
        scan_digest: str | None = None,
        scan_dirs: Mapping[str, bytes] | None = None,
        gc_seen: tuple[int, str] | None = None,
        drop_contents: bool = False,
        scan_delta: tuple[str, Mapping[str, bytes], Collection[str]] | None = None,
        staged: bool = False,
    ) -> None:
        """Record a finished pass: the new base and the rows that changed, atomically.

        ``scan_dirs`` are the directories of this pass's scan that the new
        base and stats match unchanged, by digest (``Snapshot.dir_digests``),
        and ``scan_digest`` their seal; any other remembered scan is
        forgotten with the old rows. Without ``scan_dirs`` the directory
        digests stay as they were, and only a seal they match makes them count.
        ``gc_seen`` is the (epoch, state) of the head's ``gc`` the rows were
        learnt under (None: unchanged); ``drop_contents`` empties the content
        index before ``contents`` go in (FORMAT.md 8: a host that finds the
        head's ``gc`` changed drops what it remembers beyond the head's tree).
        ``scan_delta`` instead of ``scan_dirs``: a change to the remembered
        digests (``_change_scan_dirs``), which ``scan_digest`` then seals.
        ``staged``: the share's rows become those ``stage`` put aside, and
        only those (a first sync's).
        """
        with self._lock, self._transaction():
            if scan_delta is not None and not self._change_scan_dirs(name, *scan_delta):
                scan_digest = None
            self._db.execute("UPDATE share SET base=?, head_tag=?, synced_at=datetime('now') WHERE name=?",
                             (base, head_tag, name))
            # Apart, and after: the trigger forgets a seal that a save left as it was, as an older
            # FogSync's does; this save names its seal, though it be the one the last save named.
            self._db.execute("UPDATE share SET scan_digest=? WHERE name=?", (scan_digest, name))
            if gc_seen is not None:
                self._db.execute("UPDATE share SET gc_epoch=?, gc_state=? WHERE name=?", (*gc_seen, name))
            if drop_contents:
                self._db.execute("DELETE FROM content WHERE share=?", (name,))
            if staged:
                self._take_staged(name)
            self._db.executemany("DELETE FROM entry WHERE share=? AND path=?", ((name, p) for p in removed))
            self._db.executemany(
                "INSERT OR REPLACE INTO entry VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                # in key order: fewer page splits; sorting the keys alone, not 50,000 (key, value) pairs
                _rows_in_order(name, changed),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO content VALUES (?,?,?,?)",
                ((name, sha, size, bptr) for sha, size, bptr in sorted(contents)),
            )
            if scan_dirs is not None:
                self._replace_scan_dirs(name, scan_dirs)

    def stage(self, name: str, rows: Mapping[str, tuple[Entry, Stat | None]]) -> None:
        """Put rows aside for a ``save(staged=True)`` to come: until then they are no part of the base,
        and a pass that never saves leaves them for ``drop_staged``."""
        with self._lock, self._transaction():
            self._db.executemany("INSERT INTO staged_entry VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 _rows_in_order(name, rows))

    def unlist_staged(self, name: str, dirs: Collection[str]) -> None:
        """Staged directory rows lose their bptr: the rows below them are not all the listing's (a path
        was left unsettled), so the next pass reads the listing rather than take these rows for it."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE staged_entry SET bptr=NULL WHERE share=? AND path IN (SELECT value FROM json_each(?))",
                             (name, json.dumps(sorted(dirs))))

    def drop_staged(self, name: str) -> None:
        """Forget the rows a pass put aside and did not save (it failed, or lost its head swap)."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM staged_entry WHERE share=?", (name,))

    def _take_staged(self, name: str) -> None:
        self._db.execute("DELETE FROM entry WHERE share=?", (name,))
        self._db.execute("INSERT INTO entry SELECT * FROM staged_entry WHERE share=? ORDER BY path", (name,))
        self._db.execute("DELETE FROM staged_entry WHERE share=?", (name,))

    def remember_scan(self, name: str, digest: str | None, dirs: Mapping[str, bytes] | None = None,
                      delta: tuple[str, Mapping[str, bytes], Collection[str]] | None = None) -> None:
        """A scan that ``compare`` found to match the base and its stats unchanged, in ``dirs`` (sealed by
        ``digest``); or, with ``delta``, where it differs from the remembered one (``_change_scan_dirs``)."""
        with self._lock, self._transaction():
            if delta is not None and not self._change_scan_dirs(name, *delta):
                digest = None
            self._db.execute("UPDATE share SET scan_digest=? WHERE name=?", (digest, name))
            if dirs is not None:
                self._replace_scan_dirs(name, dirs)

    def _replace_scan_dirs(self, name: str, dirs: Mapping[str, bytes]) -> None:
        """Make the share's directory digests ``dirs``, writing only the rows that differ."""
        old = dict(self._db.execute("SELECT dir, digest FROM scan_dir WHERE share=?", (name,)))
        self._db.executemany("DELETE FROM scan_dir WHERE share=? AND dir=?", ((name, d) for d in old if d not in dirs))
        self._db.executemany(
            "INSERT OR REPLACE INTO scan_dir VALUES (?,?,?)",
            ((name, d, dirs[d]) for d in sorted(dirs) if old.get(d) != dirs[d]),
        )

    def _change_scan_dirs(self, name: str, since: str, written: Mapping[str, bytes], gone: Collection[str]) -> bool:
        """Write ``written`` and drop ``gone`` of the share's directory digests, if ``since`` still seals
        them; False (and nothing written) if another process's save moved the seal since it was read."""
        row = self._db.execute("SELECT scan_digest FROM share WHERE name=?", (name,)).fetchone()
        if row is None or row[0] != since:
            return False
        self._db.executemany("DELETE FROM scan_dir WHERE share=? AND dir=?", ((name, d) for d in gone))
        self._db.executemany("INSERT OR REPLACE INTO scan_dir VALUES (?,?,?)",
                             ((name, d, written[d]) for d in sorted(written)))
        return True

    def add_own_root(self, name: str, ref: bytes) -> None:
        """Remember a root this host is about to commit (before its head swap, so a crash cannot lose it)."""
        with self._lock, self._transaction():
            self._db.execute("INSERT OR IGNORE INTO own_root(share, root) VALUES (?, ?)", (name, ref))
            self._db.execute(
                "DELETE FROM own_root WHERE share=? AND rowid NOT IN"
                " (SELECT rowid FROM own_root WHERE share=? ORDER BY rowid DESC LIMIT ?)",
                (name, name, OWN_ROOTS_KEPT),
            )

    def upkeep(self, name: str) -> Upkept:
        """When this host last forgot and pruned the share, and what that did."""
        row = self._query_one("SELECT forget_at, forgot, prune_at, deleted, deleted_bytes, sweep_at"
                              " FROM upkeep WHERE share=?", (name,))
        return Upkept(*row) if row else Upkept()

    def record_forget(self, name: str, at: str, forgot: int) -> None:
        with self._lock, self._transaction():
            self._db.execute("INSERT OR IGNORE INTO upkeep(share) VALUES (?)", (name,))
            self._db.execute("UPDATE upkeep SET forget_at=?, forgot=? WHERE share=?", (at, forgot, name))

    def record_prune(self, name: str, at: str, deleted: int, deleted_bytes: int, sweep_at: str | None) -> None:
        with self._lock, self._transaction():
            self._db.execute("INSERT OR IGNORE INTO upkeep(share) VALUES (?)", (name,))
            self._db.execute("UPDATE upkeep SET prune_at=?, deleted=?, deleted_bytes=?, sweep_at=? WHERE share=?",
                             (at, deleted, deleted_bytes, sweep_at, name))

    def remember_seen(self, name: str, ref: bytes, version: int) -> None:
        """The newest root this host has committed or synced (``engine.refusals``: the store must descend from it)."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE share SET seen_root=?, seen_version=? WHERE name=?", (ref, version, name))

    def mark_folder(self, name: str) -> None:
        """This host has seen the share's folder hold its marker: from now on a folder without it is refused."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE share SET folder_marked=1 WHERE name=?", (name,))

    def file_paths(self, name: str) -> list[str]:
        """The paths of the base that are not directories."""
        return [r[0] for r in self._query("SELECT path FROM entry WHERE share=? AND type != 'dir'", (name,))]

    def count_files(self, name: str) -> int:
        """How many paths of the base are not directories."""
        return self._query_one("SELECT COUNT(*) FROM entry WHERE share=? AND type != 'dir'", (name,))[0]

    def rebase(self, name: str, base: bytes, tree: Mapping[str, Entry], version: int) -> None:
        """Make ``base`` (of ``version``, holding ``tree``) the share's base and newest root seen, atomically.

        No stat is kept, so the next pass reads every file; the content index
        and the remembered scan go with the old base, as what they name may
        not be in the store any more.
        """
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE share SET base=?, head_tag=NULL, scan_digest=NULL, seen_root=?, seen_version=? WHERE name=?",
                (base, base, version, name))
            for table in ("entry", "content", "scan_dir"):
                self._db.execute(f"DELETE FROM {table} WHERE share=?", (name,))
            self._db.executemany("INSERT INTO entry VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 (_row(name, p, tree[p], None) for p in sorted(tree)))

    def forget(self, name: str) -> None:
        with self._lock, self._transaction():
            for table, col in (("share", "name"), ("entry", "share"), ("staged_entry", "share"), ("content", "share"),
                               ("own_root", "share"), ("scan_dir", "share"), ("upkeep", "share")):
                self._db.execute(f"DELETE FROM {table} WHERE {col}=?", (name,))

    # --- plumbing -----------------------------------------------------------

    def _transaction(self):
        return _Transaction(self._db)

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise LocalError(f"state database {self.path}: {e}") from None

    def _query_one(self, sql: str, args: tuple) -> tuple | None:
        rows = self._query(sql, args)
        return rows[0] if rows else None


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._db.execute("ROLLBACK")
                raise LocalError(f"cannot save sync state: {e}") from None
        else:
            self._db.execute("ROLLBACK")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns newer than a database made by an older FogSync."""
    for column, kind in (("scan_digest", "TEXT"), ("gc_epoch", "INTEGER"), ("gc_state", "TEXT"),
                         ("seen_root", "BLOB"), ("seen_version", "INTEGER"), ("folder_marked", "INTEGER")):
        if column not in _columns(db, "share"):
            try:
                db.execute(f"ALTER TABLE share ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError:
                if column not in _columns(db, "share"):  # else another process added it first
                    raise


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


_NO_STAT = (None, None, None)


def _rows_in_order(name: str, changed: Mapping[str, tuple[Entry, Stat | None]]) -> Iterator[tuple]:
    """``_row`` of every changed path, by path."""
    for path in sorted(changed):
        yield _row(name, path, *changed[path])


def _row(name: str, path: str, e: Entry, s: Stat | None) -> tuple:
    """One ``entry`` row, built by slicing: one per file of a first sync. ``exec`` goes in as the bool
    itself, which SQLite stores as an int."""
    return (name, path, *e[:8], json.dumps(e.extra) if e.extra else None, *(s or _NO_STAT))


def _thaw(extra: str | None) -> tuple:
    if not extra:
        return ()
    return tuple((k, v) for k, v in json.loads(extra))
