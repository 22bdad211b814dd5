"""Latency of the live daemon, end to end.

    python bench/latency.py [--saves 50] [--poll 2] [--store URL]

Runs a real ``fogsync daemon`` (host "alpha", default debounce) on a fresh
share in a temporary directory and measures, over ``--saves`` saves:

- save -> head: from a file's close in alpha's folder to the store's head
  naming it with that content;
- commit -> folder: from another host's commit (host "beta", one
  ``sync_share`` pass in this process, made while alpha is idle, at a random
  moment of its poll cycle) to the file, whole, in alpha's folder. The daemon
  polls every ``--poll`` seconds: expect about half of it, plus the pass.

Prints median and 95th percentile; asserts nothing. ``--store`` takes an
``s3://bucket/prefix`` (endpoint from ``$AWS_ENDPOINT_URL_S3``) instead of a
local store in the temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from fogsync.config import file as configmod
from fogsync.config.shares import open_repo, open_share, open_state
from fogsync.daemon import control
from fogsync.engine.sync import sync_share

SHARE = "bench"
TIMEOUT = 60.0
TICK = 0.005


def _config(base: str, host: str, key: str, store: str) -> str:
    folder, state = os.path.join(base, host, "folder"), os.path.join(base, host, "state")
    os.makedirs(folder)
    path = os.path.join(base, host, "config.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'state_dir = "{state}"\nhost = "{host}"\n\n'
                f'[shares.{SHARE}]\nkey = "{key}"\npath = "{folder}"\nstore = "{store}"\n')
    os.chmod(path, 0o600)
    return path


def _wait(predicate, what: str):
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(TICK)


def _stats(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return (f"{label:<34} median {statistics.median(ordered):6.3f} s   p95 {p95:6.3f} s   "
            f"min {ordered[0]:6.3f} s   max {ordered[-1]:6.3f} s   (n={len(ordered)})")


def _started(cfg: configmod.Config, daemon: subprocess.Popen) -> bool:
    if daemon.poll() is not None:
        raise SystemExit(f"bench: the daemon exited with status {daemon.returncode}")
    try:
        reply = control.request(cfg.state_dir, {"op": "status", "names": [SHARE]})
    except Exception:
        return False
    return bool(reply and reply["shares"][0].get("last_pass"))


def save_to_head(cfg: configmod.Config, saves: int) -> list[float]:
    repo = open_repo(cfg, cfg.share(SHARE))
    folder = cfg.share(SHARE).path
    tag, out = None, []
    try:
        for i in range(saves):
            data = secrets.token_bytes(2048) + b"save %d\n" % i
            path, want = f"save-{i:03d}.txt", hashlib.sha256(data).hexdigest()
            with open(os.path.join(folder, path), "wb") as f:
                f.write(data)
            closed = time.monotonic()

            def named() -> bool:
                nonlocal tag
                head = repo.read_head(tag)
                if head is None or head.root is None:
                    return False
                tag = head.tag
                entry = repo.load_tree(repo.read_root(head.root).root).get(path)
                return entry is not None and entry.sha256 == want

            _wait(named, f"the head to name {path}")
            out.append(time.monotonic() - closed)
    finally:
        repo.close()
    return out


def _idle(cfg: configmod.Config) -> bool:
    reply = control.request(cfg.state_dir, {"op": "status", "names": [SHARE]})
    return bool(reply and reply["shares"][0]["state"] == "in step")


def commit_to_folder(alpha: configmod.Config, beta: configmod.Config, saves: int, poll: float) -> list[float]:
    state = open_state(beta)
    share = open_share(beta, SHARE, state)
    rng = random.Random(1)
    out = []
    try:
        sync_share(share)  # beta catches up with alpha's saves first
        for i in range(saves):
            # Commit when alpha is idle, at a random moment of its poll cycle: not just
            # after one of its passes, which reads the head too.
            _wait(lambda: _idle(alpha), "alpha to be in step")
            time.sleep(rng.uniform(0, poll))
            data = secrets.token_bytes(2048) + b"from beta %d\n" % i
            rel = f"beta-{i:03d}.txt"
            with open(os.path.join(share.folder, rel), "wb") as f:
                f.write(data)
            report = sync_share(share)
            committed = time.monotonic()
            assert report.committed is not None
            target = os.path.join(alpha.share(SHARE).path, rel)

            def arrived() -> bool:
                try:
                    with open(target, "rb") as f:
                        return f.read() == data
                except FileNotFoundError:
                    return False

            _wait(arrived, f"{rel} in alpha's folder")
            out.append(time.monotonic() - committed)
    finally:
        share.repo.close()
        state.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--saves", type=int, default=50, help="saves to time, each way (default 50)")
    p.add_argument("--poll", type=float, default=2.0, help="the daemon's --poll, seconds (default 2)")
    p.add_argument("--store", help="store URL (default: a local store in the temporary directory)")
    args = p.parse_args()

    base = tempfile.mkdtemp(prefix="fogsync-latency-")
    key = secrets.token_hex(32)
    store = args.store or os.path.join(base, "store")
    alpha = configmod.load(_config(base, "alpha", key, store))
    beta = configmod.load(_config(base, "beta", key, store))
    cmd = [sys.executable, "-m", "fogsync", "--config", alpha.path, "daemon", "--poll", str(args.poll)]
    err = open(os.path.join(base, "daemon.err"), "wb")
    daemon = subprocess.Popen(cmd, stderr=err, stdout=subprocess.DEVNULL)
    try:
        _wait(lambda: _started(alpha, daemon), "the daemon to start")
        saved = save_to_head(alpha, args.saves)
        pulled = commit_to_folder(alpha, beta, args.saves, args.poll)
    finally:
        daemon.send_signal(signal.SIGTERM)
        status = daemon.wait(timeout=TIMEOUT)
        err.close()
    print(f"store {store}; debounce {alpha.debounce:g} s, max_delay {alpha.max_delay:g} s, poll {args.poll:g} s")
    print(_stats("save -> head names it", saved))
    print(_stats("other host's commit -> folder", pulled))
    print(f"daemon exit status on SIGTERM: {status}")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
