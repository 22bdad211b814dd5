#!/usr/bin/env python3
"""A big file's first sync and restore beside the two-core CPU floor (issue 25 goal 4).

    python bench/bigfloor.py [--file PATH | --size BYTES] [--runs 3]
                             [--fogsync LABEL=CMD ...] [--smoke]

The floor is the crypto the format makes a sync (or a restore) do, at the
per-core rates measured in the same run, divided by the cores:

    sync     Twofish-CTR of the plaintext, SHA-256 of the plaintext (the
             listing's ``sha256``), HMAC-SHA256 of the sealed blob, SHA-256
             of every 64 KiB block (its name); block lists included
    restore  the same four: every block read is checked against its name,
             the tag verified, the plaintext decrypted and its SHA-256
             checked against the listing's

Rates are those ``bench/seal.py`` measures (one thread each: raw libgcrypt
Twofish-CTR under ``SPLIT_MIN``, hashlib SHA-256 and HMAC-SHA256 fed 1 MiB
pieces, and SHA-256 of whole 64 KiB blocks for the names), taken just
before each timed command, best of ``--repeat``. Reading the file, writing
32,768 block files and making them durable are not in the floor: they are
what the goal's 1.25x leaves room for.

Each fogsync (``--fogsync LABEL=CMD``, repeatable: e.g. main's checkout
beside this one; default: this venv's) gets, per run, a fresh config,
state dir and local store (the file's folder is the share), the file read
once just before (warm page cache) and ``sync(2)``: then ``sync NAME`` and
``restore NAME --to DIR`` are timed as child processes (each fogsync's
package byte-compiled first, as an install leaves it). The fogsyncs take
turns going first, run by run (ext4 favours the first of a pair; see
``bench/README.md``). Per command: wall time, CPU (user and sys of the child
and the children it reaped, from ``os.wait4``), the whole machine's busy CPU
over the same interval (``/proc/stat``: writeback threads, and any other
load), peak RSS, and the load average before it. The restored file is
checked (size and SHA-256) untimed. The last line gives the floor at
the best rates of the whole run too. Stores are kept until the end
(deleting 32,768 files right before the next create would be timed too).

``--smoke`` syncs a 6 MiB file once, with rates on 8 MiB: CI runs it so the
script cannot rot. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import seal  # noqa: E402  (bench/seal.py: the per-core rates)
from compare import compile_bytecode  # noqa: E402

from fogsync.format import blocks, crypto  # noqa: E402

DEFAULT_FILE = "/work/bench-corpus/full/big/big.bin"
MIB = 1 << 20
BPTR_LEN = blocks.BPTR_LEN
OPS = ("twofish", "sha256", "hmac", "blockhash")
SMOKE_SIZE = 6 * MIB


# --- the floor ---------------------------------------------------------------------------


def blob_lengths(n: int) -> list[tuple[int, int]]:
    """(plaintext, sealed) bytes of each blob a file of ``n`` bytes becomes: the content, then its block lists."""
    out = [(n, n + crypto.MIN_BLOB_LEN)]
    while out[-1][1] > blocks.BLOCK_SIZE:
        pieces = -(-out[-1][1] // blocks.BLOCK_SIZE)
        plain = pieces * BPTR_LEN
        out.append((plain, plain + crypto.MIN_BLOB_LEN))
    return out


def format_bytes(n: int) -> dict[str, int]:
    """Bytes each operation of the floor goes over, for a file of ``n`` bytes (sync and restore alike)."""
    lengths = blob_lengths(n) if n else []
    return {
        "twofish": sum(plain for plain, _ in lengths),
        "sha256": n,
        "hmac": sum(sealed - crypto.TAG_LEN for _, sealed in lengths),
        "blockhash": sum(sealed for _, sealed in lengths),
    }


def block_hashing(data: bytes) -> float:
    """SHA-256 of each whole 64 KiB block, as a block's name is computed."""
    view = memoryview(data)

    def run() -> None:
        for i in range(0, len(view), blocks.BLOCK_SIZE):
            hashlib.sha256(view[i : i + blocks.BLOCK_SIZE]).digest()

    return seal._mbps(len(data), seal._timed(run))


@dataclass
class Rates:
    """Per-core MB/s (10^6 bytes a second) of each operation of the floor."""

    twofish: float
    sha256: float
    hmac: float
    blockhash: float

    def floor_cpu(self, n: int) -> float:
        """CPU seconds the floor's operations take on one core for a file of ``n`` bytes."""
        nbytes = format_bytes(n)
        return sum(nbytes[op] / (getattr(self, op) * 1e6) for op in OPS)

    def __str__(self) -> str:
        return ", ".join(f"{op} {getattr(self, op):.0f}" for op in OPS) + " MB/s"


def measure_rates(data: bytes, repeat: int) -> Rates:
    key = os.urandom(32)
    return Rates(
        twofish=seal._best(repeat, lambda: seal.raw_twofish(key, data)),
        sha256=seal._best(repeat, lambda: seal.sha256(data)),
        hmac=seal._best(repeat, lambda: seal.hmac_sha256(hmac.new(key, digestmod="sha256").digest(), data)),
        blockhash=seal._best(repeat, lambda: block_hashing(data)),
    )


# --- running fogsync ---------------------------------------------------------------------


def busy_ticks() -> int:
    """Clock ticks every CPU of the machine has spent busy (all but idle and iowait) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Timed:
    wall: float
    user: float  # of the child and what it reaped
    sys: float
    busy: float  # the machine's busy CPU seconds over the same interval
    rss_mb: float
    load: str
    ok: bool


def run_timed(cmd: list[str], logfile: str) -> Timed:
    os.sync()
    before = load()
    with open(logfile, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        ticks, start = busy_ticks(), time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        busy = (busy_ticks() - ticks) / os.sysconf("SC_CLK_TCK")
    ok = os.waitstatus_to_exitcode(status) == 0
    if not ok:
        with open(logfile, "rb") as f:
            print(f"  FAILED: {' '.join(cmd)}\n  ... {f.read()[-800:].decode(errors='replace')}", file=sys.stderr)
    return Timed(wall, usage.ru_utime, usage.ru_stime, busy, usage.ru_maxrss / 1024, before, ok)


def run_quiet(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def warm(path: str) -> None:
    buf = bytearray(MIB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def fogsync_turn(cmd: list[str], folder: str, work: str, name: str) -> tuple[Timed, Timed | None, str]:
    """A fresh share of ``folder`` in ``work``: the timed sync, the timed restore, and where it restored to."""
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        f.write(f'state_dir = "{work}/state"\nhost = "bench"\n')
    os.chmod(config, 0o600)
    base = [*cmd, "--config", config]
    run_quiet([*base, "add-share", name, os.urandom(32).hex(), "--path", folder,
               "--store", os.path.join(work, "store")])
    logfile = os.path.join(work, "log.txt")
    synced = run_timed([*base, "sync", name], logfile)
    dest = os.path.join(work, "restored")
    restored = run_timed([*base, "restore", name, "--to", dest], logfile) if synced.ok else None
    return synced, restored, dest


# --- the table ---------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    op: str
    run: int
    timed: Timed
    floor: float  # wall seconds: the floor's CPU over the cores
    rates: Rates

    def cells(self) -> tuple:
        t = self.timed
        return (self.label, self.op, self.run + 1, f"{t.wall:.2f}", f"{t.user:.2f}", f"{t.sys:.2f}", f"{t.busy:.2f}",
                f"{self.floor:.2f}", f"{t.wall / self.floor:.2f}", f"{t.rss_mb:.0f}",
                f"{self.rates.twofish:.0f}", t.load)


HEAD = ("fogsync", "op", "run", "wall-s", "user-s", "sys-s", "busy-s", "floor-s", "x-floor", "rss-MB", "tf-MB/s",
        "load")


def render(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in [HEAD, *rows]) for i in range(len(HEAD))]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*HEAD), fmt.format(*("-" * w for w in widths))]
    return "\n".join(lines + [fmt.format(*r) for r in rows])


def medians(rows: list[Row]) -> list[tuple]:
    out = []
    for key in dict.fromkeys((r.label, r.op) for r in rows):
        group = [r for r in rows if (r.label, r.op) == key]
        wall = statistics.median(r.timed.wall for r in group)
        floor = statistics.median(r.floor for r in group)
        out.append((*key, "med", f"{wall:.2f}", f"{statistics.median(r.timed.user for r in group):.2f}",
                    f"{statistics.median(r.timed.sys for r in group):.2f}",
                    f"{statistics.median(r.timed.busy for r in group):.2f}", f"{floor:.2f}",
                    f"{statistics.median(r.timed.wall / r.floor for r in group):.2f}",
                    f"{statistics.median(r.timed.rss_mb for r in group):.0f}",
                    f"{statistics.median(r.rates.twofish for r in group):.0f}", ""))
    return out


# --- main --------------------------------------------------------------------------------


def default_fogsync() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "fogsync")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "fogsync"]


def compile_other(cmd: list[str]) -> None:
    """Byte-compile the fogsync a console script in another venv runs, as its install would have."""
    python = os.path.join(os.path.dirname(cmd[0]), "python")
    if len(cmd) == 1 and os.path.exists(python):
        code = "import compileall, os, fogsync; compileall.compile_dir(os.path.dirname(fogsync.__file__), quiet=1)"
        subprocess.run([python, "-c", code], check=True)


def parse_fogsyncs(values: list[str] | None) -> list[tuple[str, list[str]]]:
    if not values:
        return [("this", default_fogsync())]
    out = []
    for value in values:
        label, sep, cmd = value.partition("=")
        if not sep or not label or not cmd.strip():
            raise SystemExit(f"bigfloor: --fogsync takes LABEL=CMD, not {value!r}")
        out.append((label, cmd.split()))
    return out


def make_file(folder: str, size: int) -> str:
    """A file of ``size`` random bytes in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "big.bin")
    with open(path, "wb") as f:
        for start in range(0, size, MIB):
            f.write(os.urandom(min(MIB, size - start)))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help=f"the big file (default {DEFAULT_FILE}); its folder is the share")
    ap.add_argument("--size", type=int, help="make a random file of this many bytes instead")
    ap.add_argument("--runs", type=int, default=3, help="runs per fogsync (default 3)")
    ap.add_argument("--fogsync", action="append", metavar="LABEL=CMD",
                    help="a fogsync to time (repeatable; default: this venv's, as 'this')")
    ap.add_argument("--rate-mib", type=int, default=64, help="MiB of data the rates are measured on (default 64)")
    ap.add_argument("--repeat", type=int, default=3, help="rate measurements, best kept (default 3)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="cores the floor is divided by")
    ap.add_argument("--work", help="where stores and restores go (default: a temp dir under /tmp)")
    ap.add_argument("--smoke", action="store_true", help=f"a {SMOKE_SIZE // MIB} MiB file, once (CI)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.runs, args.rate_mib, args.repeat = args.size or SMOKE_SIZE, 1, 8, 1
    fogsyncs = parse_fogsyncs(args.fogsync)
    compile_bytecode()  # this checkout's, as an install leaves it
    for _label, cmd in fogsyncs:
        compile_other(cmd)
    work_root = tempfile.mkdtemp(prefix="bigfloor-", dir=args.work)
    try:
        if args.size is not None:
            path = make_file(os.path.join(work_root, "share"), args.size)
        else:
            path = args.file or DEFAULT_FILE
            if not os.path.isfile(path):
                raise SystemExit(f"bigfloor: no file {path}: give --file, --size BYTES, or build the corpus "
                                 "(python bench/make_corpus.py DIR --only big)")
        size = os.path.getsize(path)
        rows = bench(path, fogsyncs, args, work_root)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    nbytes = format_bytes(size)
    print(f"big file {size / MIB:.1f} MiB ({size} bytes); floor over {args.cores} cores, per-core rates best of "
          f"{args.repeat} on {args.rate_mib} MiB just before each command")
    print("bytes each operation goes over: " + ", ".join(f"{op} {nbytes[op]}" for op in OPS))
    print(render([r.cells() for r in rows] + medians(rows)))
    print(f"x-floor = wall / floor-s; floor-s = the floor's CPU at the rates of that command's turn / {args.cores} "
          "cores; user-s, sys-s = fogsync's CPU; busy-s = the whole machine's busy CPU over the command; "
          "tf-MB/s = Twofish-CTR on one core; load = load average before the command")
    if rows:
        best = Rates(*(max(getattr(r.rates, op) for r in rows) for op in OPS))
        floor = best.floor_cpu(size) / args.cores
        print(f"at the run's best rates ({best}) the floor is {floor:.2f} s ({floor * args.cores:.2f} s of CPU); "
              "other load only ever slows a rate down")
    bad = [r for r in rows if not r.timed.ok]
    return 1 if bad else 0


def bench(path: str, fogsyncs: list[tuple[str, list[str]]], args, work_root: str) -> list[Row]:
    folder, size = os.path.dirname(os.path.abspath(path)), os.path.getsize(path)
    expected = file_sha256(path)
    data = os.urandom(args.rate_mib * MIB)
    rows: list[Row] = []
    for run in range(args.runs):
        order = fogsyncs if run % 2 == 0 else fogsyncs[::-1]
        for label, cmd in order:
            work = tempfile.mkdtemp(prefix=f"{label}-{run}-", dir=work_root)
            warm(path)
            rates = measure_rates(data, args.repeat)
            floor = rates.floor_cpu(size) / args.cores
            synced, restored, dest = fogsync_turn(cmd, folder, work, "big")
            rows.append(Row(label, "initial", run, synced, floor, rates))
            print(f"  {label} run {run + 1}: initial {synced.wall:.2f} s (cpu {synced.user + synced.sys:.2f} s, "
                  f"floor {floor:.2f} s, load {synced.load}); rates {rates}", file=sys.stderr, flush=True)
            if restored is None:
                continue
            rows.append(Row(label, "restore", run, restored, floor, rates))
            print(f"  {label} run {run + 1}: restore {restored.wall:.2f} s (cpu {restored.user + restored.sys:.2f} s)",
                  file=sys.stderr, flush=True)
            if restored.ok:
                check_restored(os.path.join(dest, os.path.basename(path)), size, expected)
                os.unlink(os.path.join(dest, os.path.basename(path)))  # one inode: nothing for the next create
    return rows


def check_restored(path: str, size: int, expected: str) -> None:
    if os.path.getsize(path) != size or file_sha256(path) != expected:
        raise SystemExit(f"bigfloor: the restored {path} differs from the original")


if __name__ == "__main__":
    sys.exit(main())
