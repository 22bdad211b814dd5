#!/usr/bin/env python3
"""How many S3 requests fogsync makes: PUT/GET/HEAD/LIST per corpus and phase.

    python bench/s3_requests.py [--only mixed,small,big] [--smoke]

Serves moto's S3 on 127.0.0.1 in this process (werkzeug in a thread, with a
WSGI middleware in front of moto's app that counts every request), and runs
``fogsync`` as a subprocess against it (``[s3] endpoint_url`` in a fresh
config, dummy AWS_* credentials). For each corpus, in order:

    initial     first sync into an empty bucket
    no-op       the same again, nothing changed
    change      (small only) one file appended to, then a sync; then put back
                and synced again ("changed back")
    restore     ``fogsync restore`` into an empty directory (checked)
    second host another host (own state, own name) joins: its first sync
                into an empty folder (checked)
    lost-state  the state database deleted, the share added again, then a sync
                (the folder already matches the store: the goal is one LIST)

Requests are split by object kind: ``blk`` (``<share>/blocks/...``) and
``oth`` (head and anything else). The issue's goals: one PUT per new block
object and a few per commit; no HEAD or GET per block to learn whether it
exists; no LIST in steady state; the small corpus far fewer PUTs than files.
Corpora come from the same cache as ``bench/compare.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from urllib.parse import parse_qs, unquote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import (  # noqa: E402
    CORPORA,
    SMOKE_SCALE,
    OneFileChange,
    corpus_dirs,
    corpus_files,
    fogsync_command,
    log,
    verify_restore,
)

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
UNSET_AWS = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
COLUMNS = ("PUT blk", "PUT oth", "GET blk", "GET oth", "HEAD", "LIST", "other")


class Counting:
    """WSGI middleware: counts requests by kind, and bytes each way."""

    def __init__(self, app, buckets: set[str]) -> None:
        self.app = app
        self.buckets = buckets
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.block_keys: set[str] = set()

    def reset(self) -> None:
        with self.lock:
            self.counts = Counter()
            self.block_keys = set()

    def snapshot(self) -> tuple[Counter, set[str]]:
        with self.lock:
            return Counter(self.counts), set(self.block_keys)

    def __call__(self, environ, start_response):
        path = unquote(environ.get("PATH_INFO", ""))
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        host = environ.get("HTTP_HOST", "").split(":")[0]
        label = host.split(".")[0]
        if label in self.buckets:  # virtual-hosted style: the whole path is the key
            key = path.lstrip("/")
        else:  # path style: /bucket/key
            key = path.lstrip("/").partition("/")[2]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        block = "/blocks/" in key
        if method == "GET" and not key:
            kind = "LIST" if "list-type" in query or not query or "prefix" in query else "other"
        elif method == "GET":
            kind = "GET blk" if block else "GET oth"
        elif method == "HEAD":
            kind = "HEAD"
        elif method == "PUT" and key:
            kind = "PUT blk" if block else "PUT oth"
        else:
            kind = "other"
        up = int(environ.get("CONTENT_LENGTH") or 0)
        status_box = []

        def start(status, headers, exc_info=None):
            status_box.append(status)
            return start_response(status, headers, exc_info)

        body = self.app(environ, start)
        down = 0
        chunks = []
        for chunk in body:
            down += len(chunk)
            chunks.append(chunk)
        if hasattr(body, "close"):
            body.close()
        with self.lock:
            self.counts[kind] += 1
            self.counts["bytes up"] += up
            self.counts["bytes down"] += down
            code = status_box[0].split()[0] if status_box else "?"
            if not code.startswith("2"):
                self.counts[f"status {code}"] += 1
            if kind == "PUT blk":
                self.block_keys.add(key)
        return chunks


class Server:
    """moto's S3 behind the counting middleware, on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        from moto.server import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.buckets: set[str] = set()
        self.counter = Counting(DomainDispatcherApplication(create_backend_app), self.buckets)
        self.server = make_server("127.0.0.1", 0, self.counter, threaded=True, request_handler=MotoRequestHandler)
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset API; not counted)."""
        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST")).read()
        self.buckets.clear()

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.url)
        client.create_bucket(Bucket=name)
        client.close()
        self.buckets.add(name)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


def run(cmd: list[str], env: dict, logfile: str) -> float:
    start = time.perf_counter()
    with open(logfile, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        rc = subprocess.run(cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL).returncode
    if rc != 0:
        with open(logfile, "rb") as f:
            tail = f.read()[-1500:].decode(errors="replace")
        raise RuntimeError(f"{' '.join(cmd)} failed with exit {rc}: ...{tail.strip()[-800:]}")
    return time.perf_counter() - start


def bench_corpus(srv: Server, name: str, corpus: str, work: str, fogsync: list[str]) -> list[tuple]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET_AWS}
    env.update(FAKE_AWS)
    absent = os.path.join(work, "absent")
    env.update(AWS_CONFIG_FILE=absent, AWS_SHARED_CREDENTIALS_FILE=absent)
    bucket = f"bench-{name}"
    srv.create_bucket(bucket)
    key = os.urandom(32).hex()
    config = os.path.join(work, "config.toml")
    state = os.path.join(work, "state")
    logfile = os.path.join(work, "log.txt")

    def add_share(folder: str = corpus, state_dir: str = state, host: str = "bench") -> None:
        with open(config, "w") as f:
            f.write(f'state_dir = "{state_dir}"\nhost = "{host}"\n\n[s3]\nendpoint_url = "{srv.url}"\n')
        os.chmod(config, 0o600)
        run(fogsync + ["--config", config, "add-share", name, key, "--path", folder,
                       "--store", f"s3://{bucket}/fogsync"], env, logfile)

    rows = []

    def phase(label: str, cmd: list[str]) -> None:
        srv.counter.reset()
        wall = run(fogsync + ["--config", config] + cmd, env, logfile)
        counts, blocks = srv.counter.snapshot()
        rows.append((name, label, counts, len(blocks), wall))
        log(f"  {name:6} {label:10} {wall:7.2f} s  " +
            " ".join(f"{c}={counts[c]}" for c in COLUMNS if counts[c]))

    files = corpus_files(corpus)
    add_share()
    phase("initial", ["sync", name])
    phase("no-op", ["sync", name])
    if name == "small":
        with OneFileChange(corpus, files):
            phase("change", ["sync", name])
        phase("changed back", ["sync", name])  # so restore and lost-state see the corpus as it is
    dest = os.path.join(work, "restored")
    phase("restore", ["restore", name, "--to", dest])
    problem = verify_restore(corpus, files, dest)
    if problem:
        print(f"WARNING: restore of {name} from S3 differs from the corpus: {problem}")
    # Set aside, not deleted: on ext4 without a journal, files created within a
    # minute of a 50,000-file deletion are slow, and the next phase creates them.
    os.rename(dest, dest + "-done")
    second, second_state = os.path.join(work, "second-host"), os.path.join(work, "second-state")
    os.makedirs(second)
    add_share(second, second_state, "second")
    phase("second host", ["sync", name])  # a host joining the share: its first sync into an empty folder
    problem = verify_restore(corpus, files, second)
    if problem:
        print(f"WARNING: a second host's first sync of {name} differs from the corpus: {problem}")
    for done in (second, second_state, state):
        os.rename(done, done + "-done")
    add_share()
    phase("lost-state", ["sync", name])
    return rows


def table(rows: list[tuple], files: dict[str, int]) -> str:
    head = ("corpus", "phase", *COLUMNS, "total", "MB up", "MB down", "new blk", "wall s")
    out = []
    for name, label, c, nblocks, wall in rows:
        total = sum(c[k] for k in COLUMNS)
        out.append((name, label, *(str(c[k]) for k in COLUMNS), str(total),
                    f"{c['bytes up'] / 1e6:.1f}", f"{c['bytes down'] / 1e6:.1f}", str(nblocks), f"{wall:.2f}"))
    widths = [max(len(x) for x in col) for col in zip(head, *out)]
    fmt = "  ".join("{:<%d}" % w if i < 2 else "{:>%d}" % w for i, w in enumerate(widths))
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in out]
    for name, label, c, nblocks, _ in rows:
        if label == "initial":
            lines.append(f"{name}: {files[name]} files -> {c['PUT blk']} block PUTs "
                         f"({c['PUT blk'] / max(1, files[name]):.3f} per file, {nblocks} distinct blocks)")
        odd = {k: v for k, v in c.items() if k.startswith("status")}
        if odd:
            lines.append(f"{name} {label}: non-2xx answers {dict(odd)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(CORPORA))
    ap.add_argument("--smoke", action="store_true", help=f"tiny corpora (scale {SMOKE_SCALE})")
    ap.add_argument("--scale", type=float)
    ap.add_argument("--cache", default=os.path.join(HERE, "corpus"))
    ap.add_argument("--fogsync", help="command that runs fogsync (default: the venv's console script)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (config, state, logs)")
    args = ap.parse_args(argv)
    scale = args.scale or (SMOKE_SCALE if args.smoke else 1.0)
    corpora = [c for c in args.only.split(",") if c]
    for c in corpora:
        if c not in CORPORA:
            ap.error(f"unknown corpus {c!r}")
    fogsync = fogsync_command(args.fogsync)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    for k, v in FAKE_AWS.items():  # for this process's own boto3 (create_bucket)
        os.environ.setdefault(k, v)
    os.makedirs(args.cache, exist_ok=True)
    paths = corpus_dirs(args.cache, corpora, scale)
    srv = Server()
    rows: list[tuple] = []
    files: dict[str, int] = {}
    try:
        for name, path in paths.items():
            files[name] = len(corpus_files(path))
            work = tempfile.mkdtemp(prefix=f"s3-{name}-", dir=args.cache)
            try:
                rows += bench_corpus(srv, name, path, work, fogsync)
            finally:
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
                srv.reset()
    finally:
        srv.stop()
    print(f"S3 requests made by fogsync (moto server; scale {scale:g})")
    print(table(rows, files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
