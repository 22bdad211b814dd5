"""The history commands (CLI.md): ``log``, ``forget``, ``prune``, ``history`` and ``diff``.

``add_commands`` registers them on the main parser; each prints a table for
people (short IDs, local times) or, with the global ``--json``, one JSON
document with full IDs and RFC 3339 dates. ``log`` prints each root's full
ID and its UTC date, as it always has (scripts split its lines on spaces
and hand the date to ``--at``).
"""

from __future__ import annotations

import argparse
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Callable

from fogsync.cli.common import open_repo
from fogsync.cli.progress import add_quiet, showing
from fogsync.cli.render import local_time, print_json, short_ids
from fogsync.errors import ConfigError, FogsyncError

AddCommand = Callable[[str, Callable, str], argparse.ArgumentParser]


def add_commands(cmd: AddCommand) -> None:
    """Register forget, prune, history and diff through the main parser's ``cmd(name, func, help)``."""
    sp = cmd("forget", cmd_forget, "forget the roots a retention policy does not keep, as one new commit")
    sp.add_argument("name")
    for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        sp.add_argument(f"--keep-{rule}", type=_count, metavar="N", help=f"keep the newest root of N {rule} periods"
                        if rule != "last" else "keep the N newest roots (-1: all)")
    sp.add_argument("--keep-within", metavar="DURATION", help="keep every root this young, e.g. 2d3h (y m d h)")
    sp.add_argument("--dry-run", action="store_true", help="show what would be kept and forgotten; change nothing")
    sp = cmd("prune", cmd_prune, "delete the objects no kept root needs (mark, then sweep)")
    sp.add_argument("name")
    sp.add_argument("--grace", default="1h", metavar="DURATION",
                    help="spare objects younger than this, and sweep a mark this old (default 1h; 0s: one run)")
    sp.add_argument("--dry-run", action="store_true", help="show what would be deleted; change nothing")
    add_quiet(sp)
    sp = cmd("history", cmd_history, "every version of one path, newest first: ID DATE HOST SIZE")
    sp.add_argument("name")
    sp.add_argument("path")
    sp = cmd("diff", cmd_diff, "what changed between two roots (default: the head's previous root and the head)")
    sp.add_argument("name")
    sp.add_argument("ids", nargs="*", metavar="ID", help="one: that root against the head; two: the first against the second")


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < -1:
        raise argparse.ArgumentTypeError(f"{n} is not a count (-1 keeps all)")
    return n


def _own_roots(cfg, name: str):
    """Record each root a command commits as this host's own (a pass then knows it is no namesake's)."""
    from fogsync.config.shares import open_state

    state = open_state(cfg)
    return state, lambda ref: state.add_own_root(name, ref)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- forget ------------------------------------------------------------------------------------


def _policy(args, cfg):
    from fogsync.config.retention import policy_for
    from fogsync.engine.forget import COUNT_RULES, Duration, Policy, parse_duration

    counts = {rule: getattr(args, f"keep_{rule}") for rule in COUNT_RULES}
    if all(v is None for v in counts.values()) and args.keep_within is None:
        policy = policy_for(cfg, args.name)
        if policy is None:
            raise ConfigError(
                f"no retention policy for share {args.name!r}: give --keep options, or set "
                f"[shares.{args.name}.retention] or [retention] in {cfg.path}"
            )
        return policy
    within = parse_duration(args.keep_within) if args.keep_within is not None else Duration()
    policy = Policy(**{k: v or 0 for k, v in counts.items()}, within=within)
    if policy.empty():
        raise ConfigError("the --keep options given keep nothing: give at least one above 0")
    return policy


def cmd_forget(args) -> int:
    from fogsync.daemon.upkeep import record_forget
    from fogsync.engine.forget import forget_share

    cfg, repo = open_repo(args, args.name)
    policy = _policy(args, cfg)
    state, own = _own_roots(cfg, args.name)
    try:
        result = forget_share(repo, policy, cfg.host, _now, dry_run=args.dry_run, before_swap=own)
        if not args.dry_run:
            record_forget(state, args.name, _now(), result)
    finally:
        repo.close()
        state.close()
    if args.json:
        print_json({
            "share": args.name, "dry_run": args.dry_run, "root": result.root.hex() if result.root else None,
            "keep": [{**_item_json(i), "reasons": list(reasons)} for i, reasons in result.kept],
            "forget": [_item_json(i) for i in result.forgotten],
        })
        return 0
    ids = short_ids([i.ref for i, _ in result.kept] + [i.ref for i in result.forgotten])
    would = "would " if args.dry_run else ""
    for item, reasons in result.kept:
        print(f"keep   {ids[item.ref]} {item.version} {local_time(item.date)} {item.host}  ({', '.join(reasons)})")
    for item in result.forgotten:
        print(f"forget {ids[item.ref]} {item.version} {local_time(item.date)} {item.host}")
    print(f"{args.name}: {would}keep {len(result.kept)} root(s), {would}forget {len(result.forgotten)} "
          f"({policy.describe()})")
    return 0


def _item_json(item) -> dict:
    return {"id": item.ref.hex(), "version": item.version, "date": item.date, "host": item.host}


# --- prune -------------------------------------------------------------------------------------


def cmd_prune(args) -> int:
    from fogsync.daemon.upkeep import record_prune
    from fogsync.engine.prune import prune_share

    grace = _grace(args.grace)
    cfg, repo = open_repo(args, args.name)
    state, own = _own_roots(cfg, args.name)
    try:
        with showing(args, args.name) as progress:
            result = prune_share(repo, cfg.host, _now, grace, dry_run=args.dry_run, progress=progress,
                                 before_swap=own)
        if not args.dry_run:
            record_prune(state, args.name, _now(), grace, result)
    finally:
        repo.close()
        state.close()
    if args.json:
        print_json({
            "share": args.name, "dry_run": args.dry_run, "grace_seconds": grace.total_seconds(),
            "marked_objects": result.marked, "marked_bytes": result.marked_bytes,
            "deleted_objects": result.deleted, "deleted_bytes": result.deleted_bytes,
            "gc_epoch": result.epoch, "gc_state": result.state,
            "sweep_after": result.waiting_until.isoformat() if result.waiting_until else None,
        })
        return 0
    would = "would " if args.dry_run else ""
    if result.marked:
        print(f"{args.name}: {would}mark {result.marked} object(s), {_size(result.marked_bytes)}, as candidates")
    if result.waiting_until:
        print(f"{args.name}: the mark of epoch {result.epoch} is younger than the grace period: "
              f"sweep after {result.waiting_until.astimezone().strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"{args.name}: {would}delete {result.deleted} object(s), {_size(result.deleted_bytes)}"
          f" ({result.deleted_bytes} bytes)")
    return 0


_GRACE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _grace(text: str) -> timedelta:
    """A grace period: ``1h``, ``1h30m`` (m: minutes here), ``0s``, ``2d``."""
    parts = re.findall(r"(\d+)([smhd])", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip() or len({u for _, u in parts}) < len(parts):
        raise ConfigError(f"--grace {text!r} is not a duration like 1h, 1h30m, 0s or 2d (units s, m, h, d)")
    return timedelta(**{_GRACE_UNITS[u]: int(n) for n, u in parts})


def refuse_unknown_features(repo) -> None:
    """A command about to commit refuses a head that requires what this fogsync does not know."""
    from fogsync.format.roots import check_writable

    head = repo.read_head()
    if head is not None and head.root is not None:
        check_writable(repo.read_root(head.root), f"share {repo.name!r}")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# --- history and diff --------------------------------------------------------------------------


def _share_path(text: str) -> str:
    parts = [p for p in text.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise ConfigError(f"path {text!r} is not a path inside the share")
    return "/".join(parts)


def cmd_history(args) -> int:
    from fogsync.engine.history import file_history

    _, repo = open_repo(args, args.name)
    path = _share_path(args.path)
    head = repo.read_head()
    repo.find_root(head.root)
    versions = file_history(repo, head.root, path)
    if not versions:
        raise FogsyncError(f"no {path!r} in any root of share {args.name!r}")
    if args.json:
        print_json({"share": args.name, "path": path, "versions": [_version_json(v) for v in versions]})
        return 0
    ids = short_ids(v.ref for v in versions)
    for v in versions:
        size = "deleted" if v.entry is None else ("-" if v.entry.type == "dir" else str(v.entry.size))
        print(f"{ids[v.ref]} {local_time(v.date)} {v.host} {size}")
    return 0


def _version_json(v) -> dict:
    e = v.entry
    doc = {"id": v.ref.hex(), "version": v.version, "date": v.date, "host": v.host, "deleted": e is None}
    if e is not None:
        doc.update(type=e.type, size=e.size, sha256=e.sha256, mtime=_ns_date(e.mtime), modified_by=e.host)
    return doc


def _ns_date(ns: int) -> str:
    from fogsync.format.roots import format_date

    return format_date(datetime.fromtimestamp(ns / 1e9, timezone.utc))


def cmd_diff(args) -> int:
    from fogsync.engine.history import diff

    if len(args.ids) > 2:
        raise FogsyncError("diff takes at most two root IDs")
    _, repo = open_repo(args, args.name)
    head = repo.read_head()
    head_ref = repo.find_root(head.root)
    if len(args.ids) == 2:
        old_ref, new_ref = (repo.find_root(head_ref, prefix) for prefix in args.ids)
    elif len(args.ids) == 1:
        old_ref, new_ref = repo.find_root(head_ref, args.ids[0]), head_ref
    else:
        items = repo.history_items(head_ref)
        new_ref = next(items).ref
        older = next(items, None)
        old_ref = older.ref if older else None
    old_top = repo.read_root(old_ref).root if old_ref else None
    new_top = repo.read_root(new_ref).root
    changes = list(diff(repo, old_top, new_top))
    if args.json:
        print_json({
            "share": args.name, "from": old_ref.hex() if old_ref else None, "to": new_ref.hex(),
            "changes": [{"change": c.kind, "path": c.path,
                         "old_type": c.old.type if c.old else None, "new_type": c.new.type if c.new else None}
                        for c in changes],
        })
        return 0
    for c in changes:
        print(f"{c.kind} {c.path}")
    return 0
