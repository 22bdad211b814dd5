"""Progress while a command works: a line redrawn on a terminal, ``status`` messages, one line on SIGUSR1.

restic's rule: on a terminal (standard error) a progress line is redrawn
a few times a second (``tqdm`` draws it: files and bytes done of total,
rate, ETA, the file in hand); on a pipe nothing is shown but the command's
final summary, so cron mails stay short; ``--quiet`` silences it. With
``--json``, ``sync`` and ``restore`` print ``status`` messages on standard
output instead (docs/json.md). ``SIGUSR1`` prints one status line on
standard error (a ``status`` message under ``--json``) even when quiet.
``FOGSYNC_PROGRESS_FPS`` sets how many times a second the line is redrawn
or a message sent (restic's ``RESTIC_PROGRESS_FPS``).

The engine counts (``engine.progress.Progress``); a thread here reads the
counts and draws them, so the engine's loops never wait for a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from fogsync.cli.render import print_json
from fogsync.engine.progress import Progress, Snapshot

FPS_ENV = "FOGSYNC_PROGRESS_FPS"
TERMINAL_FPS = 4.0  # redraws a second on a terminal
JSON_FPS = 1.0  # status messages a second under --json
STARTING = "starting"  # the phase shown before the engine names one
PATH_SHOWN = 48  # characters of the file in hand a line shows at most (its end)


def add_quiet(parser: argparse.ArgumentParser, per_command: bool = True) -> None:
    """``-q/--quiet``; on a command it only sets the flag when given, so a global one holds."""
    extra = {"default": argparse.SUPPRESS} if per_command else {}
    parser.add_argument("-q", "--quiet", action="store_true", help="show no progress (SIGUSR1 still prints a "
                        "status line)", **extra)


@contextmanager
def showing(args, share: str, json_status: bool = False) -> Iterator[Progress]:
    """A Progress for the work in the ``with`` block, shown as ``args`` ask, cleared before it ends."""
    progress = Progress()
    shown = _Shown(share, progress, _mode(args, json_status), _fps(args), bool(getattr(args, "json", False)))
    _Listener.install()
    _Listener.current = shown
    shown.start()
    try:
        yield progress
    finally:
        shown.stop()


def _mode(args, json_status: bool) -> str | None:
    """"json", "terminal" or None (only SIGUSR1 shows anything)."""
    if getattr(args, "quiet", False):
        return None
    if getattr(args, "json", False):
        return "json" if json_status else None
    return "terminal" if sys.stderr.isatty() else None


def _fps(args) -> float:
    text = os.environ.get(FPS_ENV)
    if text:
        try:
            fps = float(text)
        except ValueError:
            fps = 0.0
        if fps > 0:
            return fps
    return JSON_FPS if getattr(args, "json", False) else TERMINAL_FPS


class _Listener:
    """The SIGUSR1 handler: installed once, kept for the process's life, so a signal that
    arrives between two operations (or after the last) prints the last one's status."""

    current: "_Shown | None" = None
    installed = False

    @classmethod
    def install(cls) -> None:
        if cls.installed or threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGUSR1, cls._on_signal)
        cls.installed = True

    @classmethod
    def _on_signal(cls, signum, frame) -> None:
        if cls.current is not None:
            cls.current.ask()


class _Shown:
    """A thread that draws ``progress`` (``mode``) ``fps`` times a second, and prints a line when asked."""

    def __init__(self, share: str, progress: Progress, mode: str | None, fps: float, as_json: bool) -> None:
        self.share, self.progress, self.mode, self.interval = share, progress, mode, 1.0 / fps
        self.as_json = as_json  # the line SIGUSR1 asks for is a ``status`` message too
        self._wake = threading.Event()
        self._asked = self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fogsync-progress", daemon=True)
        self._bar: _Bar | None = None

    def start(self) -> None:
        if self.mode == "terminal":
            self._bar = _Bar(self.share)  # tqdm is imported before the work starts, not in its midst
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        if self._asked:  # asked for while the thread was leaving
            self._asked = False
            self._print_line()

    def ask(self) -> None:
        """From the signal handler: flags and wakes the thread, which writes; once the thread has
        ended, writes itself (with ``os.write``: the handler may have cut into a ``print``)."""
        self._asked = True
        if self._thread.is_alive():
            self._wake.set()
        else:  # the operation is over: the main thread, between bytecodes, may write
            self._asked = False
            self._print_line()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.interval if self.mode else None)
                self._wake.clear()
                if self._asked:
                    self._asked = False
                    self._print_line()
                if self._stopping:
                    return
                try:
                    self._show()
                except OSError:  # the reader went away (a closed pipe): the command finds out itself
                    self.mode, self._bar = None, None
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _show(self) -> None:
        snap = self.progress.snapshot()
        if snap.phase is None:
            return  # nothing begun yet
        if self._bar is not None:
            self._bar.show(snap)
        elif self.mode == "json":
            print_json(status_message(self.share, snap, time.monotonic()))

    def _print_line(self) -> None:
        snap = self.progress.snapshot()
        now = time.monotonic()
        if self.as_json:
            line = json.dumps(status_message(self.share, snap, now), ensure_ascii=False, separators=(",", ":"))
        else:
            line = f"fogsync: {status_line(self.share, snap, now)}"
        if self._bar is not None:
            self._bar.write(line)
        else:
            os.write(2, (line + "\n").encode("utf-8", "replace"))


# --- what is shown ------------------------------------------------------------------------


def seconds_remaining(snap: Snapshot, now: float) -> float | None:
    """An estimate from the phase's rate so far: bytes where it has bytes, else files."""
    elapsed = now - snap.phase_started
    for done, total in ((snap.bytes_done, snap.bytes_total), (snap.files_done, snap.files_total)):
        if total:
            if not done or elapsed <= 0:
                return None
            return max(0.0, (total - done) * elapsed / done)
    return None


def status_message(share: str, snap: Snapshot, now: float) -> dict:
    """A ``status`` message (docs/json.md)."""
    remaining = seconds_remaining(snap, now)
    return {
        "message_type": "status",
        "share": share,
        "phase": snap.phase or STARTING,
        "files_done": snap.files_done,
        "files_total": snap.files_total,
        "bytes_done": snap.bytes_done,
        "bytes_total": snap.bytes_total,
        "seconds_elapsed": round(now - snap.started, 3),
        "seconds_remaining": None if remaining is None else round(remaining, 3),
        "current_files": [snap.current] if snap.current else [],
    }


def status_line(share: str, snap: Snapshot, now: float) -> str:
    """``docs: pushing 120/2000 files, 1.2 MiB/40.0 MiB, 3.1 MiB/s, ETA 0:12, dir/file.txt``."""
    # The pass's modules load only when a command needs them.
    from fogsync.engine.sync import human_size

    parts = [f"{share}: {snap.phase or STARTING}"]
    if snap.files_total is not None:
        parts.append(f" {snap.files_done}/{snap.files_total} files, "
                     f"{human_size(snap.bytes_done)}/{human_size(snap.bytes_total or 0)}")
        elapsed = now - snap.phase_started
        if elapsed > 0:
            parts.append(f", {human_size(snap.bytes_done / elapsed)}/s")
        remaining = seconds_remaining(snap, now)
        if remaining is not None:
            parts.append(f", ETA {_clock(remaining)}")
    if snap.note:
        parts.append(f", {snap.note}")
    if snap.current:
        parts.append(f", {_tail(snap.current)}")
    return "".join(parts)


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _tail(path: str) -> str:
    return path if len(path) <= PATH_SHOWN else "…" + path[-(PATH_SHOWN - 1):]


class _Bar:
    """The terminal line: a tqdm bar over the phase's bytes, the files and the file in hand after it."""

    KNOWN = "{desc} {percentage:3.0f}%|{bar:10}| {n_fmt}B/{total_fmt}B {rate_fmt} ETA {remaining}{postfix}"
    UNKNOWN = "{desc}{postfix}"

    def __init__(self, share: str) -> None:
        from tqdm import tqdm

        self.share = share
        self.phase: str | None = None
        self.total: int | None = None
        self.done = 0
        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            width = 0
        # A terminal that does not say its size (0 x 0) gets 80 x 24: tqdm would draw nothing.
        size = {"dynamic_ncols": True} if width else {"ncols": 80, "nrows": 24}
        # Decimal units, which tqdm labels right (kB, MB); the rate is the phase's average, which the
        # first redraws of a phase, a few files apart, would otherwise swing wildly.
        self.tqdm = tqdm(total=None, file=sys.stderr, unit="B", unit_scale=True, unit_divisor=1000, leave=False,
                         mininterval=0, miniters=1, smoothing=0, bar_format=self.UNKNOWN, desc=share, **size)

    def show(self, snap: Snapshot) -> None:
        bar = self.tqdm
        bar.set_description_str(self._description(snap), refresh=False)
        bar.set_postfix_str(self._postfix(snap), refresh=False)
        bar.bar_format = self.KNOWN if snap.bytes_total else self.UNKNOWN
        if snap.phase != self.phase:
            self.phase, self.done = snap.phase, 0
            bar.reset(total=snap.bytes_total or None)  # the rate and ETA start again
        elif (snap.bytes_total or None) != bar.total:
            bar.total = snap.bytes_total or None
        if snap.bytes_done > self.done:
            bar.update(snap.bytes_done - self.done)
            self.done = snap.bytes_done
        else:
            bar.refresh()

    def _description(self, snap: Snapshot) -> str:
        files = f" {snap.files_done}/{snap.files_total} files" if snap.files_total is not None else ""
        return f"{self.share} {snap.phase or STARTING}{files}"

    @staticmethod
    def _postfix(snap: Snapshot) -> str:
        parts = []
        if snap.note:
            parts.append(snap.note)
        if snap.current:
            parts.append(_tail(snap.current))
        return ", ".join(parts)

    def write(self, line: str) -> None:
        self.tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.tqdm.close()
