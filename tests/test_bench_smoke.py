"""The benchmark scripts still run (tiny corpora, fogsync only; no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("bench-corpus"))


def _run(script: str, *args: str) -> str:
    r = subprocess.run([sys.executable, os.path.join(BENCH, script), *args],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{script} exited {r.returncode}:\n{r.stdout}\n{r.stderr[-3000:]}"
    return r.stdout


def _table_rows(out: str, header: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:len(header.split())] == header.split())
    assert set(lines[start + 1].replace(" ", "")) == {"-"}
    return [line.split() for line in lines[start + 2:] if line.strip() and not line.startswith(("WARNING", " "))]


def test_compare_smoke(cache):
    out = _run("compare.py", "--smoke", "--tools", "fogsync", "--runs", "1", "--cache", cache)
    assert "WARNING" not in out, out
    rows = [r for r in _table_rows(out, "corpus op tool") if r[0] in ("mixed", "small", "big")]
    seen = {(r[0], r[1]) for r in rows if r[2] == "fogsync"}
    expected = {(c, op) for c in ("mixed", "small", "big") for op in ("initial", "no-op", "restore", "join")}
    assert expected | {("small", "change")} == seen, out
    assert all(r[3] != "failed" for r in rows), out


def test_s3_requests_smoke(cache):
    out = _run("s3_requests.py", "--smoke", "--cache", cache)
    assert "WARNING" not in out, out
    rows = {(r[0], r[1]): r for r in _table_rows(out, "corpus phase") if r[0] in ("mixed", "small", "big")}
    for corpus in ("mixed", "small", "big"):
        assert (corpus, "initial") in rows and (corpus, "restore") in rows, out
        assert int(rows[(corpus, "initial")][2]) > 0, out  # some block PUTs


def test_retention_smoke():
    out = _run("retention.py", "--smoke")
    rows = {" ".join(r[:2]): r for r in _table_rows(out, "measure value")}
    objects = rows["store objects"]
    assert int(objects[4]) < int(objects[2]), out  # the prune deleted what only forgotten roots held
    assert "deleted 0 objects" not in out, out


def test_s3_latency_smoke():
    out = _run("s3_latency.py", "--smoke")
    assert "WARNING" not in out, out
    rows = [r for r in _table_rows(out, "connections delay-ms phase") if r[0].isdigit()]
    assert {(r[1], r[2]) for r in rows} == {(d, p) for d in ("0", "10") for p in ("initial", "restore")}, out
    assert all(int(r[6]) > 0 and int(r[8]) >= 1 for r in rows), out  # requests made, some in flight


def test_bigfloor_smoke():
    out = _run("bigfloor.py", "--smoke")
    rows = [r for r in _table_rows(out, "fogsync op run") if r[0] == "this"]
    assert {(r[1], r[2]) for r in rows} == {(op, run) for op in ("initial", "restore") for run in ("1", "med")}, out
    assert all(float(r[7]) > 0 and float(r[8]) > 0 for r in rows), out  # a floor, and a ratio to it


def test_latency_smoke():
    out = _run("latency.py", "--smoke")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| 300 |")]
    assert [r[2].strip() for r in rows] == ["before (HEAD)", "after (this)"], out
    assert all(r[3].strip().endswith(" s") and r[8].strip().endswith(" MB") for r in rows), out


def test_compare_smoke_many(cache):
    out = _run("compare.py", "--smoke", "--only", "many", "--tools", "fogsync", "--runs", "1", "--cache", cache)
    assert "WARNING" not in out, out
    rows = [r for r in _table_rows(out, "corpus op tool") if r[0] == "many"]
    assert {r[1] for r in rows if r[2] == "fogsync"} == {"initial", "no-op", "restore", "join"}, out
    assert all(r[3] != "failed" for r in rows), out
    if sys.platform == "linux":  # the CPU of the whole process tree, workers included (a subreaper)
        assert all(float(r[8]) > 0 for r in rows), out
