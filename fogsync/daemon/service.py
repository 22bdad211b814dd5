"""The daemon: every share synced continuously, in the foreground.

Adds, over one-shot ``sync_share`` passes, one worker thread per share (a
share's trouble never stalls another) that runs a pass:

- when its watcher says the folder changed (``watch.Debouncer``: quiet for
  ``debounce`` seconds, at least every ``max_delay`` during a long burst);
- when the store's head moved (a conditional read every ``poll`` seconds);
- at start, and every ``rescan`` seconds (every 30 s when the folder cannot
  be watched completely);
- for files still being written: a pass leaves files modified within the
  last ``debounce`` seconds (``Share.settle_ns``) for a pass shortly after.

After a pass, a share with a retention policy is forgotten and pruned once
a day (``upkeep``).

A pass the watcher started is partial: it lists only the directories the
events named (``ShareWatcher.take_hints``) and trusts the rest to the
state. The start pass, the periodic rescan, a pass asked for over the
socket, the first after a failure or a watcher restart or lost events, and
any pass the engine finds it cannot vouch for (the head moved, the state
vouches for no scan) scan the whole folder. The worker keeps the state's
vouched digests between passes (``vouch.VouchMemo``), so a partial pass
costs the directories it names; and ``status`` counts the files waiting
only where the watcher saw changes not yet synced (``_unsynced``), unless
only a scan of the whole folder can tell.

A failed pass is logged once per change of error, shown in status and
retried with exponential backoff (1 s doubling to 60 s). A pass that
refuses (``Refusal``: a store rolled back, a mass deletion) holds its share
until ``sync NAME`` asks for a pass through the socket (with the flag the
refusal names, to go on) or the daemon restarts; a folder without its
marker (``retries_alone``) is tried again with the backoff, so a disk
mounted again is picked up on its own. Around the
workers: an flock on ``<state_dir>/daemon.lock`` (one daemon per state
dir), the control socket (``control``), SIGINT/SIGTERM (finish the pass in
hand, exit 0), and logs to stderr and ``<state_dir>/fogsync.log`` (``process``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable

from fogsync.config.file import Config
from fogsync.config.retention import policy_for
from fogsync.daemon import control
from fogsync.daemon.process import lock_state_dir, setup_logging
from fogsync.daemon.upkeep import Upkeep, upkeep_doc
from fogsync.daemon.watch import Debouncer, ShareWatcher
from fogsync.engine.progress import SCANNING, Progress
from fogsync.engine.share import Share
from fogsync.engine.sync import Report, sync_share
from fogsync.engine.vouch import DirHints, VouchMemo
from fogsync.errors import ConfigError, FogsyncError, Refusal
from fogsync.folder.state import Upkept
from fogsync.format.roots import Root
from fogsync.platform import malloc

log = logging.getLogger(__name__)

BACKOFF_MIN, BACKOFF_MAX = 1.0, 60.0
FALLBACK_RESCAN = 30.0  # seconds between rescans of a folder that cannot be watched completely
MIN_POLL = 0.2
HELD_WAKE = 3600.0  # seconds a share held until asked sleeps between looks (a request wakes it at once)
CONSENTS = ("accept_rollback", "allow_mass_delete")  # what ``sync`` may consent to (``engine.refusals``)
STOP_GRACE = 60.0  # seconds a stop waits for the passes in hand (a hung store must not hold it forever)


class Held(FogsyncError):
    """A share the daemon does not sync until something outside it changes (status state ``held``)."""


@dataclass
class _Request:
    """A ``sync`` asked over the socket: answered after a pass that started after it."""

    done: threading.Event = field(default_factory=threading.Event)
    result: dict = field(default_factory=dict)
    consent: dict = field(default_factory=dict)  # ``sync``'s --accept-rollback / --allow-mass-delete

    def answer(self, result: dict) -> None:
        self.result = result
        self.done.set()


class ShareWorker(threading.Thread):
    """Runs the passes of one share and knows what to say about it."""

    def __init__(self, cfg: Config, name: str, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        super().__init__(name=f"fogsync-{name}", daemon=True)
        self.cfg, self.share_name, self.clock = cfg, name, clock
        self.poll = max(cfg.poll, MIN_POLL)
        self.settle = cfg.debounce
        self._cond = threading.Condition()
        self._debounce = Debouncer(cfg.debounce, cfg.max_delay, clock)
        self._debounce.schedule(0)  # the start pass
        self._requests: list[_Request] = []
        self._stopping = self._syncing = False
        self._share: Share | None = None
        self._watcher: ShareWatcher | None = None
        self._watch_trouble: str | None = None
        self._error: str | None = None
        self._last_error: tuple[str, float] | None = None
        self._backoff, self._retry_at = 0.0, None
        self._deferred: list[str] = []
        self._problems: set[str] = set()
        self._root: bytes | None = None
        self._root_info: Root | None = None
        self._last_pass: float | None = None
        self._last_poll: float | None = None  # wall time the store's head was last read (a poll or a pass)
        self._remote_newer = False  # the last poll saw a head this host has not pulled yet
        self._trouble: str | None = None  # "error" or "held" while a pass keeps failing
        self._until_asked = False  # held by a refusal: only a request (or a restart) runs a pass
        self._next_poll = self._next_rescan = clock() + self.poll
        self._upkeep = Upkeep(policy_for(cfg, name), now)
        self._progress: Progress | None = None  # the pass in hand's, while one runs
        self._full = True  # the next pass scans the whole folder, whatever the watcher saw
        self._pass_hints: DirHints | None = None  # where the pass in hand looks (None: everywhere)

    # --- called from other threads ------------------------------------------

    def hint(self) -> None:
        """The watcher saw a change."""
        with self._cond:
            before = self._debounce.due()
            self._debounce.hint()
            if before is None or self._debounce.due() < before:
                self._cond.notify()

    def request_pass(self, consent: dict | None = None) -> _Request:
        req = _Request(consent={k: bool(v) for k, v in (consent or {}).items() if k in CONSENTS})
        with self._cond:
            if self._stopping:
                req.answer({"name": self.share_name, "error": "the daemon is stopping"})
            else:
                self._requests.append(req)
                self._cond.notify()
        return req

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def status(self) -> dict:
        """What ``status --json`` shows of this share (docs/json.md); ``in_step`` is what ``wait`` waits for."""
        with self._cond:
            now = self.clock()
            pending = self._debounce.pending or bool(self._deferred) or self._last_pass is None
            state = "syncing" if self._syncing else self._trouble or "idle"
            snap = self._progress.snapshot() if self._syncing and self._progress is not None else None
            if snap is not None and snap.phase == SCANNING:
                state = "scanning"
            out = {
                "name": self.share_name,
                "state": state,
                "reason": self._error if state in ("error", "held") else None,
                "waiting_files": None,
                "waiting_bytes": None,
                "deferred": list(self._deferred),
                "last_commit": control.root_doc(self._root, self._root_info),
                "last_error": self._last_error[0] if self._last_error else None,
                "last_error_at": control.rfc3339(self._last_error[1]) if self._last_error else None,
                "last_poll": control.rfc3339(self._last_poll),
                "last_pass": control.rfc3339(self._last_pass),
                "retry_in": None if self._retry_at is None else max(0.0, self._retry_at - now),
                "watch": self._watch_trouble and f"{self._watch_trouble}; rescanning every {self._rescan_every():.0f} s",
                "remote": "the store has a newer root to pull" if self._remote_newer else None,
                "progress": control.progress_doc(snap),
            }
            share, hints = self._share, self._unsynced()
        out.update(upkeep_doc(share.state.upkeep(self.share_name) if share is not None else Upkept()))
        if share is not None and (hints is not None or not self._syncing):
            try:
                files, size = control.waiting(share.folder, share.exclude, share.state, share.name, hints, share.memo)
            except FogsyncError:
                files = size = None
            out["waiting_files"], out["waiting_bytes"] = files, size
        out["in_step"] = state == "idle" and not pending and out["remote"] is None and out["waiting_files"] == 0
        return out

    def _unsynced(self) -> DirHints | None:
        """Where the folder may differ from the state, as far as the watcher can tell (the caller holds
        ``_cond``): what it saw since the pass in hand began, and where that pass looks; None when only a
        scan of the whole folder can tell (the watcher is in trouble or lost events, a full pass is due,
        or runs). ``status`` counts the files waiting only there, or (None, while no pass runs) everywhere.
        """
        watcher = self._watcher
        if watcher is None or self._watch_trouble or self._full or not watcher.healthy():
            return None
        hints, running = watcher.peek_hints(), self._pass_hints
        if hints is None or (self._syncing and running is None):
            return None
        if not self._syncing:
            return hints
        return DirHints(hints.dirs | running.dirs, hints.trees | running.trees)

    # --- the worker thread ------------------------------------------------------

    def run(self) -> None:
        try:
            while self._step():
                pass
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            if self._share is not None:
                self._share.repo.close()
                self._share.state.close()
            with self._cond:
                requests, self._requests = self._requests, []
            for req in requests:
                req.answer({"name": self.share_name, "error": "the daemon is stopping"})

    def _step(self) -> bool:
        with self._cond:
            while True:
                if self._stopping:
                    return False
                action, wake = self._due(self.clock())
                if action:
                    break
                self._cond.wait(max(0.0, wake - self.clock()))
        if action == "poll":
            self._poll()
        else:
            self._pass()
        return True

    def _due(self, now: float) -> tuple[str | None, float]:
        if self._requests:
            return "pass", now
        if self._until_asked:
            return None, now + HELD_WAKE
        if self._retry_at is not None:  # in trouble: only the retry (or a request) runs a pass
            return ("pass", now) if now >= self._retry_at else (None, self._retry_at)
        due = self._debounce.due()
        if (due is not None and due <= now) or now >= self._next_rescan:
            return "pass", now
        if now >= self._next_poll:
            return "poll", now
        return None, min(t for t in (due, self._next_rescan, self._next_poll) if t is not None)

    def _pass(self) -> None:
        with self._cond:
            self._debounce.take()
            requests, self._requests = self._requests, []
            self._syncing, self._pass_hints = True, None
            full = self._full or bool(requests) or self.clock() >= self._next_rescan
            self._full = False
        start = self.clock()
        consent = {k: any(r.consent.get(k) for r in requests) for k in CONSENTS}
        try:
            share = replace(self._open_present(), **consent)
            share.progress = self._progress = Progress()
            hints = self._hints(full)
            with self._cond:
                self._pass_hints = hints
            report = sync_share(share, hints)
        except Exception as e:  # whatever it is, the daemon carries on and retries
            with self._cond:
                self._full = True  # the events it took are not in the state: look everywhere
            self._failed(e)
            result = {"name": self.share_name, "error": self._error}
        else:
            self._succeeded(report, self.clock() - start)
            self._keep_up()
            result = {"name": self.share_name, "summary": report.summary(), "problems": report.problems,
                      "report": control.report_fields(report)}
        finally:
            with self._cond:
                self._syncing, self._progress = False, None
            self._next_rescan = start + self._rescan_every()
        for req in requests:
            req.answer(result)
        malloc.give_back()  # what the pass freed, back to the system while this share idles

    def _keep_up(self) -> None:
        """The daily forget and prune of a share with a retention policy (``upkeep``)."""
        try:
            self._upkeep.run(self._share)
        except FogsyncError as e:  # the share is synced: the next pass tries again
            log.warning("%s: forget and prune not done: %s", self.share_name, " ".join(str(e).split()))

    def _hints(self, full: bool) -> DirHints | None:
        """Where the watcher saw changes since the last pass; None for a full scan."""
        hints = self._watcher.take_hints() if self._watcher is not None else None
        return None if full or self._watch_trouble else hints

    def _poll(self) -> None:
        self._next_poll = self.clock() + self.poll
        try:
            share = self._open()
            info = share.state.share(self.share_name)
            head = share.repo.read_head(info.head_tag if info else None)
        except Exception as e:
            self._failed(e)
            return
        newer = head is not None and head.root != (info.base if info else None)
        with self._cond:
            self._last_poll, self._remote_newer = time.time(), newer
            if newer:
                self._debounce.schedule(0)
        if newer:
            log.info("%s: the store has a new root: pulling", self.share_name)

    def _open_present(self) -> Share:
        """The share, held (not synced) while its folder is not there: an unmounted disk must not look emptied."""
        folder = self.cfg.share(self.share_name).path
        if not os.path.isdir(folder):
            raise Held(f"its folder {folder} is not there (an unmounted disk?): mount or recreate it; "
                       f"the daemon retries on its own")
        return self._open()

    def _open(self) -> Share:
        """The share, opened once; and a watcher that is running (restarted if it died)."""
        if self._share is None:
            from fogsync.config.shares import open_share, open_state

            state = open_state(self.cfg)
            try:
                share = open_share(self.cfg, self.share_name, state)
            except BaseException:
                state.close()
                raise
            share.settle_ns = int(self.settle * 1e9)
            share.memo = VouchMemo()  # the vouched digests, kept from pass to pass
            self._share = share
        if self._watcher is None:
            self._watcher = ShareWatcher(self._share.folder, self._share.exclude, self.hint)
        elif self._watcher.healthy():
            return self._share
        elif self._watch_trouble is None:  # it died, or the folder was replaced: events may be lost
            log.warning("%s: the watcher of %s stopped: restarting it and rescanning", self.share_name,
                        self._share.folder)
            with self._cond:
                self._debounce.schedule(0)
        self._watcher.start()
        if self._watcher.trouble != self._watch_trouble:
            if self._watcher.trouble:
                log.warning("%s: cannot watch every folder under %s: %s; falling back to a rescan every %.0f s",
                            self.share_name, self._share.folder, self._watcher.trouble, FALLBACK_RESCAN)
            else:
                log.warning("%s: watching %s again", self.share_name, self._share.folder)
            self._watch_trouble = self._watcher.trouble
        return self._share

    def _rescan_every(self) -> float:
        return min(self.cfg.rescan, FALLBACK_RESCAN) if self._watch_trouble else self.cfg.rescan

    def _succeeded(self, report: Report, took: float) -> None:
        name = self.share_name
        if self._error is not None:
            log.warning("%s: working again (the last error was: %s)", name, self._error)
        for problem in sorted(set(report.problems) - self._problems):
            log.warning("%s: %s", name, problem)
        for c in report.conflicts:
            log.warning("%s: conflict (%s) on %s: the other version is kept as %s", name, c.kind, c.path, c.copy_path)
        partial = "" if report.listed_dirs is None else f"; partial, {report.listed_dirs} dir(s) listed"
        log.info("%s (%.2f s%s)", report.summary(), took, partial)
        if report.deferred:
            log.info("%s: %d file(s) still being written: taking them shortly", name, len(report.deferred))
        info = report.committed or (self._root_info if report.root == self._root else self._read_root(report.root))
        with self._cond:
            self._error, self._backoff, self._retry_at, self._until_asked = None, 0.0, None, False
            self._problems, self._deferred = set(report.problems), list(report.deferred)
            self._root, self._root_info, self._last_pass = report.root, info, time.time()
            self._last_poll, self._remote_newer, self._trouble = self._last_pass, False, None
            if report.deferred:
                self._debounce.schedule(self.settle + 0.1)
        self._next_poll = self.clock() + self.poll

    def _read_root(self, ref: bytes | None) -> Root | None:
        try:
            return self._share.repo.read_root(ref) if ref and self._share else None
        except FogsyncError:
            return None

    def _failed(self, e: Exception) -> None:
        known = isinstance(e, FogsyncError)
        msg = " ".join(str(e).split()) if known else f"internal error: {type(e).__name__}: {e}"
        until_asked = isinstance(e, Refusal) and not e.retries_alone
        with self._cond:
            self._backoff = min(BACKOFF_MAX, max(BACKOFF_MIN, self._backoff * 2))
            self._retry_at = None if until_asked else self.clock() + self._backoff
            changed, self._error = msg != self._error, msg
            self._trouble = "held" if isinstance(e, (Held, Refusal)) else "error"
            self._until_asked = until_asked
            self._last_error = (msg, time.time())
        if changed and until_asked:
            log.error("%s: held: %s (the daemon waits for that command, or a restart)", self.share_name, msg)
        elif changed:
            log.error("%s: %s (retrying, backing off up to %.0f s)", self.share_name, msg, BACKOFF_MAX,
                      exc_info=not known)


# --- the process --------------------------------------------------------------------


def run_daemon(cfg: Config, verbose: bool = False) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status."""
    if not cfg.shares:
        raise ConfigError(f"no shares in {cfg.path}: add one with 'fogsync add-share', then start the daemon")
    lock = lock_state_dir(cfg.state_dir)
    try:
        handler = setup_logging(cfg.state_dir, verbose)
        try:
            return _serve(cfg)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
    finally:
        os.close(lock)


def _serve(cfg: Config) -> int:
    workers = {name: ShareWorker(cfg, name) for name in cfg.shares}
    server = control.Server(control.socket_path(cfg.state_dir), lambda req: _handle(req, workers))
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame) -> None:
        if stop.is_set():
            log.warning("second %s: exiting without finishing the pass in hand", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: finishing the pass in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers.values():
            worker.start()
        log.info("daemon started (pid %d) for %s; polling every %g s", os.getpid(), ", ".join(workers),
                 max(cfg.poll, MIN_POLL))
        while not stop.wait(1.0):
            pass
    finally:
        for worker in workers.values():
            worker.stop()
        deadline = time.monotonic() + STOP_GRACE
        for worker in workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("%s: its pass is still running after %.0f s; exiting anyway (the next start "
                            "takes it up again: nothing is lost)", worker.share_name, STOP_GRACE)
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info("daemon stopped")
    return 0


def _handle(request: dict, workers: dict[str, ShareWorker]) -> dict:
    names = request.get("names") or list(workers)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return {"ok": False, "error": "names must be a list of share names"}
    unknown = {n: f"share {n!r} is not watched by this daemon (added after it started? restart it)"
               for n in names if n not in workers}
    if request.get("op") == "status":
        shares = [workers[n].status() if n in workers else {"name": n, "state": "error", "reason": unknown[n]}
                  for n in names]
        return {"ok": True, "pid": os.getpid(), "shares": shares}
    if request.get("op") == "sync":
        consent = {k: request.get(k) for k in CONSENTS}
        asked = [(n, workers[n].request_pass(consent) if n in workers else None) for n in names]
        results = []
        for n, req in asked:
            if req is None:
                results.append({"name": n, "error": unknown[n]})
            else:
                req.done.wait()
                results.append(req.result)
        return {"ok": True, "pid": os.getpid(), "results": results}
    return {"ok": False, "error": f"unknown request {request.get('op')!r}"}
