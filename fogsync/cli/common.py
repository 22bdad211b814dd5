"""What the command modules share: the config and share openers, share paths, root choice, JSON errors.

Exit statuses (README "Exit status"): 0 done, 1 failed, 2 bad usage, 3 a
pass finished but could not read some files, 130 interrupted (SIGINT).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime

from fogsync.config import file as configmod
from fogsync.errors import ConfigError, FogsyncError
from fogsync.format.tree import Entry

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREADABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(FogsyncError):
    """Bad usage: exit status 2."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def config(args) -> configmod.Config:
    return configmod.load(configmod.config_path(args.config), args.host)


def open_repo(args, name: str):
    """(config, the share's repository)."""
    from fogsync.config.shares import open_repo as open_share_repo

    cfg = config(args)
    return cfg, open_share_repo(cfg, cfg.share(name))


def share_path(text: str) -> str:
    """A path inside the share, as a relative POSIX path; refuses one that leaves it."""
    parts = [p for p in text.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"path {text!r} is outside the share")
    return "/".join(parts)


def tree_at(repo, args) -> tuple[bytes, dict[str, Entry]]:
    """The root that ``--root``/``--at`` name (else the head) and its flat tree."""
    head = repo.read_head()
    at = parse_when(args.at) if getattr(args, "at", None) else None
    ref = repo.find_root(head.root, root_prefix(args), at)
    root = repo.read_root(ref)
    return ref, repo.load_tree(root.root)


def root_prefix(args) -> str | None:
    """``--root`` as given, refused at once when it cannot be an ID prefix."""
    text = getattr(args, "root", None)
    if text is None:
        return None
    prefix = text.strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageError(f"--root {text!r} is not a root ID or a prefix of one (hex characters, as 'log' shows)")
    return prefix


def parse_when(text: str) -> datetime:
    """``--at``: naive means local time (as ``log`` shows it); a time without a fraction means that whole
    second, so a date copied from ``log`` names the root on that line."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO 8601 date and time") from None
    if "." not in text and "," not in text:
        when = when.replace(microsecond=999_999)
    return when if when.tzinfo else when.astimezone()


def print_error(args, message: str, **fields) -> None:
    """An error on stderr: one line of text, or with ``--json`` one ``error`` message."""
    if getattr(args, "json", False):
        doc = {"message_type": "error", "message": message, **fields}
        sys.stderr.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
        sys.stderr.flush()
    else:
        where = f"{fields['share']}: " if fields.get("share") else ""
        print(f"fogsync: error: {where}{message}", file=sys.stderr)


def print_warning(args, share: str, message: str) -> None:
    """A warning on stderr (with ``--json`` a ``warning`` message)."""
    if getattr(args, "json", False):
        doc = {"message_type": "warning", "share": share, "message": message}
        sys.stderr.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
    else:
        print(f"fogsync: warning: {share}: {message}", file=sys.stderr)
