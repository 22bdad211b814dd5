"""Progress: what a long operation has done so far, for a renderer in another thread to read.

The engine's loops (sealing, writing, restoring, checking, pruning) tell a
``Progress`` which phase they are in, with the files and bytes it will
handle when known, then add what they finish. Whoever shows it (the CLI's
progress line, ``--json`` status messages, the daemon's status reply) takes
a ``Snapshot`` when it likes: the counters are behind one lock that only
``add``, ``phase`` and ``snapshot`` take, once per file or per batch, never
per block. ``NO_PROGRESS`` does nothing: the default everywhere.

A ``Progress`` is also callable with a line of text (``note``), so the
older ``progress=`` callbacks of ``check_share`` and ``prune_share`` still
take a plain function (``as_progress``).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, NamedTuple

SCANNING, PUSHING, UPLOADING, PULLING, RESTORING, CHECKING, PRUNING = (
    "scanning", "pushing", "uploading", "pulling", "restoring", "checking", "pruning")


class Snapshot(NamedTuple):
    """The counters at one moment; a total is None while unknown."""

    phase: str | None
    files_done: int
    files_total: int | None
    bytes_done: int
    bytes_total: int | None
    current: str | None  # the file (or thing) being worked on now
    note: str | None  # a line of text about the phase, e.g. "listing the store"
    phase_started: float  # ``clock()`` when the phase began
    started: float  # ``clock()`` when the Progress was made


class Progress:
    """Thread-safe counters of files and bytes in the current phase."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self._phase: str | None = None
        self._phase_started = self.started
        self._files = self._bytes = 0
        self._files_total: int | None = None
        self._bytes_total: int | None = None
        self._note: str | None = None
        # Written without the lock by whichever thread works on a file: a reader sees one of them.
        self.current: str | None = None

    def phase(self, name: str, files_total: int | None = None, bytes_total: int | None = None) -> None:
        """A new phase begins: its counters start at zero."""
        with self._lock:
            self._phase, self._phase_started = name, self._clock()
            self._files = self._bytes = 0
            self._files_total, self._bytes_total = files_total, bytes_total
            self._note = None
        self.current = None

    def add(self, files: int = 0, nbytes: int = 0) -> None:
        """Files (and their bytes) finished in this phase."""
        with self._lock:
            self._files += files
            self._bytes += nbytes

    def grow(self, files: int = 0, nbytes: int = 0) -> None:
        """More to do than the phase's totals said (a walk that finds its work as it goes)."""
        with self._lock:
            self._files_total = (self._files_total or 0) + files
            self._bytes_total = (self._bytes_total or 0) + nbytes

    def note(self, text: str) -> None:
        self._note = text

    def __call__(self, text: str) -> None:
        self.note(text)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._phase, self._files, self._files_total, self._bytes, self._bytes_total,
                            self.current, self._note, self._phase_started, self.started)


class _NoProgress(Progress):
    """Counts nothing: what the engine is given when nobody watches."""

    def phase(self, name: str, files_total: int | None = None, bytes_total: int | None = None) -> None:
        pass

    def add(self, files: int = 0, nbytes: int = 0) -> None:
        pass

    def grow(self, files: int = 0, nbytes: int = 0) -> None:
        pass

    def note(self, text: str) -> None:
        pass


NO_PROGRESS: Progress = _NoProgress()


class _Notes(_NoProgress):
    """A plain ``(text) -> None`` callback as a Progress: only the notes reach it."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        super().__init__()
        self._callback = callback

    def note(self, text: str) -> None:
        self._callback(text)


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    """A Progress for ``progress``: itself, a plain text callback wrapped, or ``NO_PROGRESS``."""
    if progress is None:
        return NO_PROGRESS
    if isinstance(progress, Progress):
        return progress
    return _Notes(progress)
