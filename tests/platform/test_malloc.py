"""malloc: the glibc settings, observed in a fresh interpreter (they are process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fogsync.platform import malloc

pytestmark = pytest.mark.skipif(malloc._libc() is None, reason="glibc only")

# Takes eight 1 MiB buffers, touches and frees them, 50 times over (a pipeline's chunks in flight),
# and counts the page faults; frees 64 MiB and reads the RSS before and after give_back. Prints
# what it saw as JSON.
_PROBE = r"""
import json, os, resource, sys
from fogsync.platform import malloc
if sys.argv[1] == "tuned":
    malloc.tune()

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def churn():
    for _ in range(50):
        bufs = [bytearray(1 << 20) for _ in range(8)]
        for buf in bufs:
            buf[::4096] = b"x" * len(buf[::4096])
        del bufs

churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
held = [bytearray(1 << 20) for _ in range(64)]
for b in held:
    b[::4096] = b"x" * len(b[::4096])
del held
freed = rss()
malloc.give_back()
env = {k: os.environ.get(k) for k in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
print(json.dumps({"faults": faults, "freed_rss": freed, "after_give_back": rss(), "env": env}))
"""


def _probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env={**clean, **env}, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_tuned_buffers_reuse_their_pages():
    untuned, tuned = _probe("untuned"), _probe("tuned")
    assert tuned["faults"] < 100 <= untuned["faults"]  # untuned, freed tops of the heap went back


def test_tune_hands_the_settings_to_processes_started_later():
    env = _probe("tuned")["env"]
    assert env == {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(malloc.MMAP_THRESHOLD),
                   "MALLOC_TRIM_THRESHOLD_": str(malloc.TRIM_THRESHOLD)}


def test_a_setting_of_the_persons_own_wins():
    seen = _probe("tuned", MALLOC_TRIM_THRESHOLD_="1234567")
    assert seen["env"]["MALLOC_TRIM_THRESHOLD_"] == "1234567"
    assert seen["env"]["MALLOC_ARENA_MAX"] == "1"


def test_give_back_returns_what_was_freed():
    seen = _probe("tuned")
    assert seen["freed_rss"] - seen["after_give_back"] > 48 << 20
