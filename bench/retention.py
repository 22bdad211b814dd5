"""A week of a daemon's life, simulated: many commits of small edits to a share, then the daily forget
and prune (issue 23).

The commits are built directly on a repository in a local store (as a pass
commits them: the edited files sealed, their tails packed together, the
listings that changed rewritten, a root on the head), dated evenly over a
week. Then ``forget`` with the retention suggested in config.example.toml
(every version for a day, one a day for a month, ...) and ``prune --grace
0s``, in a child process whose peak RSS is read. Reported, before and
after: store bytes and objects, the time of a ``log`` walk and of one
file's ``history``; prune's run time and peak RSS; and the store's bytes
against the bytes the kept history references (what a fresh sync of the
kept roots would write, near enough: every distinct piece reachable).

    python bench/retention.py                 # 10,000 commits, 5,000 files
    python bench/retention.py --smoke         # seconds: for tests/test_bench_smoke.py
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from fogsync.engine.forget import Duration, Policy, forget_share
from fogsync.engine.history import file_history
from fogsync.engine.prune import prune_share
from fogsync.engine.push import write_listings, write_root
from fogsync.format import crypto
from fogsync.format.blocks import Bptr
from fogsync.format.tree import DIR, FILE, Entry
from fogsync.repo.repository import Repo
from fogsync.store.local import LocalStore

KEYS = crypto.ShareKeys.derive(bytes(range(32)))
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
WEEK = timedelta(days=7)
POLICY = Policy(within=Duration(days=1), daily=30, weekly=52, monthly=24)  # config.example.toml's


def content(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(rng.randint(200, 2000)) + str(n).encode()


def build(repo: Repo, files: int, commits: int, seed: int = 1) -> str:
    """The share: ``files`` files in directories of 100, then ``commits`` commits of 1-3 edits each.
    Returns the path of the file edited most often (for ``history``)."""
    rng = random.Random(seed)
    paths = [f"d{i // 100:03d}/f{i:05d}.txt" for i in range(files)]
    tree: dict[str, Entry] = {}
    head, prev = None, None

    def commit(edits: dict[str, bytes], when: datetime) -> None:
        nonlocal head, prev
        w = repo.writer()
        pend = [w.write_bytes(crypto.seal(KEYS, data, compress=False)) for data in edits.values()]
        previous = dict(tree)
        for (p, data), ref in zip(edits.items(), w.resolve(pend)):
            tree[p] = Entry(FILE, 1, "bench", len(data), ref, hashlib.sha256(data).hexdigest())
            tree.setdefault(p.split("/")[0], Entry(DIR, 1, "bench"))
        top, new_tree = write_listings(w, tree, previous, "bench")
        tree.update(new_tree)
        ref, root = write_root(w, top, (head, prev) if head else None, "bench", when)
        repo.wait_uploads()
        tag = repo.read_head().tag
        repo.swap_head(ref, tag)
        head, prev = ref, root

    commit({p: content(rng, 0) for p in paths}, START)
    hot = paths[: max(1, files // 50)]  # a few files take most edits, as a day's work does
    for n in range(1, commits):
        pool = hot if rng.random() < 0.8 else paths
        edits = {p: content(rng, n) for p in rng.sample(pool, min(len(pool), rng.randint(1, 3)))}
        commit(edits, START + WEEK * n / commits)
    return hot[0]


def store_size(root: str) -> tuple[int, int]:
    objects = size = 0
    for d, _, names in os.walk(root):
        for name in names:
            objects += 1
            size += os.path.getsize(os.path.join(d, name))
    return objects, size


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def referenced_bytes(repo: Repo) -> int:
    """Bytes of every distinct piece the history reaches (roots, listings, contents, block lists)."""
    pieces: set[bytes] = set()
    seen: set[bytes] = set()

    def add(ref: bytes) -> None:
        if ref in seen:
            return
        seen.add(ref)
        for p in repo.pieces(ref):
            pieces.add(p.pack())

    for ref, root in repo.history(repo.read_head().root):
        add(ref)
        for key in (root.kept, root.forgot):
            if key:
                add(key)
        stack = [root.root]
        while stack:
            lref = stack.pop()
            if lref in seen:
                continue
            add(lref)
            for _, e in repo.read_listing(lref):
                if e.bptr is not None:
                    (stack.append if e.type == DIR else add)(e.bptr)
    return sum(Bptr.unpack(p).end - Bptr.unpack(p).start for p in pieces)


def _prune_child(store_root: str, now: datetime, out) -> None:
    repo = Repo(LocalStore(store_root), KEYS, "bench")
    t = time.perf_counter()
    r = prune_share(repo, "bench", lambda: now, timedelta(0))
    out.send((time.perf_counter() - t, r.deleted, r.deleted_bytes))
    repo.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--commits", type=int, default=10000)
    ap.add_argument("--smoke", action="store_true", help="a tiny share, for tests (seconds)")
    ap.add_argument("--dir", help="where to keep the store (default: a temporary directory)")
    args = ap.parse_args()
    if args.smoke:
        args.files, args.commits = 120, 60
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fogsync-retention-") as tmp:
        store_root = os.path.join(tmp, "store")
        repo = Repo(LocalStore(store_root), KEYS, "bench")
        took_build, hot = timed(lambda: build(repo, args.files, args.commits))
        now = START + WEEK + timedelta(hours=1)
        rows = [("commits made", f"{args.commits} in {took_build:.1f} s")]
        before = store_size(store_root)
        log_before, items = timed(lambda: list(repo.history_items(repo.read_head().root)))
        hist_before, versions = timed(lambda: file_history(repo, repo.read_head().root, hot))
        took_forget, result = timed(lambda: forget_share(repo, POLICY, "bench", lambda: now, tz=timezone.utc))
        repo.close()
        parent, child = multiprocessing.Pipe()
        # the blocks' mtimes are the real clock's: the prune's grace counts on it
        prune_now = max(now, datetime.now(timezone.utc))
        proc = multiprocessing.get_context("fork").Process(target=_prune_child, args=(store_root, prune_now, child))
        proc.start()
        took_prune, deleted, deleted_bytes = parent.recv()
        proc.join()
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        repo = Repo(LocalStore(store_root), KEYS, "bench")
        after = store_size(store_root)
        log_after, kept_items = timed(lambda: list(repo.history_items(repo.read_head().root)))
        hist_after, kept_versions = timed(lambda: file_history(repo, repo.read_head().root, hot))
        referenced = referenced_bytes(repo)
        repo.close()
    rows += [
        ("roots in log", f"{len(items)} -> {len(kept_items)} (forgot {len(result.forgotten)} in {took_forget:.2f} s)"),
        ("store objects", f"{before[0]} -> {after[0]}"),
        ("store bytes", f"{before[1]} -> {after[1]}"),
        ("log", f"{log_before:.3f} s -> {log_after:.3f} s"),
        (f"history of {hot}", f"{hist_before:.3f} s ({len(versions)} versions) -> "
                               f"{hist_after:.3f} s ({len(kept_versions)})"),
        ("prune", f"{took_prune:.2f} s, deleted {deleted} objects ({deleted_bytes} bytes), peak RSS {peak_kib // 1024} MiB"),
        ("store / referenced", f"{after[1] / referenced:.2f}x ({referenced} bytes referenced)"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
