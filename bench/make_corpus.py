#!/usr/bin/env python3
"""Deterministic benchmark corpus generator (seeded RNG).

Usage: make_corpus.py OUTDIR [--seed N] [--only mixed,small,big,many,many1m] [--scale F]

Creates OUTDIR/mixed, OUTDIR/small, OUTDIR/big (the default), and on request
OUTDIR/many and OUTDIR/many1m, and prints file counts and byte totals (also
written to OUTDIR/MANIFEST.txt).

  mixed  ~1 GiB:
         * 10,000 small text files (1-64 KiB).  Real text files copied from this
           machine (/usr/share/doc, /usr/lib/python3.11, /usr/lib/python3,
           /usr/include, /usr/share), chosen with a seeded sample from the
           sorted candidate list (regular files, 1..64 KiB, no NUL byte in the
           first 8 KiB, not .gz/.xz/.bz2/.pyc/.so/.png).  If fewer candidates
           exist, generated text pads the count.  NOTE: the text portion is
           deterministic for a given machine/package set, not across machines.
         * 200 medium files 256 KiB-4 MiB: 1/3 text (slices of the real-text
           pool, compressible ~3-4x), 1/3 semi-compressible (each 4 KiB block =
           2 KiB random + 2 KiB zeros, ~2x), 1/3 random.  Sizes drawn uniform
           and rescaled so mixed totals ~1 GiB.
         * 4 incompressible random files of 100 MiB.
  small  50,000 files of 0-4096 bytes in nested dirs (depth 0..5, fanout 4);
         85% text-pool slices, 15% random bytes.
  big    one 2 GiB random file.
  many   300,000 files of 0-1024 bytes in 3,000 directories: 30 top
         directories holding 99 subdirectories each; each file goes into one
         of the 3,000 at random (about 100 a directory); 85% text-pool
         slices, 15% random bytes, as in small (this repository's addition).
  many1m the same recipe at 1,000,000 files in 10,000 directories (100 top
         directories of 99): the slow mode.

--scale F (default 1) shrinks every corpus by the same recipe: file counts
and byte sizes are multiplied by F (at least one file of each kind), so
``--scale 0.002`` makes corpora of a few MB for smoke runs.  At the default
scale the output is byte-for-byte what the unscaled recipe makes.

Random bytes come from SHAKE-256(seed || label || chunk#), so they are
reproducible everywhere.  All mtimes are set to fixed, seeded values.
"""
import argparse
import hashlib
import os
import random
import sys

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

TEXT_ROOTS = ["/usr/share/doc", "/usr/lib/python3.11", "/usr/lib/python3",
              "/usr/include", "/usr/share"]
BAD_EXT = (".gz", ".xz", ".bz2", ".zst", ".pyc", ".so", ".png", ".jpg",
           ".gif", ".mo", ".zip", ".jar", ".ttf", ".otf", ".woff", ".woff2")
BASE_MTIME = 1_700_000_000


def prand(seed, label, n):
    """n deterministic pseudo-random bytes (SHAKE-256, in 64 MiB pieces)."""
    out = []
    i = 0
    while n > 0:
        k = min(n, 64 * MiB)
        out.append(hashlib.shake_256(b"%d|%s|%d" % (seed, label.encode(), i)).digest(k))
        n -= k
        i += 1
    return b"".join(out)


def write_random_file(path, seed, label, n):
    with open(path, "wb") as f:
        i = 0
        while n > 0:
            k = min(n, 64 * MiB)
            f.write(hashlib.shake_256(b"%d|%s|%d" % (seed, label.encode(), i)).digest(k))
            n -= k
            i += 1


def set_mtime(path, rng):
    t = BASE_MTIME + rng.randrange(0, 365 * 86400)
    os.utime(path, (t, t))


def text_candidates():
    seen = set()
    cands = []
    for root in TEXT_ROOTS:
        for dp, dns, fns in os.walk(root):
            dns.sort()
            if "__pycache__" in dp:
                continue
            for fn in sorted(fns):
                p = os.path.join(dp, fn)
                if p in seen or fn.endswith(BAD_EXT) or ".so." in fn:
                    continue
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if not (os.path.isfile(p) and not os.path.islink(p)):
                    continue
                if not (1 * KiB <= st.st_size <= 64 * KiB):
                    continue
                try:
                    with open(p, "rb") as f:
                        head = f.read(8 * KiB)
                except OSError:
                    continue
                if b"\0" in head:
                    continue
                seen.add(p)
                cands.append(p)
    cands.sort()
    return cands


def build_text_pool(files, limit=32 * MiB):
    parts = []
    total = 0
    for p in files:
        with open(p, "rb") as f:
            b = f.read()
        parts.append(b)
        total += len(b)
        if total >= limit:
            break
    return b"".join(parts)


def pool_slice(pool, rng, n):
    if n == 0:
        return b""
    if n >= len(pool):
        return (pool * (n // len(pool) + 1))[:n]
    off = rng.randrange(0, len(pool) - n)
    return pool[off:off + n]


def scaled(n, scale, least=1):
    """n scaled down (unchanged at scale 1)."""
    if scale == 1:
        return n
    return max(least, int(round(n * scale)))


def make_mixed(out, seed, cands, pool, scale=1):
    rng = random.Random(seed * 1000 + 1)
    total = 0
    count = 0
    os.makedirs(out, exist_ok=True)
    # 1. 10,000 small text files
    n_text = scaled(10_000, scale)
    chosen = sorted(rng.sample(cands, min(n_text, len(cands))))
    for p in chosen:
        rel = p.lstrip("/").replace("/", os.sep)
        dst = os.path.join(out, "text", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(p, "rb") as f:
            data = f.read()
        with open(dst, "wb") as f:
            f.write(data)
        set_mtime(dst, rng)
        total += len(data)
        count += 1
    for i in range(n_text - len(chosen)):  # padding with generated text
        n = rng.randint(1 * KiB, 64 * KiB)
        dst = os.path.join(out, "text", "generated", "g%03d" % (i // 100), "f%05d.txt" % i)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        data = (b"# generated file %d\n" % i + pool_slice(pool, rng, n))[:n]
        with open(dst, "wb") as f:
            f.write(data)
        set_mtime(dst, rng)
        total += len(data)
        count += 1
    text_bytes = total
    # 3. random big files (sizes fixed)
    n_rand, rand_size = 4, scaled(100 * MiB, scale)
    # 2. 200 medium files; rescale so that mixed totals ~1 GiB
    n_med = scaled(200, scale, least=3)
    lo, hi = scaled(256 * KiB, scale), scaled(4 * MiB, scale)
    sizes = [rng.randint(lo, hi) for _ in range(n_med)]
    target_med = scaled(GiB, scale) - text_bytes - n_rand * rand_size
    if scale != 1:  # tiny corpora: the text alone may exceed the target
        target_med = max(target_med, n_med * lo)
    rescale = target_med / sum(sizes)
    sizes = [max(lo, min(hi, int(s * rescale))) for s in sizes]
    os.makedirs(os.path.join(out, "medium"), exist_ok=True)
    for i, n in enumerate(sizes):
        kind = ("text", "semi", "random")[i % 3]
        if kind == "text":
            data = pool_slice(pool, rng, n)
            ext = "txt"
        elif kind == "semi":
            r = prand(seed, "semi%d" % i, (n + 4095) // 4096 * 2048)
            blocks = []
            for j in range(0, len(r), 2048):
                blocks.append(r[j:j + 2048])
                blocks.append(b"\0" * 2048)
            data = b"".join(blocks)[:n]
            ext = "dat"
        else:
            data = prand(seed, "med%d" % i, n)
            ext = "bin"
        dst = os.path.join(out, "medium", "m%03d_%s.%s" % (i, kind, ext))
        with open(dst, "wb") as f:
            f.write(data)
        set_mtime(dst, rng)
        total += n
        count += 1
    os.makedirs(os.path.join(out, "random"), exist_ok=True)
    for i in range(n_rand):
        dst = os.path.join(out, "random", "rand_%d.bin" % i)
        write_random_file(dst, seed, "rand%d" % i, rand_size)
        set_mtime(dst, rng)
        total += rand_size
        count += 1
    return count, total


def write_text_or_random(d, stem, n, rng, pool, seed_bytes):
    """One small file of ``n`` bytes in ``d``: text from the pool (85%), else random bytes from ``seed_bytes``."""
    if rng.random() < 0.85:
        data, name = pool_slice(pool, rng, n), stem + ".txt"
    else:
        data, name = (hashlib.shake_256(seed_bytes).digest(n) if n else b""), stem + ".bin"
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    set_mtime(p, rng)


def make_small(out, seed, pool, scale=1):
    rng = random.Random(seed * 1000 + 2)
    total = 0
    n_files = scaled(50_000, scale)
    fanout, max_depth = 4, 5
    for i in range(n_files):
        depth = rng.randint(0, max_depth)
        comps = ["d%d_%d" % (lvl, rng.randrange(fanout)) for lvl in range(depth)]
        d = os.path.join(out, *comps)
        os.makedirs(d, exist_ok=True)
        n = rng.randint(0, 4096)
        write_text_or_random(d, "f%05d" % i, n, rng, pool, b"%d|small|%d" % (seed, i))
        total += n
    return n_files, total


def many_dir(i, tops):
    """The i-th directory of a many corpus: the tops first, then their subdirectories in turn."""
    if i < tops:
        return "d%03d" % i
    j = i - tops
    return os.path.join("d%03d" % (j % tops), "e%03d" % (j // tops))


def make_many(out, seed, pool, n_files, n_dirs, scale=1):
    """``n_files`` files of 0-1024 bytes spread at random over ``n_dirs`` directories (scaled: the counts only)."""
    rng = random.Random(seed * 1000 + 4)
    n_files, n_dirs = scaled(n_files, scale), scaled(n_dirs, scale)
    tops = max(1, n_dirs // 100)
    dirs = [os.path.join(out, many_dir(i, tops)) for i in range(n_dirs)]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    total = 0
    for i in range(n_files):
        d = dirs[rng.randrange(n_dirs)]
        n = rng.randint(0, 1024)
        write_text_or_random(d, "f%06d" % i, n, rng, pool, b"%d|many|%d" % (seed, i))
        total += n
    for d in dirs:  # once every file is in: the directories' mtimes are fixed too
        set_mtime(d, rng)
    return n_files, total


def make_big(out, seed, scale=1):
    os.makedirs(out, exist_ok=True)
    p = os.path.join(out, "big.bin")
    n = scaled(2 * GiB, scale)
    write_random_file(p, seed, "big", n)
    os.utime(p, (BASE_MTIME, BASE_MTIME))
    return 1, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", default="mixed,small,big", help="corpora to make (of mixed,small,big,many,many1m)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply file counts and sizes by this (default 1: the full corpora)")
    a = ap.parse_args()
    which = a.only.split(",")
    os.makedirs(a.outdir, exist_ok=True)
    cands = text_candidates()
    print("text candidates:", len(cands), file=sys.stderr)
    pool = build_text_pool(random.Random(a.seed).sample(cands, min(len(cands), 4000)))
    lines = []
    for w in which:
        d = os.path.join(a.outdir, w)
        if os.path.exists(d):
            sys.exit("%s exists; remove it first" % d)
        if w == "mixed":
            c, t = make_mixed(d, a.seed, cands, pool, a.scale)
        elif w == "small":
            c, t = make_small(d, a.seed, pool, a.scale)
        elif w == "big":
            c, t = make_big(d, a.seed, a.scale)
        elif w == "many":
            c, t = make_many(d, a.seed, pool, 300_000, 3_000, a.scale)
        elif w == "many1m":
            c, t = make_many(d, a.seed, pool, 1_000_000, 10_000, a.scale)
        else:
            sys.exit("unknown corpus " + w)
        line = "%s files=%d bytes=%d (%.1f MiB)" % (w, c, t, t / MiB)
        print(line)
        lines.append(line)
    with open(os.path.join(a.outdir, "MANIFEST.txt"), "a") as f:
        scale = "" if a.scale == 1 else " scale=%g" % a.scale
        f.write("seed=%d%s\n" % (a.seed, scale) + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
