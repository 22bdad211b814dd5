"""Watch: file system events turned into "this share changed" hints.

Events are hints, never truth: this layer decides *when* a pass should
start, and says *where* the folder may have changed (``take_hints``), so that
a pass can list just those directories (``vouch.Scope``). A full scan (at
start, hourly, after an overflow or a watcher restart) catches whatever a
watcher missed.

- ``Debouncer``: a pass starts once the share has been quiet for ``quiet``
  seconds, yet at least every ``max_delay`` seconds while events keep
  coming, and at any moment asked for explicitly (start, retries, files
  still being written). Time is injected, for tests.
- ``ShareWatcher``: one watchdog observer per share folder (recursive; inotify
  on Linux, FSEvents / ReadDirectoryChangesW elsewhere). Events on paths the
  share's ignore rules leave out (our own ``.fogsync-*`` temp files, editors'
  scratch files, ``.fogsyncignore`` and ``exclude`` patterns) are dropped; a
  change to ``.fogsyncignore`` reloads the rules. ``take_hints`` gives the
  directories events named since it was last called (a file's directory; a
  directory's parent, and the directory as a whole tree), or None when only
  a full scan can tell (the watch just started, events were lost, the
  ignore rules or the folder itself changed).
- Watch trouble: an inotify queue overflow (watchdog only logs it, so a log
  handler relays it) asks every watcher for an immediate pass; a folder that
  cannot be watched completely (the inotify watch limit) is reported through
  ``ShareWatcher.complete`` so the daemon can fall back to periodic rescans.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import time
from typing import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from fogsync.engine.vouch import DirHints
from fogsync.folder.ignore import IGNORE_FILE, Ignore
from fogsync.format.tree import parent_of

log = logging.getLogger(__name__)

# Opens, reads and directory mtime changes say nothing a pass needs (and our
# own reads would otherwise wake us up): they are not even subscribed.
EVENTS = [
    FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent, FileAttribEvent,
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]


class Debouncer:
    """When the next pass is due. Not thread-safe: the caller holds a lock."""

    def __init__(self, quiet: float, max_delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self.max_delay = max(max_delay, quiet)
        self.clock = clock
        self._first: float | None = None  # first event since the last pass started
        self._last: float | None = None  # newest event
        self._at: float | None = None  # an explicitly asked-for moment

    @property
    def pending(self) -> bool:
        return self._first is not None or self._at is not None

    def hint(self) -> None:
        """Something changed now."""
        now = self.clock()
        if self._first is None:
            self._first = now
        self._last = now

    def schedule(self, delay: float = 0.0) -> None:
        """Ask for a pass ``delay`` seconds from now (or sooner, if already due sooner)."""
        when = self.clock() + delay
        self._at = when if self._at is None else min(self._at, when)

    def due(self) -> float | None:
        """The clock time at which a pass should start; None when nothing is pending."""
        times = []
        if self._first is not None and self._last is not None:
            times.append(min(self._last + self.quiet, self._first + self.max_delay))
        if self._at is not None:
            times.append(self._at)
        return min(times) if times else None

    def ready(self) -> bool:
        due = self.due()
        return due is not None and due <= self.clock()

    def take(self) -> None:
        """A pass starts now: what was pending is in it; later events make the next one."""
        self._first = self._last = self._at = None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "ShareWatcher") -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher.event(event)


class ShareWatcher:
    """Watches one share folder and calls ``on_hint`` for every relevant change."""

    def __init__(
        self, folder: str, exclude: tuple[str, ...], on_hint: Callable[[], None],
        observer_factory: Callable[[], object] | None = None,
    ) -> None:
        self.folder = os.path.abspath(folder)
        self.exclude = exclude
        self.on_hint = on_hint
        self._observer_factory = observer_factory
        self._observer = None
        self._identity: tuple[int, int] | None = None
        self._ignore = Ignore.for_folder(self.folder, exclude)
        self.complete = True  # False: some directories could not be watched
        self.trouble: str | None = None  # why not, for logs and status
        self._hints_lock = threading.Lock()
        self._dirs: set[str] = set()
        self._trees: set[str] = set()
        self._whole = True  # events say nothing of what happened before the watch started

    def start(self) -> None:
        """Start watching; never raises: trouble shows in ``complete`` and ``trouble``."""
        self.stop()
        self.complete, self.trouble = True, None
        self._lost()
        self._ignore = Ignore.for_folder(self.folder, self.exclude)
        try:
            self._identity = _identity(self.folder)
            before = inotify_watch_count()
            observer = self._new_observer()
            observer.schedule(_Handler(self), self.folder, recursive=True, event_filter=EVENTS)
            observer.start()
        except OSError as e:
            self.complete = False
            self.trouble = _watch_trouble(e)
            return
        self._observer = observer
        _relay.add(self)
        after = inotify_watch_count()
        if before is not None and after is not None:
            wanted = count_dirs(self.folder)
            if after - before < wanted:
                self.complete = False
                self.trouble = (f"only {after - before} of {wanted} directories are watched "
                                f"({_limit_text()})")

    def stop(self) -> None:
        _relay.discard(self)
        observer, self._observer = self._observer, None
        if observer is not None:  # its threads end by themselves within a second: no join
            try:
                observer.stop()
            except (OSError, RuntimeError) as e:
                log.debug("stopping the watcher of %s: %s", self.folder, e)

    def healthy(self) -> bool:
        """Still watching the same folder, with every observer thread alive."""
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        if not all(e.is_alive() for e in getattr(observer, "emitters", ())):
            return False
        try:
            return _identity(self.folder) == self._identity
        except OSError:
            return False

    def event(self, event: FileSystemEvent) -> None:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        rels = [r for r in (self._relative(p) for p in paths if p) if r is not None]
        if IGNORE_FILE in rels:
            self._ignore = Ignore.for_folder(self.folder, self.exclude)
            self._lost()
        named = [r for r in rels if r == "" or not self._ignore.ignored(r, event.is_directory)]
        if named:
            self._note(named, event.is_directory)
            self.on_hint()

    def overflowed(self) -> None:
        """Events were lost: only a full pass can tell what changed."""
        log.warning("events for %s were lost (watch queue overflow): rescanning", self.folder)
        self._lost()
        self.on_hint()

    def take_hints(self) -> DirHints | None:
        """Where events said the folder changed since the last call; None when only a full scan can tell."""
        with self._hints_lock:
            whole, dirs, trees = self._whole, self._dirs, self._trees
            self._whole, self._dirs, self._trees = False, set(), set()
        return None if whole else DirHints(frozenset(dirs), frozenset(trees))

    def peek_hints(self) -> DirHints | None:
        """What ``take_hints`` would give now, left for it (what ``status`` counts as waiting)."""
        with self._hints_lock:
            return None if self._whole else DirHints(frozenset(self._dirs), frozenset(self._trees))

    def _note(self, rels: list[str], is_directory: bool) -> None:
        with self._hints_lock:
            for rel in rels:
                if rel == "":
                    self._whole = True
                    continue
                self._dirs.add(parent_of(rel))
                if is_directory:  # made, moved or gone as a whole: nothing below it is as it was
                    self._trees.add(rel)

    def _lost(self) -> None:
        with self._hints_lock:
            self._whole = True

    def _relative(self, path: str | bytes) -> str | None:
        path = os.fsdecode(path)
        rel = os.path.relpath(path, self.folder)
        if rel == os.curdir:
            return ""
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            return None
        return rel.replace(os.sep, "/")

    def _new_observer(self):
        if self._observer_factory is not None:
            return self._observer_factory()
        from watchdog.observers import Observer

        return Observer()


def _identity(folder: str) -> tuple[int, int]:
    s = os.stat(folder)
    return s.st_dev, s.st_ino


def _watch_trouble(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"the inotify watch limit is reached ({_limit_text()})"
    if e.errno == errno.EMFILE:
        return "the inotify instance limit is reached (raise fs.inotify.max_user_instances)"
    return f"cannot watch: {e.strerror or e}"


def _limit_text() -> str:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches", encoding="ascii") as f:
            limit = f.read().strip()
    except OSError:
        return "raise the platform's file watch limit"
    return f"fs.inotify.max_user_watches is {limit}; raise it with sysctl"


def inotify_watch_count() -> int | None:
    """How many inotify watches this process holds (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    total = 0
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
                total += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def count_dirs(folder: str) -> int:
    """The folder and every directory below it, not following symlinks (what a recursive watch needs)."""
    total, stack = 0, [folder]
    while stack:
        path = stack.pop()
        total += 1
        try:
            with os.scandir(path) as it:
                stack.extend(de.path for de in it if de.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return total


class _OverflowRelay(logging.Handler):
    """watchdog reports a lost-events overflow only in its log: pass it on to every watcher."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._watchers: set[ShareWatcher] = set()
        self._lock = threading.Lock()
        self._installed = False

    def add(self, watcher: ShareWatcher) -> None:
        with self._lock:
            self._watchers.add(watcher)
            if not self._installed:
                logger = logging.getLogger("watchdog.observers.inotify_c")
                logger.addHandler(self)
                if logger.getEffectiveLevel() > logging.WARNING:
                    logger.setLevel(logging.WARNING)
                self._installed = True

    def discard(self, watcher: ShareWatcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" not in record.getMessage().lower():
            return
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.overflowed()


_relay = _OverflowRelay()
