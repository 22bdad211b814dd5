#!/usr/bin/env python3
"""How much S3's latency costs fogsync: throughput with 0, 10, 30 and 60 ms per request.

    python bench/s3_latency.py [--delays 0,10,30,60] [--connections 16] [--mb 200] [--smoke]

moto's S3 (``ThreadedMotoServer``, in this process) sits behind a delaying
HTTP proxy on 127.0.0.1 that holds each request ``delay`` ms before
forwarding it, as a far-away S3 would, and counts the requests in flight.
fogsync runs as a subprocess against the proxy (``[s3] endpoint_url``).
Per delay and per ``--connections`` value (the S3 store's upload pool,
read-ahead and botocore connection pool, set for the run only), into a
fresh bucket: an **initial** sync of a mix of many small files and a few
big ones (``--mb`` MB), then a **restore** of it into an empty directory
(checked: every file's size and content). Prints MB/s, the ratio to the
0 ms run with the same connections, and the requests in flight (the mean
while any was, and the most at once). ``--smoke`` runs a 2 MB mix at 0 and
10 ms in seconds (what CI runs). Asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from s3_requests import (  # the same moto credentials (bench/ is this script's path)
    FAKE_AWS,
    UNSET_AWS,
)

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}
# fogsync with the S3 store's connection counts set for this run only (argv[1]).
WRAPPER = (
    "import sys\n"
    "from fogsync.store import s3\n"
    "n = int(sys.argv.pop(1))\n"
    "s3.S3Store.put_concurrency = s3.S3Store.read_concurrency = n\n"
    "s3.S3Store.pool_connections = 2 * n\n"
    "from fogsync.cli.main import main\n"
    "sys.exit(main())\n"
)


class DelayProxy:
    """Forwards every request to ``upstream`` after ``delay`` seconds; measures requests in flight."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.delay = upstream, 0.0
        self._lock = threading.Lock()
        self.reset()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        with self._lock:
            self.requests = self.in_flight = self.most = 0
            self._area = self._busy = 0.0
            self._since = time.monotonic()

    def _moved(self, step: int) -> None:
        with self._lock:
            now = time.monotonic()
            if self.in_flight:
                self._area += self.in_flight * (now - self._since)
                self._busy += now - self._since
            self._since = now
            self.in_flight += step
            self.requests += step > 0
            self.most = max(self.most, self.in_flight)

    def mean_in_flight(self) -> float:
        with self._lock:
            return self._area / self._busy if self._busy else 0.0

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy._moved(+1)
                try:
                    time.sleep(proxy.delay)
                    status, headers, answer = self._forward(body)
                finally:
                    proxy._moved(-1)
                self.send_response_only(status)
                for k, v in headers:
                    self.send_header(k, v)
                if not any(k.lower() == "content-length" for k, _ in headers):
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)
                self.wfile.flush()

            do_PUT = do_POST = do_HEAD = do_DELETE = do_GET

            def _forward(self, body: bytes):
                conn = getattr(local, "conn", None) or http.client.HTTPConnection(*proxy.upstream, timeout=120)
                local.conn = conn
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    local.conn = None
                    raise
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
                return response.status, kept, answer

        return Handler


def make_mix(folder: str, megabytes: float, seed: int = 25) -> dict[str, bytes]:
    """Many small files (1-32 KiB, 1/4 of the bytes) in 20 directories and 3 big ones (3/4); random bytes."""
    rng = random.Random(seed)
    total, small_part = int(megabytes * 1e6), int(megabytes * 1e6) // 4
    digests: dict[str, bytes] = {}

    def put(rel: str, size: int) -> None:
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = rng.randbytes(size)
        with open(path, "wb") as f:
            f.write(data)
        digests[rel] = hashlib.sha256(data).digest()

    made, i = 0, 0
    while made < small_part:
        size = rng.randint(1024, 32 * 1024)
        put(f"small/d{i % 20:02d}/f{i:05d}.bin", size)
        made, i = made + size, i + 1
    for k in range(3):
        put(f"big/big{k}.bin", (total - made) // 3)
    return digests


def checked(dest: str, digests: dict[str, bytes]) -> str | None:
    """What differs between a restore and the mix, if anything."""
    for rel, want in digests.items():
        try:
            with open(os.path.join(dest, rel), "rb") as f:
                got = hashlib.sha256(f.read()).digest()
        except OSError as e:
            return f"{rel}: {e}"
        if got != want:
            return f"{rel}: content differs"
    return None


class Moto:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        self.url = f"http://{self.host}:{self.port}"

    def fresh_bucket(self, name: str) -> None:
        import boto3

        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST")).read()
        client = boto3.client("s3", endpoint_url=self.url)
        client.create_bucket(Bucket=name)
        client.close()

    def stop(self) -> None:
        self.server.stop()


def one_run(moto: Moto, proxy: DelayProxy, mix: str, digests, work: str, delay_ms: int, conns: int, env) -> dict:
    """Initial sync and restore at one delay: seconds and requests in flight for each."""
    run_dir = os.path.join(work, f"run-{delay_ms}-{conns}")
    os.makedirs(run_dir)
    moto.fresh_bucket("latency")
    config = os.path.join(run_dir, "config.toml")
    with open(config, "w") as f:
        f.write(f'state_dir = "{run_dir}/state"\nhost = "bench"\n\n[s3]\nendpoint_url = "{proxy.url}"\n\n'
                f'[shares.mix]\nkey = "{os.urandom(32).hex()}"\npath = "{mix}"\nstore = "s3://latency/fs"\n')
    os.chmod(config, 0o600)
    fogsync = [sys.executable, "-c", WRAPPER, str(conns), "--config", config]
    proxy.delay = delay_ms / 1000
    out: dict = {}
    dest = os.path.join(run_dir, "restored")
    for phase, args in (("initial", ["sync", "mix"]), ("restore", ["restore", "mix", "--to", dest])):
        proxy.reset()
        start = time.perf_counter()
        p = subprocess.run(fogsync + args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        if p.returncode != 0:
            raise SystemExit(f"bench: fogsync {' '.join(args)} failed ({p.returncode}): {p.stderr[-1500:]}")
        out[phase] = (wall, proxy.requests, proxy.mean_in_flight(), proxy.most)
    problem = checked(dest, digests)
    if problem:
        print(f"WARNING: the restore at {delay_ms} ms differs from the mix: {problem}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delays", default="0,10,30,60", help="ms added to each request (default 0,10,30,60)")
    ap.add_argument("--connections", default="16", help="connection counts to compare, e.g. 8,16,32,64")
    ap.add_argument("--mb", type=float, default=200, help="size of the mix in MB (default 200)")
    ap.add_argument("--smoke", action="store_true", help="a 2 MB mix at 0 and 10 ms: seconds")
    args = ap.parse_args()
    if args.smoke:
        args.mb, args.delays = 2, "0,10"
    delays = [int(d) for d in args.delays.split(",")]
    connections = [int(c) for c in args.connections.split(",")]
    env = {k: v for k, v in os.environ.items() if k not in UNSET_AWS}
    env.update(FAKE_AWS)
    work = tempfile.mkdtemp(prefix="fogsync-s3-latency-")
    env.update(AWS_CONFIG_FILE=os.path.join(work, "absent"), AWS_SHARED_CREDENTIALS_FILE=os.path.join(work, "absent"))
    os.environ.update(FAKE_AWS)
    mix = os.path.join(work, "mix")
    digests = make_mix(mix, args.mb)
    size = sum(os.path.getsize(os.path.join(mix, rel)) for rel in digests)
    print(f"mix: {len(digests)} files, {size / 1e6:.1f} MB; load {os.getloadavg()[0]:.2f}", flush=True)
    moto = Moto()
    proxy = DelayProxy((moto.host, moto.port))
    rows = []
    try:
        for conns in connections:
            for delay in delays:
                got = one_run(moto, proxy, mix, digests, work, delay, conns, env)
                for phase, (wall, requests, mean, most) in got.items():
                    rows.append((conns, delay, phase, wall, requests, mean, most))
                    print(f"  connections {conns:3}  {delay:3} ms  {phase:8} {wall:7.2f} s  {size / 1e6 / wall:7.1f} MB/s"
                          f"  requests {requests:6}  in flight mean {mean:5.1f} max {most:3}", flush=True)
    finally:
        proxy.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = {(c, ph): w for c, d, ph, w, *_ in rows if d == 0}
    head = f"{'connections':<11} {'delay-ms':>8} {'phase':<8} {'wall-s':>7} {'MB/s':>7} {'x-0ms':>6} " \
           f"{'requests':>8} {'in-flight':>9} {'max':>4}"
    print("\n" + head + "\n" + " ".join("-" * len(h) for h in head.split()))
    for conns, delay, phase, wall, requests, mean, most in rows:
        ratio = base[(conns, phase)] / wall if (conns, phase) in base else float("nan")
        print(f"{conns:<11} {delay:>8} {phase:<8} {wall:7.2f} {size / 1e6 / wall:7.1f} {ratio:6.2f} "
              f"{requests:>8} {mean:9.1f} {most:>4}")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
