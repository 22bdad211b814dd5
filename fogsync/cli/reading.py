"""Commands that read a share: log, ls, cat, check, conflicts.

For people: short IDs and local times (``render``); with ``--json`` one
document with full IDs and RFC 3339 dates (docs/json.md).
"""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime, timezone

from fogsync.cli.common import config, open_repo, share_path, tree_at
from fogsync.cli.render import local_time, local_time_ns, print_json, short_ids
from fogsync.errors import FogsyncError
from fogsync.format.tree import DIR, FILE, SYMLINK, Entry, name_of

# merge.conflict_name: "report (conflict from laptop 2026-11-21 2334).txt", a counter before ")" when taken
CONFLICT_NAME = re.compile(
    r"^(?P<stem>.+) \(conflict from (?P<host>.+) (?P<date>\d{4}-\d\d-\d\d) (?P<hhmm>\d{4})(?: (?P<n>\d+))?\)"
    r"(?P<ext>\.[^.]*)?$"
)


def rfc3339_ns(ns: int) -> str:
    """An mtime in nanoseconds as RFC 3339 UTC, to the microsecond."""
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cmd_log(args) -> int:
    _, repo = open_repo(args, args.name)
    head = repo.read_head()
    repo.find_root(head.root)  # says so when there is nothing to show
    roots = list(repo.history_items(head.root))  # kept roots come from the kept list, unread
    if args.json:
        print_json({"share": args.name, "roots": [
            {"id": r.ref.hex(), "version": r.version, "date": r.date, "host": r.host} for r in roots]})
        return 0
    short = short_ids(r.ref for r in roots)
    for r in roots:
        print(f"{short[r.ref]} {r.version} {local_time(r.date)} {r.host}")
    return 0


def cmd_ls(args) -> int:
    _, repo = open_repo(args, args.name)
    path = share_path(args.path)
    ref, tree = tree_at(repo, args)
    if path and path not in tree:
        raise FogsyncError(f"no {path!r} in share {args.name!r}")
    if path and tree[path].type != DIR:
        shown = [(name_of(path), path)]
    else:
        shown = [(name_of(child), child) for child in sorted(p for p in tree if p.rpartition("/")[0] == path)]
    if args.json:
        print_json({"share": args.name, "root": ref.hex(), "path": path,
                    "entries": [_ls_entry(full, tree[full]) for _, full in shown]})
        return 0
    for name, full in shown:
        print(_ls_line(name, tree[full]))
    return 0


def _ls_entry(path: str, e: Entry) -> dict:
    out = {"path": path, "name": name_of(path), "type": e.type, "size": e.size if e.type == FILE else None,
           "mtime": rfc3339_ns(e.mtime), "mtime_ns": e.mtime, "exec": bool(e.type == FILE and e.exec),
           "host": e.host}
    if e.type == SYMLINK:
        out["target"] = e.target
    return out


def _ls_line(name: str, e: Entry) -> str:
    kind = {"file": "-", "dir": "d", "symlink": "l"}[e.type]
    if e.type == "file" and e.exec:
        kind = "x"
    shown = name + ("/" if e.type == DIR else f" -> {e.target}" if e.type == SYMLINK else "")
    size = "-" if e.type == DIR else str(e.size)
    return f"{kind} {size:>12} {local_time_ns(e.mtime)} {e.host:<12} {shown}"


def cmd_cat(args) -> int:
    _, repo = open_repo(args, args.name)
    path = share_path(args.path)
    _, tree = tree_at(repo, args)
    e = tree.get(path)
    if e is None or e.type != "file":
        raise FogsyncError(f"no file {path!r} in share {args.name!r}")
    out = sys.stdout.buffer
    if e.size:
        with repo.verified(e.bptr, f"/{path}", size=e.size) as chunks:
            for chunk in chunks:
                out.write(chunk)
    out.flush()
    return 0


def cmd_check(args) -> int:
    from fogsync.cli.progress import showing
    from fogsync.engine.check import check_share

    _, repo = open_repo(args, args.name)
    with showing(args, args.name) as progress:
        report = check_share(repo, progress)
    problems = [" ".join(p.split()) for p in report.problems]
    if args.json:
        print_json({"share": args.name, "ok": not problems, "roots": report.roots, "listings": report.listings,
                    "files": report.files, "problems": problems})
        return 1 if problems else 0
    for problem in problems:
        print(f"{args.name}: {problem}")
    print(f"{args.name}: checked {report.roots} root(s), {report.listings} listing(s), "
          f"{report.files} file content(s): {len(problems) or 'no'} problem(s)")
    if problems:
        print(f"fogsync: error: share {args.name!r} has {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


def cmd_conflicts(args) -> int:
    """The conflict copies in the shares' folders, each with the original it belongs to."""
    cfg = config(args)
    names = [args.name] if args.name else list(cfg.shares)
    found = [c for name in names for c in conflict_copies(name, cfg.share(name).path)]
    if args.json:
        print_json({"conflicts": found})
        return 0
    for c in found:
        gone = "" if c["original_exists"] else " (original gone)"
        print(f"{c['share']}\t{c['path']}\t{c['original']}{gone}")
    return 0


def conflict_copies(share: str, folder: str) -> list[dict]:
    if not os.path.isdir(folder):
        raise FogsyncError(f"share {share!r}: its folder {folder} is not there")
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, folder).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for name in sorted(filenames + [d for d in dirnames if CONFLICT_NAME.match(d)]):
            m = CONFLICT_NAME.match(name)
            if m is None:
                continue
            original = rel_dir + m["stem"] + (m["ext"] or "")
            when = datetime.strptime(f"{m['date']} {m['hhmm']}", "%Y-%m-%d %H%M").replace(tzinfo=timezone.utc)
            out.append({"share": share, "path": rel_dir + name, "original": original, "host": m["host"],
                        "date": when.strftime("%Y-%m-%dT%H:%M:00Z"),
                        "original_exists": os.path.lexists(os.path.join(folder, original))})
    return out
