"""Writing a new file of 1 MiB or more around the page cache (``O_DIRECT``), where the filesystem allows it.

On a virtual machine whose free memory goes back to the host, every page
of a new file's page cache is a first touch: here, writing 2 GiB of new
file costs 5.7 s of system time, and the same 2 GiB written ``O_DIRECT``
from one reused buffer costs 0.24 s (1.25 s wall, the disk's time). On any
machine it also keeps a restore from evicting what the person is working
with.

``O_DIRECT`` wants aligned offsets, lengths and memory, so the data is
staged in page-aligned buffers and written a whole buffer at a time, by a
thread of the writer's own: a direct write waits for the disk, and the
caller meanwhile fills the other buffer (written inline, the 2 GiB restore
took 1.1 s longer). The buffers are kept for the next file (a few of
them), so their pages too are touched once, not once per file. The last,
unaligned part is written through the page cache, ``O_DIRECT`` cleared.
Where the flag is refused, or a direct write fails with EINVAL or writes
short (ENOSPC next), the rest goes through the page cache as usual, and so
does the rest of a file whose disk proves slower than the caller (a USB
disk, a NAS), where the page cache lets the caller run ahead; files too
small to judge one by one are judged together, per file system, and those
after a slow verdict go through the page cache from the start. The file's
bytes are the same either way.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import queue
import threading
import time
from typing import Callable

from fogsync.platform.fsync import write_all

STAGE = 1 << 20  # a multiple of every logical block size in use (512, 4096)
# Smaller files go through the page cache, where a thread per file costs about what it saves;
# from this size on, direct writes win clearly (docs/performance.md).
MIN_SIZE = 1 << 20
# A disk slower than decryption (a USB disk, a NAS: O_DIRECT over NFS is a round trip per write)
# would make the caller wait on every write; the page cache lets it run ahead. Judged once this
# much was handed over: waiting more than this share of the time sends the rest through the cache.
# Files smaller than that are judged together, per file system: once the files written direct to
# one have waited that long, the files after them go through the page cache.
JUDGE_AFTER = 64 << 20
BEHIND_SHARE = 0.5
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class DirectWriter:
    """``open(path, "wb")`` for one file of ``size`` bytes written once, front to back, by one thread."""

    def __init__(self, path: str, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._dev = os.fstat(self._fd).st_dev if size >= MIN_SIZE else None
        self._direct = self._dev is not None and not _disks.slow(self._dev) and _set_direct(self._fd, True)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stage: memoryview | None = None
        self._filled = 0
        self._clock, self._started = clock, clock()
        self._handed, self._waited, self._behind = 0, 0.0, False
        if self._direct:
            try:
                self._start_writing()
            except BaseException:
                self._release()
                raise

    def _start_writing(self) -> None:
        self._maps = [_take_buffer(), _take_buffer()]
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._free.put(memoryview(self._maps[1]))
        self._full: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._stage = memoryview(self._maps[0])
        self._thread = threading.Thread(target=self._write_staged, name="fogsync-direct", daemon=True)
        self._thread.start()

    @property
    def direct(self) -> bool:
        """Whether writes still bypass the page cache."""
        return self._direct

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self._stage is None:
            write_all(self._fd, view)
            return
        while view:
            n = min(len(view), STAGE - self._filled)
            self._stage[self._filled:self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == STAGE:
                self._hand_over(STAGE)

    def close(self) -> None:
        """Write what is staged and close; the file is complete only if this returns."""
        if self._fd < 0:
            return
        try:
            if self._stage is not None:
                whole = self._filled - self._filled % mmap.PAGESIZE
                tail = bytes(self._stage[whole:self._filled])
                if whole:
                    self._hand_over(whole)
                waited_from = self._clock()
                self._stop_thread()
                self._waited += self._clock() - waited_from
                if self._error is not None:
                    raise self._error
                _disks.account(self._dev, self._handed, self._waited, self._clock() - self._started, self._behind)
                self._buffered_from_now()
                write_all(self._fd, memoryview(tail))
        finally:
            self._release()

    def __enter__(self) -> "DirectWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._release()

    def _hand_over(self, n: int) -> None:
        """The first ``n`` staged bytes to the writing thread; staging goes on in a free buffer."""
        if self._error is not None:
            raise self._error
        self._full.put((self._stage, n))
        self._handed += n
        try:
            self._stage = self._free.get_nowait()
        except queue.Empty:
            waited_from = self._clock()
            self._stage = self._free.get()
            now = self._clock()
            self._waited += now - waited_from
            if self._handed >= JUDGE_AFTER and self._waited > BEHIND_SHARE * (now - self._started):
                self._behind = True
        self._filled = 0

    def _write_staged(self) -> None:
        """The writing thread: each buffer handed over, in order; the first error stops it."""
        while (item := self._full.get()) is not None:
            stage, n = item
            if self._error is None:
                try:
                    self._write_out(stage[:n])
                except BaseException as e:  # handed to the caller at its next write or close
                    self._error = e
            self._free.put(stage)

    def _write_out(self, view: memoryview) -> None:
        done = 0
        if self._behind:
            self._buffered_from_now()
        if self._direct:
            try:
                done = os.write(self._fd, view)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
            if done != len(view):  # refused, or short: the rest (and every later write) through the page cache
                self._buffered_from_now()
        write_all(self._fd, view[done:])

    def _buffered_from_now(self) -> None:
        if self._direct:
            _set_direct(self._fd, False)
            self._direct = False

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._full.put(None)
            self._thread.join()
            self._thread = None

    def _release(self) -> None:
        self._stop_thread()
        fd, self._fd = self._fd, -1
        if self._stage is not None:  # the writing thread has stopped: nothing uses the buffers now
            self._stage = self._free = self._full = None
            for m in self._maps:
                _give_back(m)
            self._maps = []
        if fd >= 0:
            os.close(fd)


class _Disks:
    """How the direct writes to each file system (``st_dev``) went, over every file written so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[int, list[float]] = {}  # st_dev -> [bytes handed over, seconds waited, seconds]
        self._slow: set[int] = set()

    def slow(self, dev: int) -> bool:
        """Whether files for ``dev`` should go through the page cache: its disk proved slower than us."""
        return dev in self._slow

    def account(self, dev: int, handed: int, waited: float, elapsed: float, behind: bool) -> None:
        with self._lock:
            totals = self._totals.setdefault(dev, [0, 0.0, 0.0])
            totals[0] += handed
            totals[1] += waited
            totals[2] += elapsed
            if behind or (totals[0] >= JUDGE_AFTER and totals[1] > BEHIND_SHARE * totals[2]):
                self._slow.add(dev)

    def clear(self) -> None:
        with self._lock:
            self._totals.clear()
            self._slow.clear()


_disks = _Disks()

_spare_lock = threading.Lock()
_spare: list[mmap.mmap] = []
_SPARE_MAX = 8  # two for each of the four files ``pull`` writes at once: 8 MiB, kept while the process runs


def _take_buffer() -> mmap.mmap:
    """A staging buffer, one a finished file gave back if there is one: its pages are touched already."""
    with _spare_lock:
        if _spare:
            return _spare.pop()
    return mmap.mmap(-1, STAGE)  # anonymous, so page-aligned


def _give_back(m: mmap.mmap) -> None:
    with _spare_lock:
        if len(_spare) < _SPARE_MAX:
            _spare.append(m)
            return
    m.close()


os.register_at_fork(after_in_child=_spare.clear)


def _set_direct(fd: int, on: bool) -> bool:
    """Switch O_DIRECT on or off for ``fd``; whether it is on now."""
    if not _O_DIRECT:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
    except OSError:
        return False
    return on
