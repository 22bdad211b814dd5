"""Listings: a directory tree as sealed, gzipped JSON (FORMAT.md section 5).

This layer adds the ``Entry`` model and the flat ``Tree`` (relative POSIX
path -> Entry, directories included, the top directory itself excluded) that
the engine works on, and converts between a directory's entries and its
listing JSON. It does no I/O: storing and fetching listings is ``repo``'s.
"""

from __future__ import annotations

import json
import operator
from typing import Container, Iterable, Iterator, Mapping, NamedTuple

from fogsync.errors import FormatError

FILE, DIR, SYMLINK = "file", "dir", "symlink"
TYPES = (FILE, DIR, SYMLINK)


class Entry(NamedTuple):
    """One listing entry, without its name (the path is the key in a Tree).

    ``bptr`` is the raw 48-byte reference (None for an empty file);
    ``sha256`` is hex. For a directory, ``size``/``bptr``/``sha256`` describe
    its listing and are filled in when the listing is built.

    A tuple, so immutable, and built in C: several times cheaper to make
    than a frozen dataclass, which counts when the state database loads a
    big tree. Equality leaves out ``extra``.
    """

    type: str
    mtime: int
    host: str
    size: int = 0
    bptr: bytes | None = None
    sha256: str | None = None
    exec: bool = False
    target: str | None = None
    extra: tuple = ()  # unknown keys, kept for round trips

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return self is other or self[:8] == other[:8]

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return self is not other and self[:8] != other[:8]

    def __hash__(self) -> int:
        return hash(self[:8])

    def same_content(self, other: "Entry | None") -> bool:
        """Whether two entries hold the same thing, ignoring time, host and where it is stored.

        Directories compare equal by type alone: their contents are merged path by path.
        """
        if other is None or other.type != self.type:
            return False
        if self.type == FILE:
            return self.sha256 == other.sha256 and self.exec == other.exec and self.size == other.size
        if self.type == SYMLINK:
            return self.target == other.target
        return True

    def with_(self, **changes) -> "Entry":
        return self._replace(**changes)

    def with_bptr(self, bptr: bytes | None) -> "Entry":
        """This entry stored at ``bptr`` (the hot case of ``with_``: one call per file pushed)."""
        return Entry(self.type, self.mtime, self.host, self.size, bptr, self.sha256, self.exec, self.target, self.extra)


Tree = dict  # dict[str, Entry]: "a/b.txt" -> Entry; parents always present


def parent_of(path: str) -> str:
    """'a/b/c' -> 'a/b'; 'a' -> '' (the top directory)."""
    return path.rpartition("/")[0]


def name_of(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def check_name(name: str) -> str:
    """A listing name must be one safe path component (FORMAT.md 5)."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise FormatError(f"listing holds an unsafe name {name!r}")
    return name


def children_by_dir(tree: Mapping[str, Entry], only: Container[str] | None = None) -> dict[str, list[str]]:
    """Directory path -> the paths directly inside it ('' is the top); just the directories in ``only`` if given."""
    out: dict[str, list[str]] = {"": []}
    for path, entry in tree.items():
        parent = path.rpartition("/")[0]  # parent_of, inline: once per path
        if only is None or parent in only:
            kids = out.get(parent)
            if kids is None:
                out[parent] = [path]
            else:
                kids.append(path)
        if entry.type == DIR and (only is None or path in only):
            out.setdefault(path, [])
    return out


def touched(tree: Mapping[str, Entry], base: Mapping[str, Entry]) -> list[str]:
    """The paths of ``tree`` whose entry is not ``base``'s very object: every change is among them.

    Trees share unchanged entries with the tree they came from, so this one
    identity pass, cheap even for a big tree, leaves only a handful to compare.
    """
    return [p for p, e in tree.items() if e is not base.get(p)]


def subtree(tree: Mapping[str, Entry], top: str) -> Iterator[str]:
    """The paths strictly below directory ``top``."""
    prefix = top + "/"
    return (p for p in tree if p.startswith(prefix))


# --- listing JSON -------------------------------------------------------------

_KNOWN = {"name", "type", "mtime", "host", "size", "bptr", "sha256", "exec", "target"}


def entry_to_json(name: str, e: Entry) -> dict:
    d: dict = {"name": name, "type": e.type, "mtime": e.mtime, "host": e.host, "size": e.size}
    if e.type in (FILE, DIR) and e.size > 0:
        d["bptr"] = e.bptr.hex()
        d["sha256"] = e.sha256
    if e.type == FILE:
        d["exec"] = e.exec
    if e.type == SYMLINK:
        d["target"] = e.target
    for k, v in e.extra:
        d.setdefault(k, v)
    return d


def encode_listing(entries: Iterable[tuple[str, Entry]]) -> bytes:
    """A directory's listing JSON: entries sorted by name in code point order.

    Keys are written in a fixed order with no spaces (docs/format.md), so
    the same directory always gives the same bytes and the same sha256.
    """
    items = sorted(entries, key=_by_name)
    return ("[" + ",".join([_entry_text(n, e) for n, e in items]) + "]").encode("utf-8")


_by_name = operator.itemgetter(0)


def _entry_text(name: str, e: Entry) -> str:
    """``json.dumps(entry_to_json(name, e))``, compact, written directly: a third of the time.

    Every string goes through json's own escaping; an entry with unknown
    keys takes the dict route.
    """
    if e.extra:
        return json.dumps(entry_to_json(name, e), ensure_ascii=False, separators=(",", ":"))
    text = f'{{"name":{_string(name)},"type":"{e.type}","mtime":{e.mtime},"host":{_string(e.host)},"size":{e.size}'
    if e.type in (FILE, DIR) and e.size > 0:
        text += f',"bptr":"{e.bptr.hex()}","sha256":{_string(e.sha256)}'
    if e.type == FILE:
        return text + (',"exec":true}' if e.exec else ',"exec":false}')
    if e.type == SYMLINK:
        return text + f',"target":{_string(e.target)}}}'
    return text + "}"


_string = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) writes for a str


def entry_from_json(d: dict) -> tuple[str, Entry]:
    try:
        name = check_name(d["name"])
        kind = d["type"]
        if kind not in TYPES:
            raise FormatError(f"listing entry {name!r} has unknown type {kind!r}")
        size = _count(d["size"], "size")
        bptr = sha = None
        if kind in (FILE, DIR) and size > 0:
            bptr = bytes.fromhex(d["bptr"])
            sha = str(d["sha256"]).lower()
            if len(bptr) != 48 or len(sha) != 64:
                raise FormatError(f"listing entry {name!r} has a malformed bptr or sha256")
        target = d.get("target") if kind == SYMLINK else None
        if kind == SYMLINK and not isinstance(target, str):
            raise FormatError(f"symlink {name!r} has no target")
        extra = () if d.keys() <= _KNOWN else tuple(sorted((k, v) for k, v in d.items() if k not in _KNOWN))
        if size == 0 and d.get("bptr") is not None:  # forbidden: kept, so a reader can refuse the entry
            extra += (("bptr", d["bptr"]),)
        mtime, host, exec_ = _integer(d["mtime"], "mtime"), str(d.get("host", "")), bool(d.get("exec", False))
        return name, Entry(kind, mtime, host, size, bptr, sha, exec_, target, extra)
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise FormatError(f"listing entry is malformed ({e!r})") from None


def _integer(value, what: str) -> int:
    if type(value) is not int:
        raise FormatError(f"listing entry has a {what} that is not an integer")
    return value


def _count(value, what: str) -> int:
    n = _integer(value, what)
    if n < 0:
        raise FormatError(f"listing entry has a negative {what}")
    return n


def decode_listing(data: bytes) -> list[tuple[str, Entry]]:
    """Parse a listing's JSON; refuses bad names and duplicate names."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"listing is not UTF-8 JSON ({e})") from None
    if not isinstance(raw, list):
        raise FormatError("listing is not a JSON array")
    if not all(isinstance(d, dict) for d in raw):
        raise FormatError("listing holds an entry that is not a JSON object")
    out = [entry_from_json(d) for d in raw]
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise FormatError("listing names an entry twice")
    return out
