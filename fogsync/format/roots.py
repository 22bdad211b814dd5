"""Roots: one commit of a share, chained by ``prev`` (FORMAT.md 6).

This layer adds the ``Root`` model and its JSON. A root's id, as ``log``
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


@dataclass(frozen=True)
class Root:
    version: int
    prev: bytes | None  # packed bptr of the previous root
    date: str  # RFC 3339, UTC, microseconds
    host: str
    root: bytes  # packed bptr of the top directory's listing
    merged: tuple[bytes, ...] = ()  # other roots this one took in (our extra key)
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
        for k, v in self.extra:
            d.setdefault(k, v)
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> "Root":
        try:
            d = json.loads(data.decode("utf-8"))
            known = {"version", "prev", "date", "host", "root", "merged"}
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
                extra=tuple(sorted((k, v) for k, v in d.items() if k not in known)),
            )
        except FormatError:
            raise
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise FormatError(f"root is malformed ({e!r})") from None

    @property
    def datetime(self) -> datetime:
        return parse_date(self.date)


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
