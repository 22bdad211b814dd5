"""Unit tests of the watch layer: the debounce rules (with an injected clock),
which events count as hints, and how watch trouble is reported."""

from __future__ import annotations

import errno
import logging
import threading

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
)

from fogsync.config.file import Config
from fogsync.daemon import watch
from fogsync.daemon.service import BACKOFF_MAX, ShareWorker
from fogsync.daemon.watch import Debouncer, ShareWatcher
from fogsync.errors import StoreError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_nothing_pending_means_no_pass(clock):
    d = Debouncer(0.5, 5.0, clock)
    assert d.due() is None and not d.ready() and not d.pending


def test_a_pass_starts_once_quiet(clock):
    d = Debouncer(0.5, 5.0, clock)
    d.hint()
    clock.advance(0.3)
    d.hint()  # the burst goes on: the quiet period starts again
    assert d.due() == pytest.approx(clock.now + 0.5)
    clock.advance(0.49)
    assert not d.ready()
    clock.advance(0.02)
    assert d.ready()
    d.take()
    assert not d.pending and d.due() is None


def test_a_long_burst_still_passes_every_max_delay(clock):
    d = Debouncer(0.5, 2.0, clock)
    passes = []
    for _ in range(100):  # an event every 0.1 s for 10 s: never quiet
        d.hint()
        clock.advance(0.1)
        if d.ready():
            passes.append(clock.now)
            d.take()
    gaps = [b - a for a, b in zip(passes, passes[1:])]
    assert len(passes) >= 4 and all(g <= 2.0 + 0.1 + 1e-9 for g in gaps)
    d.hint()  # the last event of the burst
    clock.advance(0.49)
    assert not d.ready()
    clock.advance(0.01)  # quiet at last
    assert d.ready()


def test_events_during_a_pass_make_the_next_one(clock):
    d = Debouncer(0.5, 5.0, clock)
    d.hint()
    clock.advance(0.5)
    d.take()  # a pass starts
    clock.advance(0.2)
    d.hint()  # a change while it runs
    assert d.due() == pytest.approx(clock.now + 0.5)


def test_scheduled_passes_take_the_earliest_moment(clock):
    d = Debouncer(0.5, 5.0, clock)
    d.schedule(3.0)
    d.schedule(1.0)
    assert d.due() == pytest.approx(clock.now + 1.0)
    d.hint()
    assert d.due() == pytest.approx(clock.now + 0.5)
    clock.advance(0.5)
    assert d.ready()


def test_max_delay_is_never_shorter_than_quiet(clock):
    d = Debouncer(2.0, 1.0, clock)
    d.hint()
    assert d.due() == pytest.approx(clock.now + 2.0)


# --- which events are hints ---------------------------------------------------------


def _watcher(tmp_path, exclude=()):
    hints = []
    w = ShareWatcher(str(tmp_path), tuple(exclude), lambda: hints.append(1))
    return w, hints


def test_ignored_paths_are_not_hints(tmp_path):
    (tmp_path / ".fogsyncignore").write_text("build/\n")
    w, hints = _watcher(tmp_path, exclude=["*.tmp"])
    for name in (".fogsync-1234", "notes.txt.swp", "notes.txt~", ".#notes.txt", "a.tmp", "build/out.o",
                 "sub/.fogsync-x"):
        w.event(FileCreatedEvent(str(tmp_path / name)))
    w.event(FileCreatedEvent(str(tmp_path.parent / "elsewhere.txt")))
    assert hints == []
    w.event(FileModifiedEvent(str(tmp_path / "sub" / "notes.txt")))
    assert len(hints) == 1


def test_a_rename_from_a_temp_file_is_a_hint(tmp_path):
    w, hints = _watcher(tmp_path)
    w.event(FileMovedEvent(str(tmp_path / ".fogsync-tmp"), str(tmp_path / "doc.txt")))
    assert len(hints) == 1


def test_a_new_ignore_file_applies_at_once(tmp_path):
    w, hints = _watcher(tmp_path)
    (tmp_path / ".fogsyncignore").write_text("*.dat\n")
    w.event(FileModifiedEvent(str(tmp_path / ".fogsyncignore")))
    assert len(hints) == 1  # the ignore file itself is synced
    w.event(FileCreatedEvent(str(tmp_path / "x.dat")))
    assert len(hints) == 1


def test_hints_name_the_directories_events_touched(tmp_path):
    w, _ = _watcher(tmp_path)
    assert w.take_hints() is None  # nothing is known of what happened before the watch
    w.event(FileModifiedEvent(str(tmp_path / "a" / "b" / "notes.txt")))
    w.event(FileMovedEvent(str(tmp_path / "x" / "old.txt"), str(tmp_path / "new.txt")))
    w.event(DirCreatedEvent(str(tmp_path / "a" / "made")))
    w.event(DirMovedEvent(str(tmp_path / "p" / "from"), str(tmp_path / "q" / "to")))
    w.event(FileCreatedEvent(str(tmp_path / "a" / "scratch.swp")))  # ignored: names nothing
    hints = w.take_hints()
    assert set(hints.dirs) == {"a/b", "x", "", "a", "p", "q"}
    assert set(hints.trees) == {"a/made", "p/from", "q/to"}
    assert w.take_hints() is not None and not w.take_hints().dirs  # taken: the next pass starts afresh


@pytest.mark.parametrize("lose", ["overflow", "ignore file", "the folder itself"])
def test_hints_say_a_full_scan_is_needed_when_events_cannot_tell(tmp_path, lose):
    w, _ = _watcher(tmp_path)
    w.take_hints()
    w.event(FileModifiedEvent(str(tmp_path / "a" / "notes.txt")))
    if lose == "overflow":
        w.overflowed()
    elif lose == "ignore file":
        w.event(FileModifiedEvent(str(tmp_path / ".fogsyncignore")))
    else:
        w.event(DirMovedEvent(str(tmp_path), str(tmp_path.parent / "elsewhere")))
    assert w.take_hints() is None


# --- watching for real, and watch trouble --------------------------------------------------


def test_a_real_watcher_reports_a_write(tmp_path):
    seen = threading.Event()
    w = ShareWatcher(str(tmp_path), (), seen.set)
    w.start()
    try:
        assert w.complete and w.healthy()
        (tmp_path / "new.txt").write_text("hello")
        assert seen.wait(10)
    finally:
        w.stop()
    assert not w.healthy()


def test_an_overflow_asks_for_a_pass(tmp_path):
    seen = threading.Event()
    w = ShareWatcher(str(tmp_path), (), seen.set)
    w.start()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
        assert seen.is_set()
    finally:
        w.stop()


class _FailingObserver:
    def schedule(self, *args, **kwargs):
        pass

    def start(self):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


class _IdleObserver:
    emitters = ()

    def schedule(self, *args, **kwargs):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def is_alive(self):
        return True


def test_the_watch_limit_is_reported_not_raised(tmp_path):
    w = ShareWatcher(str(tmp_path), (), lambda: None, observer_factory=_FailingObserver)
    w.start()
    assert not w.complete and "watch limit" in w.trouble
    assert not w.healthy()


def test_directories_left_unwatched_are_noticed(tmp_path, monkeypatch):
    for d in ("a", "a/b", "c"):
        (tmp_path / d).mkdir()
    counts = iter([10, 12])  # the watcher added 2 watches for 4 directories
    monkeypatch.setattr(watch, "inotify_watch_count", lambda: next(counts))
    w = ShareWatcher(str(tmp_path), (), lambda: None, observer_factory=_IdleObserver)
    w.start()
    assert not w.complete and "only 2 of 4 directories" in w.trouble


# --- the worker's timing, with the same injected clock ---------------------------------


def test_failures_back_off_exponentially_up_to_a_cap(tmp_path, clock):
    cfg = Config(path=str(tmp_path / "c.toml"), host="h", state_dir=str(tmp_path), poll=10.0)
    worker = ShareWorker(cfg, "docs", clock)
    assert worker._due(clock.now)[0] == "pass"  # the start pass
    delays = []
    for _ in range(9):
        worker._failed(StoreError("store unreachable"))
        action, wake = worker._due(clock.now)
        assert action is None
        delays.append(wake - clock.now)
        clock.advance(wake - clock.now)
        assert worker._due(clock.now)[0] == "pass"
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == BACKOFF_MAX
    worker.hint()  # in trouble, events wait for the retry
    assert worker._due(clock.now)[0] == "pass"
    assert worker.status()["state"] == "error" and worker.status()["reason"] == "store unreachable"


def test_a_pass_ends_by_giving_the_heap_back(tmp_path, clock, monkeypatch):
    from fogsync.daemon import service as daemon

    given_back = []
    monkeypatch.setattr(daemon.malloc, "give_back", lambda: given_back.append(clock.now))
    cfg = Config(path=str(tmp_path / "c.toml"), host="h", state_dir=str(tmp_path), poll=10.0)
    worker = ShareWorker(cfg, "docs", clock)  # no such share: the pass fails, and still ends so
    worker._pass()
    assert worker.status()["state"] == "error" and given_back == [clock.now]
