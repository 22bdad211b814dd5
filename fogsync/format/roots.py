"""Roots: one commit of a share, chained by ``prev`` (FORMAT.md 6 and 8).

This layer adds the ``Root`` model and its JSON, with the keys of section 8
(``requires``, ``kept``, ``forgot``, ``gc``), the plaintexts of the blobs
they name (the kept list, the forgotten roots, the candidate blocks), what
a new root copies from its prev or takes from two merged roots, and the
check a writer makes before it commits on a head (``check_writable``). A root's id, as ``log``
prints it and ``--root`` takes it, is the hex of its 96-character bptr.
The head object (FORMAT.md 7) is a sealed blob whose plaintext is the newest
root's packed bptr; ``repo`` reads and swaps it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fogsync.errors import FormatError
from fogsync.format.blocks import BPTR_LEN

GC1 = "gc1"
#: the features of FORMAT.md section 8 this writer implements
KNOWN_FEATURES = frozenset({GC1})
MARKED, SWEPT = "marked", "swept"
_HASH_LEN = 32


@dataclass(frozen=True)
class GcState:
    """The ``gc`` key: the state of block deletion (FORMAT.md 8)."""

    epoch: int
    state: str  # MARKED or SWEPT
    date: str
    candidates: bytes | None  # packed bptr of the candidates blob, while marked

    def encode(self) -> dict:
        return {"epoch": self.epoch, "state": self.state, "date": self.date,
                "candidates": self.candidates.hex() if self.candidates else None}

    @classmethod
    def decode(cls, d) -> "GcState":
        if not isinstance(d, dict):
            raise FormatError(f"root's gc is {type(d).__name__}, not an object")
        epoch, state = d.get("epoch"), d.get("state")
        if type(epoch) is not int or epoch < 1:
            raise FormatError(f"root's gc has epoch {epoch!r}, not a positive integer")
        if state not in (MARKED, SWEPT):
            raise FormatError(f"root's gc has state {state!r}, not 'marked' or 'swept'")
        parse_date(str(d.get("date")))
        return cls(epoch, state, str(d["date"]), _bptr_field(d.get("candidates")))

    @property
    def datetime(self) -> datetime:
        return parse_date(self.date)


@dataclass(frozen=True)
class Root:
    version: int
    prev: bytes | None  # packed bptr of the previous root
    date: str  # RFC 3339, UTC, microseconds
    host: str
    root: bytes  # packed bptr of the top directory's listing
    merged: tuple[bytes, ...] = ()  # other roots this one took in (our extra key)
    requires: tuple[str, ...] = ()  # features a writer must know to commit on top (sorted, unique)
    kept: bytes | None = None  # packed bptr of the kept list (a forget root)
    forgot: bytes | None = None  # packed bptr of the forgotten roots (a forget root)
    gc: GcState | None = None
    extra: tuple = field(default=(), compare=False)

    def encode(self) -> bytes:
        d: dict = {
            "version": self.version,
            "prev": self.prev.hex() if self.prev else None,
            "date": self.date,
            "host": self.host,
            "root": self.root.hex(),
        }
        if self.merged:
            d["merged"] = [m.hex() for m in self.merged]
        if self.requires:
            d["requires"] = list(self.requires)
        if self.kept:
            d["kept"] = self.kept.hex()
        if self.forgot:
            d["forgot"] = self.forgot.hex()
        if self.gc:
            d["gc"] = self.gc.encode()
        for k, v in self.extra:
            d.setdefault(k, v)
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> "Root":
        try:
            d = json.loads(data.decode("utf-8"))
            known = {"version", "prev", "date", "host", "root", "merged", "requires", "kept", "forgot", "gc"}
            version = d["version"]
            if type(version) is not int or version < 1:
                raise FormatError(f"root has version {version!r}, not a positive integer")
            parse_date(str(d["date"]))
            return cls(
                version=version,
                prev=_bptr_field(d.get("prev")),
                date=str(d["date"]),
                host=str(d["host"]),
                root=_bptr_field(d["root"]),
                merged=tuple(_bptr_field(m) for m in d.get("merged") or ()),
                requires=_requires_field(d.get("requires")),
                kept=_bptr_field(d.get("kept")),
                forgot=_bptr_field(d.get("forgot")),
                gc=GcState.decode(d["gc"]) if d.get("gc") is not None else None,
                extra=tuple(sorted((k, v) for k, v in d.items() if k not in known)),
            )
        except FormatError:
            raise
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise FormatError(f"root is malformed ({e!r})") from None

    @property
    def datetime(self) -> datetime:
        return parse_date(self.date)


def _requires_field(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError("root's requires is not an array of strings")
    return tuple(sorted(set(value)))


def _bptr_field(value) -> bytes | None:
    if value is None:
        return None
    raw = bytes.fromhex(value)
    if len(raw) != BPTR_LEN:
        raise FormatError(f"root names a bptr of {len(raw)} bytes")
    return raw


def format_date(when: datetime) -> str:
    """RFC 3339 in UTC with microseconds: 2026-11-21T23:34:58.123456Z."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_date(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FormatError(f"bad date {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def decode_head(plain: bytes) -> bytes:
    """The newest root's packed bptr, from the head blob's plaintext."""
    if len(plain) != BPTR_LEN:
        raise FormatError(f"head holds {len(plain)} bytes, not a {BPTR_LEN}-byte bptr")
    return plain


# --- FORMAT.md 8: what a root carries over, and the blobs its keys name ---------------------------


def inherited(prev: Root | None) -> dict:
    """The section-8 keys a new root copies from its prev (not for a mark or a sweep, which set ``gc``)."""
    if prev is None:
        return {}
    return {"requires": prev.requires, "gc": prev.gc}


def merged_keys(a: Root, b: Root) -> dict:
    """A merge of ``a`` and ``b``: the union of ``requires``; the ``gc`` of the higher epoch, "swept" at a tie."""
    return {"requires": tuple(sorted(set(a.requires) | set(b.requires))), "gc": newer_gc(a.gc, b.gc)}


def newer_gc(a: GcState | None, b: GcState | None) -> GcState | None:
    if a is None or b is None:
        return a or b
    if a.epoch != b.epoch:
        return a if a.epoch > b.epoch else b
    return a if a.state == SWEPT else b


def with_gc1(requires: tuple[str, ...]) -> tuple[str, ...]:
    """``requires`` of a root that carries ``kept`` or ``gc``."""
    return tuple(sorted(set(requires) | {GC1}))


def unknown_features(root: Root) -> list[str]:
    return [f for f in root.requires if f not in KNOWN_FEATURES]


def check_writable(root: Root | None, where: str) -> None:
    """Refuse to commit on a head that requires a feature this writer does not know (it may still read)."""
    missing = unknown_features(root) if root is not None else []
    if missing:
        raise FormatError(
            f"{where} requires {', '.join(missing)}, which this version of fogsync does not know: "
            "upgrade fogsync to commit to it (reading, pull and restore --to still work)"
        )


@dataclass(frozen=True)
class KeptRoot:
    """One entry of a kept list: an older root still in the history."""

    ref: bytes
    version: int
    date: str
    host: str

    @property
    def datetime(self) -> datetime:
        return parse_date(self.date)


def encode_kept(kept: list[KeptRoot]) -> bytes:
    """The kept list's plaintext: a JSON array, newest first."""
    return json.dumps(
        [{"ref": k.ref.hex(), "version": k.version, "date": k.date, "host": k.host} for k in kept],
        ensure_ascii=False, separators=(",", ":"),
    ).encode("utf-8")


def decode_kept(data: bytes) -> list[KeptRoot]:
    try:
        items = json.loads(data.decode("utf-8"))
        if not isinstance(items, list):
            raise FormatError("kept list is not a JSON array")
        out = []
        for d in items:
            version = d["version"]
            if type(version) is not int or version < 1:
                raise FormatError(f"kept list names version {version!r}, not a positive integer")
            parse_date(str(d["date"]))
            out.append(KeptRoot(_bptr_field(d["ref"]), version, str(d["date"]), str(d["host"])))
        return out
    except FormatError:
        raise
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"kept list is malformed ({e!r})") from None


def encode_bptrs(refs: list[bytes]) -> bytes:
    """The ``forgot`` blob's plaintext: 48-byte bptrs, one after another."""
    return b"".join(refs)


def decode_bptrs(data: bytes) -> list[bytes]:
    if len(data) % BPTR_LEN:
        raise FormatError(f"forgotten roots blob of {len(data)} bytes is not a whole number of bptrs")
    return [data[i : i + BPTR_LEN] for i in range(0, len(data), BPTR_LEN)]


def encode_candidates(hashes: set[bytes] | list[bytes]) -> bytes:
    """The candidates blob's plaintext: 32-byte block names, sorted, concatenated."""
    return b"".join(sorted(hashes))


def decode_candidates(data: bytes) -> list[bytes]:
    if len(data) % _HASH_LEN:
        raise FormatError(f"candidates blob of {len(data)} bytes is not a whole number of 32-byte names")
    return [data[i : i + _HASH_LEN] for i in range(0, len(data), _HASH_LEN)]
