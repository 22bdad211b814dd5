#!/usr/bin/env python3
"""fogsync beside restic, borg and rclone crypt on the issue's corpora.

    python bench/compare.py [--runs 3] [--only mixed,small,big,many,many1m]
                            [--tools fogsync,restic,borg,rclone] [--smoke]

Builds the corpora with ``bench/make_corpus.py`` into a cache directory
(``bench/corpus/`` by default, git-ignored; reused between runs), installs
restic, rclone and borgbackup from Debian's packages when missing (not with
``--smoke`` or ``--no-install``), then for each corpus runs every tool
through the same sequence, each run on a fresh repository/store:

    initial   first backup/sync of the corpus into an empty local repository
    no-op     the same again, nothing changed
    restore   the newest snapshot into an empty directory (checked against the
              corpus: file count, sizes, and content of a sample)
    join      a second host's first sync of the share into an empty folder,
              checked as a restore is; a backup tool has no second host, and
              its row repeats its restore, which is how another machine gets
              the files
    change    (small corpus only) one file appended to, then a backup/sync;
              the file is put back afterwards

By default the issue's three corpora (mixed, small, big) run; ``--only many``
adds 300,000 files of 0-1 KiB in 3,000 directories and ``--only many1m`` the
same recipe at 1,000,000 files (the slow mode), which take minutes a tool.

Nothing is deleted while the tools run: a tool's work dir is moved aside
and the pile is deleted at the end, or, when the disk would not hold it
all, after every tool of a corpus and run is done, followed by ``sync(2)``
and a 361 s wait. On ext4 without a journal (these machines), an inode freed
less than 60 s ago (360 s while its inode-table block is dirty, which new
files nearby make it) is skipped by every file create, and each skip costs
a buffer-cache lookup: a tool that creates thousands of files (fogsync's one
object per 64 KiB block, any restore of the small corpus) right after
another tool's 50,000-file cleanup spends most of its time in
``recently_deleted()``, which measures the cleanup, not the tool. (A 61 s
wait was not enough: mixed-corpus restores taken seconds to a few minutes
after a cleanup spent 14-38% of their CPU there, and none 6 minutes after.)

fogsync's package is byte-compiled first, as a ``pip install`` leaves it
(``compile_bytecode``). Each command runs as a child of a small launcher
process (``Launcher``), timed with a monotonic clock and reaped with
``os.wait4`` for its peak RSS (ru_maxrss), and with every process it started
for the CPU of the whole tree (user + system, the ``cpu s`` column).
``sync(2)`` runs before every timed command, and the corpus is read once
(warm page cache) before each tool's turn; the tools take turns going first,
run by run. The table shows the median over
``--runs``, MB/s as corpus bytes per wall second (initial and restore only),
and each tool's wall time as a multiple of restic's in the same run
("x restic"), then how fast the machine itself was before each corpus and
at the end (raw Twofish-CTR on one thread, and a step of CPython: ``gauge``).

``--smoke`` makes corpora of a few MB with the same recipe (``--scale``,
default 0.002) and runs fogsync and whichever peers are installed: CI uses it
so the script cannot rot. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CORPUS = os.path.join(HERE, "make_corpus.py")
CORPORA = ("mixed", "small", "big")  # what runs without --only
MORE_CORPORA = ("many", "many1m")  # many small files: on request only (minutes a tool)
TOOLS = ("fogsync", "restic", "borg", "rclone")
SMOKE_SCALE = 0.002
PASSWORD = "fogsync-bench-password"
OPS = ("initial", "no-op", "change", "restore", "join")

# The goal column (wall seconds), for the full corpora only.
GOALS = {
    ("mixed", "initial"): 4.95, ("mixed", "no-op"): 0.90, ("mixed", "restore"): 4.97,
    ("small", "initial"): 2.88, ("small", "no-op"): 0.8, ("small", "change"): 0.8,
    ("big", "initial"): 8.97, ("big", "no-op"): 0.2,
}
DEBIAN_PACKAGES = {"restic": "restic", "rclone": "rclone", "borg": "borgbackup"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- corpora ---------------------------------------------------------------------------


def corpus_dirs(cache: str, names: list[str], scale: float) -> dict[str, str]:
    """Build (once, in one make_corpus run) and return the corpus directories.

    A corpus counts as built once its stamp file exists; an unfinished one is redone.
    """
    base = os.path.join(cache, "full" if scale == 1 else f"scale-{scale:g}")
    paths = {n: os.path.join(base, n) for n in names}
    todo = [n for n in names if not (os.path.exists(os.path.join(base, f".ok-{n}")) and os.path.isdir(paths[n]))]
    if todo:
        os.makedirs(base, exist_ok=True)
        for n in todo:
            if os.path.exists(paths[n]):
                shutil.rmtree(paths[n])
        log(f"building corpora {','.join(todo)} (scale {scale:g}) in {base} ...")
        cmd = [sys.executable, MAKE_CORPUS, base, "--only", ",".join(todo)]
        if scale != 1:
            cmd += ["--scale", repr(scale)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        for n in todo:
            open(os.path.join(base, f".ok-{n}"), "w").close()
    return paths


def corpus_files(path: str) -> dict[str, int]:
    """relative path -> size of every regular file (but fogsync's folder marker, never synced)."""
    out = {}
    for dp, _dns, fns in os.walk(path):
        for fn in fns:
            full = os.path.join(dp, fn)
            if dp == path and fn == ".fogsync-folder":
                continue
            out[os.path.relpath(full, path)] = os.lstat(full).st_size
    return out


# How fast this machine is right now, with nothing of fogsync's: raw Twofish-CTR on one thread
# through libgcrypt (what fogsync's big files wait for), and CPython running a small step of a call,
# a tuple and a dict update (what its many small files wait for). The host's other tenants move
# both, and not alike: on 2026-12-04 Twofish ran 25% below the sessions before, while fogsync's
# Python-bound small-corpus sync took 1.8x its time of the session before (restic's 1.3x). Both
# weigh on fogsync (Python, Twofish) more than on restic (Go, AES-NI), so the table says what the
# machine was doing while it was taken.
_GAUGE = """
import ctypes, ctypes.util, time

def python_step_ns():
    def step(i, d):
        k = (i & 1023, "x")
        d[k] = d.get(k, 0) + 1
    d, best = {}, float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for i in range(200_000):
            step(i, d)
        best = min(best, (time.perf_counter() - start) / 200_000 * 1e9)
    return round(best)

def twofish_mb_s():
    lib = ctypes.CDLL(ctypes.util.find_library("gcrypt") or "libgcrypt.so.20")
    lib.gcry_check_version.restype = ctypes.c_char_p
    lib.gcry_check_version(None)
    h = ctypes.c_void_p()
    if lib.gcry_cipher_open(ctypes.byref(h), 10, 6, 0) or lib.gcry_cipher_setkey(h, bytes(32), 32):
        return "-"
    buf = ctypes.create_string_buffer(1 << 20)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(32):
            lib.gcry_cipher_encrypt(h, buf, 1 << 20, None, 0)
        best = max(best, 32 * (1 << 20) / (time.perf_counter() - start) / 1e6)
    return round(best)

try:
    mb_s = twofish_mb_s()
except OSError:
    mb_s = "-"
print(mb_s, python_step_ns())
"""


class Gauge(NamedTuple):
    twofish_mb_s: int | None  # None without libgcrypt
    python_step_ns: int

    def __str__(self) -> str:
        return f"{self.twofish_mb_s or '-'} MB/s / {self.python_step_ns} ns"


def gauge() -> Gauge | None:
    """How fast this machine is now (``_GAUGE``), or None if it could not be measured."""
    try:
        out = subprocess.run([sys.executable, "-c", _GAUGE], capture_output=True, text=True, timeout=120)
        mb_s, step_ns = out.stdout.split()
        return Gauge(None if mb_s == "-" else int(mb_s), int(step_ns)) if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def warm(path: str) -> None:
    """Read every file once, so the timed runs see a warm page cache."""
    buf = bytearray(1 << 20)
    for rel in corpus_files(path):
        with open(os.path.join(path, rel), "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def verify_restore(corpus: str, files: dict[str, int], dest: str, sample: int = 300) -> str | None:
    """None if ``dest`` holds the corpus (count, sizes, a content sample), else what differs."""
    got = corpus_files(dest)
    if got.keys() != files.keys():
        missing = len(files.keys() - got.keys())
        extra = len(got.keys() - files.keys())
        return f"{len(got)} files restored, corpus has {len(files)} ({missing} missing, {extra} extra)"
    wrong = [p for p, n in files.items() if got[p] != n]
    if wrong:
        return f"{len(wrong)} files have the wrong size, e.g. {wrong[0]}"
    names = sorted(files)
    step = max(1, len(names) // sample)
    picked = set(names[::step]) | {max(names, key=files.__getitem__)}
    for p in sorted(picked):
        if not filecmp.cmp(os.path.join(corpus, p), os.path.join(dest, p), shallow=False):
            return f"content differs: {p}"
        m1 = os.lstat(os.path.join(corpus, p)).st_mtime_ns // 1_000_000_000
        m2 = os.lstat(os.path.join(dest, p)).st_mtime_ns // 1_000_000_000
        if m1 != m2:
            return f"mtime differs: {p}"
    return None


class OneFileChange:
    """Append to one file of the corpus for the 'change' op, and put it back."""

    def __init__(self, corpus: str, files: dict[str, int]) -> None:
        names = sorted(files)
        self.path = os.path.join(corpus, names[len(names) // 2])
        with open(self.path, "rb") as f:
            self.data = f.read()
        st = os.stat(self.path)
        self.times = (st.st_atime_ns, st.st_mtime_ns)

    def __enter__(self) -> None:
        with open(self.path, "ab") as f:
            f.write(b"\nchanged by bench/compare.py\n")

    def __exit__(self, *exc) -> None:
        with open(self.path, "wb") as f:
            f.write(self.data)
        os.utime(self.path, ns=self.times)


# --- running and measuring ---------------------------------------------------------------


@dataclass
class Measure:
    wall: float
    rss_mb: float
    ok: bool
    cpu: float | None = None  # user + system seconds of the command and every process it started


# Every timed command starts from this small process, not from compare.py: Linux carries the
# high-water RSS of the process that execs into the new program's ru_maxrss, and compare.py
# holds the corpus's file list (on many1m, 800 MB at a restore). The launcher is also the
# subreaper of what the command starts (PR_SET_CHILD_SUBREAPER), so fogsync's workers, children
# of its forkserver that nobody waits for, count in the CPU column.
_LAUNCHER = r"""
import ctypes, json, os, resource, sys, time

try:
    reaper = ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
except (OSError, AttributeError):
    reaper = False

def children_cpu():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime

for line in sys.stdin:
    job = json.loads(line)
    cpu_before = children_cpu()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(job["cwd"])
            out = os.open(job["log"], os.O_WRONLY | os.O_APPEND)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.execvpe(job["cmd"][0], job["cmd"], job["env"])
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    while reaper:
        try:
            os.wait()
        except ChildProcessError:
            break
    cpu = children_cpu() - cpu_before if reaper else None
    print(json.dumps([wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status), cpu]), flush=True)
"""


class Launcher:
    """The small process timed commands start from (``_LAUNCHER``)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, cmd: list[str], env: dict, cwd: str, logfile: str) -> tuple[float, int, int, float | None]:
        """(wall s, peak RSS KiB, exit code, CPU s of the whole tree or None)."""
        self.proc.stdin.write(json.dumps({"cmd": cmd, "env": env, "cwd": cwd, "log": logfile}) + "\n")
        self.proc.stdin.flush()
        wall, rss_kib, code, cpu = json.loads(self.proc.stdout.readline())
        return wall, rss_kib, code, cpu

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def run_timed(cmd: list[str], env: dict, cwd: str, logfile: str) -> Measure:
    """Run ``cmd`` from the launcher; wall seconds, its peak RSS from wait4, and the CPU of its whole tree."""
    os.sync()
    with open(logfile, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
    wall, rss_kib, code, cpu = LAUNCHER.run(cmd, env, cwd, logfile)
    if code != 0:
        with open(logfile, "rb") as f:
            tail = f.read()[-1500:].decode(errors="replace")
        log(f"  FAILED (exit {code}): {' '.join(cmd)}\n  ... {tail.strip()[-800:]}")
    return Measure(wall, rss_kib / 1024, code == 0, cpu)


def run_quiet(cmd: list[str], env: dict, cwd: str | None = None, input: str | None = None) -> str:
    r = subprocess.run(cmd, env=env, cwd=cwd, input=input, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return r.stdout


# --- the tools ---------------------------------------------------------------------------


class Tool:
    """One backup/sync program: setup (untimed), then backup and restore commands."""

    name = ""
    binary = ""

    def __init__(self, corpus: str, name: str, work: str) -> None:
        self.corpus, self.corpus_name, self.work = corpus, name, work
        self.env = dict(os.environ)
        self.logfile = os.path.join(work, "log.txt")

    @classmethod
    def available(cls, args) -> bool:
        return shutil.which(cls.binary) is not None

    def setup(self) -> None:
        pass

    def backup(self) -> Measure:
        raise NotImplementedError

    def restore(self, dest: str) -> Measure:
        raise NotImplementedError

    def join(self, dest: str) -> Measure | None:
        """A second host's first sync into ``dest``; None for a tool with no second host (its restore is that)."""
        return None

    def run(self, cmd: list[str], cwd: str | None = None) -> Measure:
        return run_timed(cmd, self.env, cwd or self.work, self.logfile)


def fogsync_command(override: str | None = None) -> list[str]:
    """How to run fogsync: ``override``, else the console script beside this Python."""
    if override:
        return override.split()
    script = os.path.join(os.path.dirname(sys.executable), "fogsync")
    if os.path.exists(script):
        return [script]
    found = shutil.which("fogsync")
    return [found] if found else [sys.executable, "-m", "fogsync"]


def compile_bytecode() -> None:
    """Byte-compile the fogsync package this Python imports, as ``pip install .`` does.

    Run from an editable install with PYTHONDONTWRITEBYTECODE=1 (which these
    machines set), every command would compile each module again: 41 ms of
    imports out of 99, which a user's install does not pay.
    """
    import importlib.util

    spec = importlib.util.find_spec("fogsync")
    if spec is None or not spec.submodule_search_locations:
        log("note: fogsync is not importable here; its bytecode is not compiled ahead")
        return
    subprocess.run([sys.executable, "-m", "compileall", "-q", *spec.submodule_search_locations], check=True)


class Fogsync(Tool):
    name = "fogsync"

    @classmethod
    def available(cls, args) -> bool:
        return True

    def setup(self) -> None:
        self.cmd = fogsync_command(ARGS.fogsync)
        self.config = os.path.join(self.work, "config.toml")
        with open(self.config, "w") as f:
            f.write(f'state_dir = "{self.work}/state"\nhost = "bench"\n')
        os.chmod(self.config, 0o600)
        self.key = os.urandom(32).hex()
        self.add_share(self.config, self.corpus)

    def add_share(self, config: str, folder: str) -> None:
        run_quiet(self.cmd + ["--config", config, "add-share", self.corpus_name, self.key,
                              "--path", folder, "--store", os.path.join(self.work, "store")], self.env)

    def backup(self) -> Measure:
        return self.run(self.cmd + ["--config", self.config, "sync", self.corpus_name])

    def restore(self, dest: str) -> Measure:
        return self.run(self.cmd + ["--config", self.config, "restore", self.corpus_name, "--to", dest])

    def join(self, dest: str) -> Measure:
        config = os.path.join(self.work, "config-2.toml")
        with open(config, "w") as f:
            f.write(f'state_dir = "{self.work}/state-2"\nhost = "bench-2"\n')
        os.chmod(config, 0o600)
        os.makedirs(dest)
        self.add_share(config, dest)
        return self.run(self.cmd + ["--config", config, "sync", self.corpus_name])


class Restic(Tool):
    name = binary = "restic"

    def setup(self) -> None:
        self.env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=os.path.join(self.work, "repo"),
                        RESTIC_CACHE_DIR=os.path.join(self.work, "cache"))
        run_quiet(["restic", "init", "-q"], self.env)

    def backup(self) -> Measure:
        return self.run(["restic", "backup", "-q", "."], cwd=self.corpus)

    def restore(self, dest: str) -> Measure:
        return self.run(["restic", "restore", "latest", "-q", "--target", dest])


class Borg(Tool):
    name, binary = "borg", "borg"

    def setup(self) -> None:
        self.repo = os.path.join(self.work, "repo")
        self.env.update(BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=os.path.join(self.work, "base"),
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes", BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes")
        run_quiet(["borg", "init", "--encryption=repokey", self.repo], self.env)
        self.archives = 0

    def backup(self) -> Measure:
        self.archives += 1
        return self.run(["borg", "create", "--compression", "lz4", f"{self.repo}::a{self.archives}", "."],
                        cwd=self.corpus)

    def restore(self, dest: str) -> Measure:
        os.makedirs(dest, exist_ok=True)
        return self.run(["borg", "extract", f"{self.repo}::a{self.archives}"], cwd=dest)


class Rclone(Tool):
    name = binary = "rclone"

    def setup(self) -> None:
        def obscure(word: str) -> str:
            return run_quiet(["rclone", "obscure", word], self.env).strip()

        conf = os.path.join(self.work, "rclone.conf")
        store = os.path.join(self.work, "store")
        os.makedirs(store)
        with open(conf, "w") as f:
            f.write(f"[secret]\ntype = crypt\nremote = {store}\npassword = {obscure(PASSWORD)}\n"
                    f"password2 = {obscure(PASSWORD + '-salt')}\n")
        self.env["RCLONE_CONFIG"] = conf

    def backup(self) -> Measure:
        return self.run(["rclone", "sync", "-q", self.corpus, "secret:"])

    def restore(self, dest: str) -> Measure:
        return self.run(["rclone", "copy", "-q", "secret:", dest])


TOOL_CLASSES = {c.name: c for c in (Fogsync, Restic, Borg, Rclone)}


def install_missing(tools: list[str]) -> None:
    missing = [t for t in tools if t in DEBIAN_PACKAGES and shutil.which(t) is None]
    if not missing:
        return
    pkgs = [DEBIAN_PACKAGES[t] for t in missing]
    log(f"installing {' '.join(pkgs)} from Debian's packages ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    try:
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        if subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], **quiet).returncode != 0:
            for p in pkgs:  # one at a time: keep whichever installs
                subprocess.run(["apt-get", "install", "-y", "-q", p], **quiet)
    except OSError as e:
        log(f"cannot run apt-get: {e}")
    for t in missing:
        if shutil.which(t) is None:
            log(f"warning: {t} could not be installed; running without it")


# --- the benchmark ---------------------------------------------------------------------------


@dataclass
class Result:
    corpus: str
    op: str
    tool: str
    walls: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    failed: int = 0
    bad_restore: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float | None:
        return statistics.median(self.walls) if self.walls else None

    @property
    def peak(self) -> float | None:
        return statistics.median(self.rss) if self.rss else None

    @property
    def cpu(self) -> float | None:
        return statistics.median(self.cpus) if self.cpus else None


RECENTLY_DELETED_S = 60 + 300 + 1  # ext4 (no journal): RECENTCY_MIN + RECENTCY_DIRTY in fs/ext4/ialloc.c


class Trash:
    """Directories to delete later, away from any timed command (see the module docstring)."""

    def __init__(self, work_root: str) -> None:
        self.root = os.path.join(work_root, "trash")
        self._serial = 0

    def add(self, path: str) -> None:
        if not os.path.exists(path):
            return
        os.makedirs(self.root, exist_ok=True)
        self._serial += 1
        os.rename(path, os.path.join(self.root, f"{self._serial}-{os.path.basename(path)}"))

    def empty(self, wait: bool, unless_room_for: int = 0) -> None:
        """Delete the pile, unless the disk still has ``unless_room_for`` bytes to spare besides it."""
        if not os.path.exists(self.root):
            return
        if unless_room_for and shutil.disk_usage(self.root).free > unless_room_for:
            return
        shutil.rmtree(self.root, ignore_errors=True)
        os.sync()
        if wait:
            log(f"  (deleted the work dirs; waiting {RECENTLY_DELETED_S} s before the next timed command)")
            time.sleep(RECENTLY_DELETED_S)


def bench_corpus(name: str, corpus: str, tools: list[str], runs: int, work_root: str,
                 results: dict, trash: Trash) -> None:
    files = corpus_files(corpus)
    change = OneFileChange(corpus, files) if name == "small" else None

    def record(tool: str, op: str, m: Measure) -> None:
        r = results.setdefault((name, op, tool), Result(name, op, tool))
        if m.ok:
            r.walls.append(m.wall)
            r.rss.append(m.rss_mb)
            if m.cpu is not None:
                r.cpus.append(m.cpu)
        else:
            r.failed += 1
        cpu = f"  cpu {m.cpu:7.2f} s" if m.cpu is not None else ""
        log(f"  {name:6} {op:8} {tool:8} {m.wall:8.2f} s  {m.rss_mb:7.1f} MB{cpu}" + ("" if m.ok else "  FAILED"))

    def verify(tool: str, op: str, m: Measure, dest: str) -> None:
        if m.ok and os.path.isdir(dest):
            problem = verify_restore(corpus, files, dest)
            if problem:
                log(f"  WARNING: {tool} {op} of {name} differs from the corpus: {problem}")
                results[(name, op, tool)].bad_restore.append(problem)
            trash.add(dest)

    for run in range(runs):
        log(f"corpus {name}: run {run + 1}/{runs}")
        for tool in tools if run % 2 == 0 else tools[::-1]:  # neither tool always goes first
            warm(corpus)  # just before: this machine pages out cold page cache (DAMON)
            work = tempfile.mkdtemp(prefix=f"{tool}-{name}-", dir=work_root)
            try:
                t = TOOL_CLASSES[tool](corpus, name, work)
                t.setup()
                m = t.backup()
                record(tool, "initial", m)
                if not m.ok:
                    continue
                record(tool, "no-op", t.backup())
                dest = os.path.join(work, "restored")
                m = t.restore(dest)
                record(tool, "restore", m)
                verify(tool, "restore", m, dest)
                joined = os.path.join(work, "joined")
                m = t.join(joined) or m
                record(tool, "join", m)
                verify(tool, "join", m, joined)
                if change is not None:
                    with change:
                        m = t.backup()
                    record(tool, "change", m)
            except Exception as e:  # a tool that cannot even set up: report and go on
                log(f"  {tool} on {name} failed: {e}")
                results.setdefault((name, "initial", tool), Result(name, "initial", tool)).failed += 1
            finally:
                if not ARGS.keep:
                    trash.add(work)
        # Room for another round of every tool (repository and restore, about 2x the corpus each) and 10 GB more.
        trash.empty(wait=not ARGS.smoke, unless_room_for=2 * len(tools) * sum(files.values()) + 10 * 10**9)


def table(results: dict, sizes: dict[str, int], tools: list[str], smoke: bool) -> str:
    head = ("corpus", "op", "tool", "wall s", "MB/s", "peak RSS MB", "x restic", "goal s", "cpu s", "cpu x restic")
    rows = []
    for name in sizes:
        for op in OPS:
            restic = results.get((name, op, "restic"))
            for tool in tools:
                r = results.get((name, op, tool))
                if r is None:
                    continue
                if r.wall is None:
                    rows.append((name, op, tool, "failed", "-", "-", "-", "-", "-", "-"))
                    continue
                mbps = f"{sizes[name] / 1e6 / r.wall:.0f}" if op in ("initial", "restore", "join") else "-"
                ratio = f"{r.wall / restic.wall:.2f}" if restic and restic.wall else "-"
                goal = GOALS.get((name, op)) if tool == "fogsync" and not smoke else None
                flag = " !" if r.bad_restore else ""
                cpu = f"{r.cpu:.2f}" if r.cpu is not None else "-"
                cpu_ratio = f"{r.cpu / restic.cpu:.2f}" if r.cpu and restic and restic.cpu else "-"
                rows.append((name, op, tool, f"{r.wall:.2f}{flag}", mbps, f"{r.peak:.0f}", ratio,
                             f"{goal:.2f}" if goal else "-", cpu, cpu_ratio))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join("{:<%d}" % w if i < 3 else "{:>%d}" % w for i, w in enumerate(widths))
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


ARGS: argparse.Namespace
LAUNCHER: Launcher


def main(argv: list[str] | None = None) -> int:
    global ARGS, LAUNCHER
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per tool and corpus; the table shows the median")
    ap.add_argument("--only", default=",".join(CORPORA),
                    help=f"corpora (default {','.join(CORPORA)}; also {','.join(MORE_CORPORA)})")
    ap.add_argument("--tools", default=",".join(TOOLS), help="tools (fogsync,restic,borg,rclone)")
    ap.add_argument("--smoke", action="store_true", help="tiny corpora, installed peers only (CI)")
    ap.add_argument("--scale", type=float, help=f"corpus scale (default 1, or {SMOKE_SCALE} with --smoke)")
    ap.add_argument("--cache", default=os.path.join(HERE, "corpus"), help="corpus cache dir (default bench/corpus)")
    ap.add_argument("--work", help="where repositories and restores go (default: a temp dir in the cache)")
    ap.add_argument("--keep", action="store_true", help="keep repositories, stores and logs")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    ap.add_argument("--fogsync", help="command that runs fogsync (default: the venv's console script)")
    ap.add_argument("--json", help="also write the results to this file")
    ARGS = args = ap.parse_args(argv)

    corpora = [c for c in args.only.split(",") if c]
    tools = [t for t in args.tools.split(",") if t]
    for c in corpora:
        if c not in CORPORA + MORE_CORPORA:
            ap.error(f"unknown corpus {c!r}")
    for t in tools:
        if t not in TOOL_CLASSES:
            ap.error(f"unknown tool {t!r}")
    scale = args.scale or (SMOKE_SCALE if args.smoke else 1.0)
    if not (args.smoke or args.no_install):
        install_missing(tools)
    present = [t for t in tools if TOOL_CLASSES[t].available(args)]
    if "fogsync" in present and not args.fogsync:
        compile_bytecode()
    for t in sorted(set(tools) - set(present)):
        log(f"note: {t} is not installed; running without it")

    args.cache = os.path.abspath(args.cache)  # commands run in their work dirs
    os.makedirs(args.cache, exist_ok=True)
    work_root = args.work or tempfile.mkdtemp(prefix="work-", dir=args.cache)
    os.makedirs(work_root, exist_ok=True)
    results: dict = {}
    sizes: dict[str, int] = {}
    paths = corpus_dirs(args.cache, corpora, scale)
    trash = Trash(work_root)
    speeds: list[tuple[str, Gauge | None]] = []
    LAUNCHER = Launcher()
    try:
        for name, path in paths.items():
            sizes[name] = sum(corpus_files(path).values())
            speeds.append((f"before {name}", gauge()))
            log(f"machine: raw Twofish-CTR on one thread, a CPython step: {speeds[-1][1]}")
            bench_corpus(name, path, present, args.runs, work_root, results, trash)
        speeds.append(("at the end", gauge()))
    finally:
        LAUNCHER.close()
        trash.empty(wait=False)
        if not args.keep and not args.work:
            shutil.rmtree(work_root, ignore_errors=True)

    print(f"fogsync vs peers: {args.runs} run(s), median; scale {scale:g}; "
          f"corpora {', '.join(f'{n} {sizes[n] / 2**20:.1f} MiB' for n in sizes)}")
    print(table(results, sizes, present, args.smoke or scale != 1))
    print("machine, raw Twofish-CTR on one thread and a CPython step: "
          + "; ".join(f"{v} {when}" for when, v in speeds))
    bad = [r for r in results.values() if r.bad_restore]
    for r in bad:
        print(f"WARNING: {r.tool} restore of {r.corpus} differs from the corpus: {r.bad_restore[0]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"corpus": r.corpus, "op": r.op, "tool": r.tool, "walls": r.walls, "rss_mb": r.rss,
                        "cpu_s": r.cpus, "failed": r.failed, "bad_restore": r.bad_restore} for r in results.values()],
                      f, indent=1)
    failed = any(r.failed for r in results.values() if r.tool == "fogsync")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
