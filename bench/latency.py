"""Latency of the live daemon, end to end.

    python bench/latency.py [--saves 50] [--poll 2] [--store URL]
    python bench/latency.py --files 10000,100000 [--saves 20] [--baseline main] [--keep DIR]
    python bench/latency.py --smoke

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

``--files N,M,...`` measures instead how the daemon's costs grow with the
share: per size, a share of N settled files of 0-1 KiB (100 per directory,
two levels) is synced once, then each daemon in turn (``--baseline``: a git
ref of this repository, run from a ``git archive`` of it; then this
checkout) starts on it, and ``--saves`` saves of a new file in a directory
four levels down are timed to the head, with the daemon's CPU (its
process and children, from /proc) over the saves, per save; then
``--statuses`` status requests (what ``fogsync status`` and ``wait`` ask),
then ``--saves`` commits of another host ("beta", which excludes the share's
bulk, ``top*``, so its own passes stay small) four levels down, each timed
to the file in the daemon's folder, with the daemon's CPU per pull (the
poll's wait is in the time, not in the CPU), and the daemon's resident
memory (VmRSS) after its start pass, after the saves and after the pulls. ``--keep DIR`` builds the shares there and reuses them (a
1,000,000-file share takes minutes to build and sync); ``--smoke`` is a
run of seconds.
"""

from __future__ import annotations

import argparse
import glob
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


def _wait(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
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


def _entry_at(repo, top: bytes, path: str):
    """The entry at ``path`` under the top listing, reading only the listings on the way (a whole
    tree loaded per check would time the bench's own reading, on a big share)."""
    ref, entry = top, None
    for name in path.split("/"):
        if ref is None:
            return None
        entry = dict(repo.read_listing(ref)).get(name)
        if entry is None:
            return None
        ref = entry.bptr if entry.type == "dir" else None
    return entry


def save_to_head(cfg: configmod.Config, saves: int, where: str = "", prefix: str = "") -> list[float]:
    repo = open_repo(cfg, cfg.share(SHARE))
    folder = cfg.share(SHARE).path
    tag, out = None, []
    try:
        for i in range(saves):
            data = secrets.token_bytes(2048) + b"save %d\n" % i
            path, want = f"{where}/{prefix}save-{i:03d}.txt".lstrip("/"), hashlib.sha256(data).hexdigest()
            with open(os.path.join(folder, path), "wb") as f:
                f.write(data)
            closed = time.monotonic()

            def named() -> bool:
                nonlocal tag
                head = repo.read_head(tag)
                if head is None or head.root is None:
                    return False
                tag = head.tag
                entry = _entry_at(repo, repo.read_root(head.root).root, path)
                return entry is not None and entry.sha256 == want

            _wait(named, f"the head to name {path}")
            out.append(time.monotonic() - closed)
    finally:
        repo.close()
    return out


def _idle(cfg: configmod.Config) -> bool:
    reply = control.request(cfg.state_dir, {"op": "status", "names": [SHARE]})
    return bool(reply and reply["shares"][0].get("in_step"))


def commit_to_folder(alpha: configmod.Config, beta: configmod.Config, saves: int, poll: float,
                     where: str = "", prefix: str = "", cpu=lambda: 0.0) -> tuple[list[float], float]:
    """The times from beta's commits to the files in alpha's folder, and ``cpu()``'s growth from each
    commit to its file's arrival (the daemon's, not what the bench's waits for idleness cost it)."""
    state = open_state(beta)
    share = open_share(beta, SHARE, state)
    rng = random.Random(1)
    out, spent = [], 0.0
    try:
        sync_share(share)  # beta catches up with alpha's saves first
        for i in range(saves):
            # Commit when alpha is idle, at a random moment of its poll cycle: not just
            # after one of its passes, which reads the head too.
            _wait(lambda: _idle(alpha), "alpha to be in step")
            time.sleep(rng.uniform(0, poll))
            data = secrets.token_bytes(2048) + b"from beta %d\n" % i
            rel = f"{where}/{prefix}beta-{i:03d}.txt".lstrip("/")
            os.makedirs(os.path.dirname(os.path.join(share.folder, rel)), exist_ok=True)
            with open(os.path.join(share.folder, rel), "wb") as f:
                f.write(data)
            report = sync_share(share)
            committed, cpu_then = time.monotonic(), cpu()
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
            spent += cpu() - cpu_then
    finally:
        share.repo.close()
        state.close()
    return out, spent


DEEP = "top3/mid1/deep/deeper"  # where the sizes mode saves: four levels down
BETA_DEEP = "beta/mid/deep/deeper"  # where the other host commits: four levels down, outside what it excludes
SETTLED_NS = 1_700_000_000_000_000_000


def _build_share(folder: str, files: int) -> None:
    """``files`` files of 0-1 KiB, 100 per directory, under top*/mid*/; settled mtimes."""
    dirs = max(1, files // 100)
    width = max(1, math.ceil(math.sqrt(dirs)))
    rng = random.Random(files)
    blob = rng.randbytes(1024)
    for d in range(dirs):
        where = os.path.join(folder, f"top{d // width}", f"mid{d % width}")
        os.makedirs(where, exist_ok=True)
        for k in range(min(100, files - d * 100)):
            path = os.path.join(where, f"f{k:03d}.txt")
            with open(path, "wb") as f:
                f.write(blob[: rng.randrange(1025)])
            os.utime(path, ns=(SETTLED_NS, SETTLED_NS))
    os.makedirs(os.path.join(folder, DEEP), exist_ok=True)


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for children in glob.glob(f"/proc/{p}/task/*/children"):
                with open(children, encoding="ascii") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def _passed(log: str, daemon: subprocess.Popen) -> bool:
    if daemon.poll() is not None:
        raise SystemExit(f"bench: the daemon exited with status {daemon.returncode}")
    time.sleep(0.2)
    with open(log, encoding="utf-8", errors="replace") as f:
        return " s)" in f.read()  # a pass's log line ends with its duration


def _baseline_source(ref: str, base: str) -> str:
    """The package at git ``ref`` of this repository, unpacked under ``base``: a PYTHONPATH entry."""
    out = os.path.join(base, "baseline-src")
    os.makedirs(out)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "-C", repo, "archive", ref, "fogsync"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return out


def _share_of(where: str, files: int) -> configmod.Config:
    """The config of a share of ``files`` files under ``where``, synced once; built unless ``--keep`` kept one."""
    done = os.path.join(where, ".built")
    if os.path.exists(done):
        print(f"{files} files: the share kept in {where}", flush=True)
        return configmod.load(os.path.join(where, "alpha", "config.toml"))
    shutil.rmtree(where, ignore_errors=True)
    os.makedirs(where)
    cfg = configmod.load(_config(where, "alpha", secrets.token_hex(32), os.path.join(where, "store")))
    t0 = time.monotonic()
    _build_share(cfg.share(SHARE).path, files)
    built = time.monotonic() - t0
    state = open_state(cfg)
    share = open_share(cfg, SHARE, state)
    t0 = time.monotonic()
    sync_share(share)
    synced = time.monotonic() - t0
    share.repo.close()
    state.close()
    open(done, "w").close()
    print(f"{files} files: built in {built:.1f} s, first sync {synced:.1f} s (load {_load()})", flush=True)
    return cfg


def _beta_of(alpha: configmod.Config) -> configmod.Config:
    """Another host of alpha's share, beside it, that excludes the share's bulk; its first pass pulls
    nothing but the rows (``first_pull``)."""
    base = os.path.dirname(os.path.dirname(alpha.path))
    path = os.path.join(base, "beta", "config.toml")
    if not os.path.exists(path):
        with open(alpha.path, encoding="utf-8") as f:
            text = f.read().replace(f"{os.sep}alpha{os.sep}", f"{os.sep}beta{os.sep}")
        os.makedirs(os.path.join(base, "beta", "folder"))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace('host = "alpha"', 'host = "beta"') + 'exclude = ["top*"]\n')
        os.chmod(path, 0o600)
    return configmod.load(path)


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident set (or, with ``VmHWM``, its peak), in MB, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    raise SystemExit(f"bench: no {field} in /proc/{pid}/status")


def _statuses(cfg: configmod.Config, pid: int, count: int) -> tuple[list[float], float]:
    """``count`` status requests, one after another: their times, and the daemon's CPU per request."""
    took, before = [], _tree_cpu(pid)
    for _ in range(count):
        t0 = time.monotonic()
        reply = control.request(cfg.state_dir, {"op": "status", "names": [SHARE]}, timeout=3600)
        took.append(time.monotonic() - t0)
        if not reply or reply["shares"][0].get("waiting_files") is None:
            raise SystemExit(f"bench: the daemon counted no files waiting: {reply}")
    return took, (_tree_cpu(pid) - before) / count


def _daemon_env(source: str | None) -> dict:
    """The environment a daemon runs in: the package from ``source``, or this checkout's.

    Run from a directory holding no package: ``-m`` puts the working
    directory first on the path, and from a checkout both daemons would be
    that checkout's.
    """
    return dict(os.environ, PYTHONPATH=source or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _package_of(source: str | None, cwd: str) -> str:
    return subprocess.run([sys.executable, "-c", "import fogsync; print(fogsync.__path__[0])"], env=_daemon_env(source),
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _saves_on(cfg: configmod.Config, base: str, source: str | None, args, tag: str) -> dict:
    """Start a daemon (from ``source``, or this checkout), time ``args.saves`` saves in DEEP and
    ``args.statuses`` status requests, read its memory; stop it."""
    env = _daemon_env(source)
    cmd = [sys.executable, "-m", "fogsync", "--config", cfg.path, "daemon", "--poll", str(args.poll), "-v"]
    log = os.path.join(base, f"daemon-{tag}.err")
    with open(log, "wb") as err:
        daemon = subprocess.Popen(cmd, stderr=err, stdout=subprocess.DEVNULL, env=env, cwd=base)
    out = {}
    try:
        # Its log says when the start pass is done: main's status request scans the whole folder to
        # count the files waiting (30 s and more at 1,000,000 files), and would be what the saves wait for.
        _wait(lambda: _passed(log, daemon), "the daemon's start pass", timeout=3600)
        time.sleep(2 * args.poll)  # past the start pass's aftermath
        out["rss_start"], out["hwm_start"] = _rss_mb(daemon.pid), _rss_mb(daemon.pid, "VmHWM")
        before = _tree_cpu(daemon.pid)
        out["took"] = save_to_head(cfg, args.saves, where=DEEP, prefix=f"{tag}-")
        out["cpu"] = (_tree_cpu(daemon.pid) - before) / args.saves
        time.sleep(2 * args.poll)
        out["rss_saves"] = _rss_mb(daemon.pid)
        out["status"], out["status_cpu"] = _statuses(cfg, daemon.pid, args.statuses)
        out["pulled"], spent = commit_to_folder(cfg, _beta_of(cfg), args.saves, args.poll, BETA_DEEP, f"{tag}-",
                                                lambda: _tree_cpu(daemon.pid))
        out["pull_cpu"] = spent / args.saves
        out["rss_pulls"] = _rss_mb(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=TIMEOUT)
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def sizes(args) -> int:
    base = args.keep or tempfile.mkdtemp(prefix="fogsync-latency-")
    scratch = tempfile.mkdtemp(prefix="fogsync-latency-")
    variants = [(f"before ({args.baseline})", _baseline_source(args.baseline, scratch)), ("after (this)", None)]
    rows = []
    for label, source in variants:
        print(f"{label}: {_package_of(source, scratch)}")
    print(f"load before: {_load()}", flush=True)
    for files in [int(n) for n in args.files.split(",")]:
        where = os.path.join(base, f"n{files}")
        cfg = _share_of(where, files)
        for i, (label, source) in enumerate(variants):
            m = _saves_on(cfg, scratch, source, args, f"v{i}")
            rows.append((files, label, m))
            print(f"{files:>9}  {label:<22} {_stats('save -> head', m['took'])}  daemon CPU/save "
                  f"{m['cpu'] * 1000:6.0f} ms; status {statistics.median(m['status']):.3f} s; RSS after the start "
                  f"pass {m['rss_start']:.0f} MB (peak {m['hwm_start']:.0f}), after the saves {m['rss_saves']:.0f} MB"
                  f" (load {_load()})", flush=True)
            print(f"{files:>9}  {label:<22} {_stats('commit -> folder', m['pulled'])}  daemon CPU/pull "
                  f"{m['pull_cpu'] * 1000:6.0f} ms; RSS after the pulls {m['rss_pulls']:.0f} MB", flush=True)
        if not args.keep:
            shutil.rmtree(where, ignore_errors=True)
    print(f"load after: {_load()}")
    print("\n| files | daemon | save -> head median | p95 | daemon CPU per save | status median | CPU per status "
          "| RSS after start pass | peak by then | RSS after saves | commit -> folder median | daemon CPU per pull "
          "| RSS after pulls |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for files, label, m in rows:
        ordered = sorted(m["took"])
        p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
        print(f"| {files:,} | {label} | {statistics.median(ordered):.3f} s | {p95:.3f} s | {m['cpu'] * 1000:.0f} ms "
              f"| {statistics.median(m['status']):.3f} s | {m['status_cpu'] * 1000:.0f} ms | {m['rss_start']:.0f} MB "
              f"| {m['hwm_start']:.0f} MB | {m['rss_saves']:.0f} MB | {statistics.median(m['pulled']):.3f} s "
              f"| {m['pull_cpu'] * 1000:.0f} ms | {m['rss_pulls']:.0f} MB |")
    print("\nratios, after / before (same run):")
    by = {(f, i % 2): m for i, (f, _, m) in enumerate(rows)}
    for files in sorted({f for f, _, _ in rows}):
        old, new = by[(files, 0)], by[(files, 1)]
        print(f"{files:>9} files: save -> head {statistics.median(new['took']) / statistics.median(old['took']):.2f}x, "
              f"CPU per save {new['cpu'] / max(old['cpu'], 1e-9):.2f}x, status "
              f"{statistics.median(new['status']) / statistics.median(old['status']):.3f}x, RSS after the start pass "
              f"{new['rss_start'] / old['rss_start']:.2f}x, commit -> folder "
              f"{statistics.median(new['pulled']) / statistics.median(old['pulled']):.2f}x, CPU per pull "
              f"{new['pull_cpu'] / max(old['pull_cpu'], 1e-9):.2f}x")
    shutil.rmtree(scratch, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--saves", type=int, default=50, help="saves to time, each way (default 50)")
    p.add_argument("--poll", type=float, default=2.0, help="the daemon's --poll, seconds (default 2)")
    p.add_argument("--store", help="store URL (default: a local store in the temporary directory)")
    p.add_argument("--files", help="share sizes to compare, e.g. 10000,100000 (the sizes mode)")
    p.add_argument("--baseline", default="main", help="git ref whose daemon runs first in the sizes mode")
    p.add_argument("--keep", help="sizes mode: build the shares under this directory, keep them, and reuse them")
    p.add_argument("--statuses", type=int, default=3, help="status requests to time per daemon (sizes mode)")
    p.add_argument("--smoke", action="store_true", help="the sizes mode in seconds: 300 files, 3 saves, HEAD")
    args = p.parse_args()
    if args.smoke:
        args.files, args.saves, args.poll = args.files or "300", 3, 0.5
        args.baseline = "HEAD" if args.baseline == "main" else args.baseline
    if args.files:
        return sizes(args)

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
        pulled, _ = commit_to_folder(alpha, beta, args.saves, args.poll)
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
