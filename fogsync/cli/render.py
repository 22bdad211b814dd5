"""How commands show things: short IDs and local times for people, full IDs and RFC 3339 in JSON.

restic's conventions, which CLI.md pins: a table shows an ID by at least 8
hex characters, more only where needed to tell it from the others shown,
and a date in local time; ``--json`` gives full IDs and RFC 3339 dates.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Iterable

from fogsync.format.roots import parse_date

SHORT_ID = 8  # hex characters an ID shows, at least


def short_ids(refs: Iterable[bytes]) -> dict[bytes, str]:
    """Each ref's shortest hex prefix of at least ``SHORT_ID`` characters that no other ref shares."""
    hexes = sorted({ref.hex() for ref in refs})
    out = {}
    for i, text in enumerate(hexes):
        need = SHORT_ID
        for other in (hexes[i - 1] if i else "", hexes[i + 1] if i + 1 < len(hexes) else ""):
            need = max(need, _common_prefix(text, other) + 1)
        out[bytes.fromhex(text)] = text[:need]
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def local_time(rfc3339: str) -> str:
    """A root's UTC date as this machine's local time, to the second: ``2026-11-21 23:34:58``."""
    return parse_date(rfc3339).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def local_time_ns(ns: int) -> str:
    """An mtime in nanoseconds as local time, to the second."""
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def print_json(doc: Any) -> None:
    """One JSON document (or one NDJSON message) on standard output."""
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()
