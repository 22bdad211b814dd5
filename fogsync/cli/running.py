"""Commands that run passes or ask the daemon: sync, restore, daemon, status, wait.

``sync`` and ``restore`` with ``--json`` print NDJSON messages (docs/json.md):
``status`` while working, ``summary`` per share at the end, ``error`` on
stderr. Progress is shown as ``progress`` says (a terminal line, or nothing
on a pipe).
"""

from __future__ import annotations

import os
import time

from fogsync.cli.common import (
    EXIT_FAILED,
    EXIT_UNREADABLE,
    UsageError,
    config,
    one_line,
    open_repo,
    parse_when,
    print_error,
    print_warning,
    root_prefix,
    share_path,
    tree_at,
)
from fogsync.cli.progress import showing
from fogsync.cli.render import print_json
from fogsync.errors import ConfigError, FogsyncError, LocalError

WAIT_POLL = 0.5  # seconds between the questions ``wait`` asks the daemon


def cmd_sync(args) -> int:
    from fogsync.config.shares import open_state
    from fogsync.daemon.control import ask_to_sync

    cfg = config(args)
    names = args.names or list(cfg.shares)
    for name in names:
        cfg.share(name)
    if not names:
        raise ConfigError(f"no shares in {cfg.path}: add one with 'fogsync add-share'")
    consent = _consent(args)
    answered = ask_to_sync(cfg, names, **consent)
    if answered is not None:
        pid, results = answered
        return _show_results(args, results, f" (reported by the daemon, pid {pid})")
    state = open_state(cfg)
    results = []
    try:
        for name in names:
            try:
                results.append(_result(_sync_one(args, cfg, name, state, consent)))
            except FogsyncError as e:
                if args.debug or len(names) == 1:
                    raise
                results.append({"name": name, "error": one_line(str(e))})  # the others still sync
    finally:
        state.close()
    return _show_results(args, results)


def _result(report) -> dict:
    from fogsync.daemon.control import report_fields

    return {"name": report.name, "summary": report.summary(), "problems": report.problems,
            "report": report_fields(report)}


def _show_results(args, results: list[dict], where: str = "") -> int:
    """Print each share's summary (or error); the exit status: 1 on any error, 3 when files went unread."""
    failed = unread = False
    for r in results:
        if r.get("error"):
            continue
        for problem in r.get("problems") or ():
            print_warning(args, r["name"], problem)
        unread = unread or bool(r.get("problems"))
        if args.json:
            print_json({"message_type": "summary", **r["report"]})
        else:
            print(r["summary"])
    for r in results:
        if r.get("error"):
            failed = True
            print_error(args, r["error"] + where, share=r["name"])
    return EXIT_FAILED if failed else EXIT_UNREADABLE if unread else 0


def _consent(args) -> dict[str, bool]:
    """What ``sync`` was told it may do that a pass refuses otherwise; only for shares named."""
    consent = {"accept_rollback": args.accept_rollback, "allow_mass_delete": args.allow_mass_delete}
    if any(consent.values()) and not args.names:
        raise UsageError("--accept-rollback and --allow-mass-delete need the NAME of each share they are for")
    return consent


def _sync_one(args, cfg, name: str, state, consent: dict[str, bool] | None = None):
    from fogsync.config.shares import open_share
    from fogsync.engine.sync import sync_share

    share = open_share(cfg, name, state)
    for what, given in (consent or {}).items():
        setattr(share, what, given)
    try:
        with showing(args, name, json_status=True) as share.progress:
            return sync_share(share)
    finally:
        share.repo.close()


def cmd_daemon(args) -> int:
    from fogsync.daemon.service import run_daemon

    cfg = config(args)
    if args.poll is not None:
        cfg.poll = args.poll
    return run_daemon(cfg, verbose=args.verbose)


def cmd_status(args) -> int:
    from fogsync.daemon.control import status_docs, status_lines

    cfg = config(args)
    names = [args.name] if args.name else list(cfg.shares)
    for name in names:
        cfg.share(name)
    if args.json:
        pid, docs = status_docs(cfg, names)
        print_json({"daemon": {"running": pid is not None, "pid": pid}, "shares": docs})
        return 0
    for line in status_lines(cfg, names):
        print(line)
    return 0


def cmd_wait(args) -> int:
    """0 once the daemon reports every named share in step, having read the store since ``wait`` started."""
    from fogsync.daemon.control import request

    cfg = config(args)
    names = args.names or list(cfg.shares)
    for name in names:
        cfg.share(name)
    if args.timeout is not None and args.timeout < 0:
        raise UsageError("--timeout must be a number of seconds, 0 or more")
    started = time.time()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while True:
        reply = request(cfg.state_dir, {"op": "status", "names": names}, timeout=60)
        if reply is None:
            print_error(args, f"no daemon runs for {cfg.state_dir}: start one with 'fogsync daemon'")
            return EXIT_FAILED
        shares = reply.get("shares", [])
        behind = [s for s in shares if not _in_step_since(s, started)]
        if not behind:
            if args.json:
                print_json({"in_step": True, "shares": shares})
            return 0
        if deadline is not None and time.monotonic() >= deadline:
            what = "; ".join(f"{s['name']}: {_why_behind(s)}" for s in behind)
            print_error(args, f"timed out after {args.timeout:g} s: {what}")
            return EXIT_FAILED
        time.sleep(WAIT_POLL if deadline is None else max(0.0, min(WAIT_POLL, deadline - time.monotonic())))


def _in_step_since(share: dict, started: float) -> bool:
    from fogsync.format.roots import parse_date

    poll = share.get("last_poll")
    return bool(share.get("in_step")) and poll is not None and parse_date(poll).timestamp() >= started


def _why_behind(s: dict) -> str:
    if s.get("state") in ("error", "held"):
        return f"{s['state']}: {s.get('reason')}"
    if s.get("waiting_files"):
        return f"{s['waiting_files']} file(s) waiting"
    return str(s.get("state"))


def cmd_restore(args) -> int:
    if args.in_place:
        return _restore_in_place(args)
    from fogsync.engine.restore import restore

    cfg, repo = open_repo(args, args.name)
    path = share_path(args.path)
    dest = os.path.abspath(os.path.expanduser(args.to))
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise LocalError(f"restore target {dest} must be an empty directory or absent")
    ref, tree = tree_at(repo, args)
    if path:
        if path not in tree:
            raise FogsyncError(f"no {path!r} in share {args.name!r} at root {ref.hex()[:16]}")
        tree = {p: e for p, e in tree.items() if p == path or p.startswith(path + "/") or
                path.startswith(p + "/")}
    with showing(args, args.name, json_status=True) as progress:
        n = restore(repo, tree, dest, workers=max(2, cfg.workers + 1), progress=progress)
    if args.json:
        print_json({"message_type": "summary", "share": args.name, "root": ref.hex(), "path": path,
                    "target": dest, "entries_restored": n})
    else:
        print(f"restored {n} entries of {args.name!r} (root {ref.hex()[:16]}) to {dest}")
    return 0


def _restore_in_place(args) -> int:
    from fogsync.cli.history import refuse_unknown_features
    from fogsync.config.shares import open_share, open_state
    from fogsync.daemon.control import report_fields
    from fogsync.engine.sync import restore_in_place

    if not args.root and not args.at:
        raise UsageError("restore --in-place needs --root ID or --at DATETIME")
    cfg = config(args)
    state = open_state(cfg)
    share = open_share(cfg, args.name, state)
    at = parse_when(args.at) if args.at else None
    try:
        refuse_unknown_features(share.repo)
        with showing(args, args.name, json_status=True) as share.progress:
            report = restore_in_place(share, root_prefix(args), at)
    finally:
        share.repo.close()
        state.close()
    if args.json:
        print_json({"message_type": "summary", **report_fields(report)})
    else:
        print(report.summary())
    return 0
