"""glibc malloc, tuned for a process that allocates and frees 1 MiB buffers all day.

This layer adds nothing to what FogSync does, only to what it costs. Block
reads, chunks being sealed or opened and staging buffers are buffers of
64 KiB to 1 MiB, freed as soon as they are used. glibc serves each from one
of several arenas, maps those above a threshold that moves, and gives back
the top of its heap whenever 2x that threshold is free there; on a virtual
machine whose free memory goes back to the host, each page it took back is a
page fault, and a page cleared, when the next buffer touches it. So
``tune`` (called once, first thing, by the command line) asks for:

- one arena, so a buffer freed by one thread is reused by the next, and
  the peak RSS of a sync or restore drops;
- a fixed mmap threshold of 32 MiB, so no buffer of ours is mapped and
  unmapped on its own (fixing only the trim threshold also freezes the
  mmap one, at 128 KiB, and every 1 MiB buffer is then mapped anew, with
  many times the page faults of either untuned or fully tuned);
- the top of the heap given back only past 256 MiB of it free.

The same settings reach worker processes through glibc's environment
variables (the forkserver starts a fresh interpreter); one a person set
there wins. Freed memory then stays with the process until ``give_back``,
which the daemon calls when a pass ends. Elsewhere than glibc, both do
nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import lru_cache

MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for it on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 << 20

# mallopt parameters, from glibc's malloc.h, and the variables glibc reads when a process starts
_SETTINGS = (
    (-8, "MALLOC_ARENA_MAX", 1),  # M_ARENA_MAX
    (-3, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),  # M_MMAP_THRESHOLD
    (-1, "MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD),  # M_TRIM_THRESHOLD
)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (the only one with both calls)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune() -> None:
    """Set the arena, mmap and trim settings above here, and for processes started from now on.

    Call it before any thread starts: the arena count holds only for threads
    that have not allocated yet.
    """
    libc = _libc()
    if libc is None:
        return
    for param, env_name, value in _SETTINGS:
        if env_name in os.environ:
            continue  # the person's own choice, which glibc read when this process started
        os.environ[env_name] = str(value)
        libc.mallopt(param, value)


def give_back() -> None:
    """Return the heap's free pages to the system (``malloc_trim``): for a process about to idle."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
