"""The installed CLI end to end on one store: two hosts, history, restore,
check, and every error path a user can meet (issue 2)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from helpers import folder_tree

from fogsync.folder.marker import MARKER

KEY = "11" * 32  # the cli_host fixture's default key


def make_sample(folder: Path) -> None:
    (folder / "sub" / "deep").mkdir(parents=True)
    (folder / "empty-dir").mkdir()
    (folder / "notes.txt").write_text("hello\n" * 100)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "sub" / "random.bin").write_bytes(os.urandom(200_000))
    (folder / "sub" / "deep" / "ünïcödé — 日本.txt").write_text("non-ascii name\n")
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(folder / "run.sh", 0o755)
    os.symlink("notes.txt", folder / "link")
    os.symlink("/nowhere/dangling", folder / "sub" / "dangling")
    for i, p in enumerate(sorted(folder.rglob("*"))):
        os.utime(p, ns=(1_700_000_000_123_456_789 + i, 1_700_000_000_123_456_789 + i), follow_symlinks=False)


def store_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "/blocks/" in p.as_posix()]


# --- happy paths ------------------------------------------------------------------------------


def test_keygen_prints_64_hex(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"), add=False)
    out = h.run("keygen").stdout
    assert re.fullmatch(r"[0-9a-f]{64}\n", out)
    assert out != h.run("keygen").stdout


def test_add_share_writes_private_config_and_lists(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"), add=False)
    h.run("add-share", "docs", "-", "--path", str(h.folder), "--store", h.store, input=KEY + "\n")
    assert stat.S_IMODE(h.config.stat().st_mode) == 0o600
    assert h.folder.is_dir()
    assert h.run("shares").stdout.split("\t") == ["docs", str(h.folder), h.store + "\n"]
    h.run("remove-share", "docs")
    assert h.run("shares").stdout == ""
    assert h.folder.is_dir()


def test_second_host_gets_an_identical_tree(cli_host, share_store):
    a = cli_host("alpha", share_store)
    b = cli_host("beta", share_store)
    make_sample(a.folder)
    assert "committed v1" in a.sync()
    b.sync()
    assert folder_tree(b.folder, mtimes=True) == folder_tree(a.folder, mtimes=True)
    # nothing changed: no new root, on either host
    assert "in step" in a.sync() and "in step" in b.sync()
    assert len(a.run("log", "docs").stdout.splitlines()) == 1


def test_thousands_of_small_files_sealed_in_worker_processes_arrive_intact(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    b = cli_host("beta", str(tmp_path / "store"))
    for i in range(2100):  # past push.PROCESSES_MIN: sealed in worker processes
        d = a.folder / f"d{i % 30}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_bytes(b"line %d\n" % i * (i % 40) if i % 3 else os.urandom(i % 5000))
    os.chmod(a.folder / "d1" / "f1.txt", 0o755)
    assert "pushed 2100 file(s)" in a.sync()
    b.sync()
    assert folder_tree(b.folder, mtimes=True) == folder_tree(a.folder, mtimes=True)
    assert "in step" in a.sync()
    b.run("restore", "docs", "--to", str(tmp_path / "restored"))  # written by worker processes too
    assert folder_tree(tmp_path / "restored", mtimes=True) == folder_tree(a.folder, mtimes=True)


def test_a_file_written_around_the_page_cache_arrives_intact(cli_host, tmp_path):
    from fogsync.platform import directio

    a = cli_host("alpha", str(tmp_path / "store"))
    b = cli_host("beta", str(tmp_path / "store"))
    (a.folder / "disk.img").write_bytes(os.urandom(directio.MIN_SIZE + 12_345))  # O_DIRECT, then a buffered end
    (a.folder / "small.txt").write_text("small\n")
    a.sync()
    b.sync()
    assert folder_tree(b.folder, mtimes=True) == folder_tree(a.folder, mtimes=True)
    b.run("restore", "docs", "--to", str(tmp_path / "restored"))
    assert folder_tree(tmp_path / "restored", mtimes=True) == folder_tree(a.folder, mtimes=True)


def test_an_edit_after_a_pass_that_found_nothing_to_do_is_pushed(cli_host, share_store):
    a = cli_host("alpha", share_store)
    b = cli_host("beta", share_store)
    make_sample(a.folder)  # mtimes from 2023: stats trusted at once, so the scan is remembered
    assert "committed v1" in a.sync()
    assert "in step" in a.sync()
    (a.folder / "notes.txt").write_text("HELLO\n" * 100)  # same size, another old mtime
    os.utime(a.folder / "notes.txt", ns=(1_700_000_001_000_000_000, 1_700_000_001_000_000_000))
    assert "committed v2" in a.sync()
    b.sync()
    assert (b.folder / "notes.txt").read_text() == "HELLO\n" * 100
    assert "in step" in b.sync() and "in step" in a.sync()


def test_edits_deletes_flow_both_ways(cli_host, share_store):
    a = cli_host("alpha", share_store)
    b = cli_host("beta", share_store)
    make_sample(a.folder)
    a.sync()
    b.sync()
    (b.folder / "notes.txt").write_text("edited on beta\n")
    (b.folder / "sub" / "random.bin").unlink()
    (b.folder / "new dir").mkdir()
    (b.folder / "new dir" / "x").write_text("x")
    b.sync()
    a.sync()
    assert (a.folder / "notes.txt").read_text() == "edited on beta\n"
    assert not (a.folder / "sub" / "random.bin").exists()
    assert folder_tree(a.folder) == folder_tree(b.folder)
    log = a.run("log", "docs").stdout.splitlines()
    assert [line.split()[1] for line in log] == ["2", "1"]
    assert [line.split()[-1] for line in log] == ["beta", "alpha"]


def test_log_ls_cat_and_restore_an_older_root(cli_host, share_store, tmp_path):
    a = cli_host("alpha", share_store)
    make_sample(a.folder)
    before = folder_tree(a.folder, mtimes=True)
    a.sync()
    (a.folder / "notes.txt").write_text("version two\n")
    (a.folder / "sub" / "random.bin").unlink()
    a.sync()
    log = a.run("log", "docs").stdout.splitlines()
    first_id = log[-1].split()[0]
    assert re.fullmatch(r"[0-9a-f]{8}", first_id)  # short: unique among 2
    assert a.run("cat", "docs", "notes.txt").stdout == "version two\n"
    assert a.run("cat", "docs", "/notes.txt", "--root", first_id[:12]).stdout == "hello\n" * 100
    listing = a.run("ls", "docs", "sub", "--root", first_id).stdout
    assert "random.bin" in listing and "deep/" in listing
    assert "random.bin" not in a.run("ls", "docs", "sub").stdout
    a.run("restore", "docs", "--to", str(tmp_path / "old"), "--root", first_id[:10])
    assert folder_tree(tmp_path / "old", mtimes=True) == before
    a.run("restore", "docs", "sub/deep", "--to", str(tmp_path / "part"), "--root", first_id)
    assert sorted(p.name for p in (tmp_path / "part" / "sub" / "deep").iterdir()) == ["ünïcödé — 日本.txt"]
    assert (a.folder / "notes.txt").read_text() == "version two\n"  # the share folder is untouched


def test_restore_at_a_datetime(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "f").write_text("one")
    a.sync()
    when = json.loads(a.run("--json", "log", "docs").stdout)["roots"][0]["date"]
    (a.folder / "f").write_text("two")
    a.sync()
    a.run("restore", "docs", "--to", str(tmp_path / "r"), "--at", when)
    assert (tmp_path / "r" / "f").read_text() == "one"


def test_restore_in_place_is_a_new_commit(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "f").write_text("one")
    a.sync()
    first = a.run("log", "docs").stdout.split()[0]
    (a.folder / "f").write_text("two")
    (a.folder / "g").write_text("new")
    a.sync()
    a.run("restore", "docs", "--in-place", "--root", first)
    assert (a.folder / "f").read_text() == "one" and not (a.folder / "g").exists()
    versions = [line.split()[1] for line in a.run("log", "docs").stdout.splitlines()]
    assert versions == ["3", "2", "1"]


def test_check_passes_on_a_good_store(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    make_sample(a.folder)
    a.sync()
    out = a.run("check", "docs").stdout
    assert "no problem" in out


# --- check finds damage -------------------------------------------------------------------------


@pytest.fixture
def damaged(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    make_sample(a.folder)
    (a.folder / "many").mkdir()
    for i in range(30):
        (a.folder / "many" / f"{i}.txt").write_text(f"file {i}\n" * (i + 1))
    a.sync()
    return a, store_files(tmp_path / "store")


def test_check_catches_a_flipped_byte_in_every_block(damaged):
    a, blocks = damaged
    assert len(blocks) > 3
    for block in blocks:
        data = bytearray(block.read_bytes())
        data[len(data) // 2] ^= 0x01
        original = block.read_bytes()
        block.write_bytes(bytes(data))
        p = a.run("check", "docs", check=False)
        block.write_bytes(original)
        assert p.returncode == 1, f"flip in {block.name} not caught"
        assert p.stderr.strip().startswith("fogsync: error:") and len(p.stderr.strip().splitlines()) == 1


def test_check_catches_a_missing_block(damaged):
    a, blocks = damaged
    blocks[0].unlink()
    p = a.run("check", "docs", check=False)
    assert p.returncode == 1 and "missing" in p.stdout


def test_check_catches_a_garbage_head(damaged, tmp_path):
    a, _ = damaged
    (head,) = (tmp_path / "store").glob("*/head")
    head.write_bytes(os.urandom(100))
    p = a.run("check", "docs", check=False)
    assert p.returncode == 1 and "head" in p.stdout


# --- errors: one line, exit 1, nothing written ----------------------------------------------------


def one_line_error(p, *words: str) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fogsync: error: "), p.stderr
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_bad_key_text_is_refused_without_echoing_it(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"), add=False)
    p = h.run("add-share", "docs", "zz" * 32, "--path", str(h.folder), check=False)
    line = one_line_error(p, "64 hex")
    assert "zz" * 8 not in line
    assert not h.config.read_text().count("[shares")


def test_unknown_share(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"))
    one_line_error(h.run("log", "nope", check=False), "nope")
    one_line_error(h.run("sync", "nope", check=False), "nope")


def test_path_outside_the_share(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"))
    (h.folder / "f").write_text("x")
    h.sync()
    one_line_error(h.run("cat", "docs", "../../etc/passwd", check=False), "outside")
    one_line_error(h.run("restore", "docs", "../x", "--to", str(tmp_path / "r"), check=False), "outside")
    assert not (tmp_path / "r").exists()


def test_wrong_key_says_so_and_writes_nothing(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "secret.txt").write_text("x")
    a.sync()
    b = cli_host("beta", a.store, key="22" * 32)
    one_line_error(b.run("log", "docs", check=False), "no commits", "key is wrong")
    b.sync()
    assert [p.name for p in b.folder.iterdir()] == [MARKER]  # only what add-share left


def test_tampered_block_fails_the_pull_and_writes_nothing(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "big.bin").write_bytes(os.urandom(300_000))
    a.sync()
    for block in store_files(tmp_path / "store"):
        if block.stat().st_size == 65536:
            data = bytearray(block.read_bytes())
            data[100] ^= 0xFF
            block.write_bytes(bytes(data))
            break
    b = cli_host("beta", a.store)
    one_line_error(b.run("sync", check=False), "big.bin", "hash does not match its name")
    assert [p.name for p in b.folder.iterdir()] == [MARKER]  # only what add-share left
    one_line_error(b.run("cat", "docs", "big.bin", check=False), "big.bin")


def test_missing_block_fails_the_pull_and_writes_nothing(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "big.bin").write_bytes(os.urandom(300_000))
    a.sync()
    next(b for b in store_files(tmp_path / "store") if b.stat().st_size == 65536).unlink()
    b = cli_host("beta", a.store)
    one_line_error(b.run("sync", check=False), "missing")
    assert [p.name for p in b.folder.iterdir()] == [MARKER]  # only what add-share left


def test_unreachable_store(cli_host, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    a = cli_host("alpha", "s3://bucket/prefix")
    (a.folder / "f").write_text("x")
    one_line_error(a.run("sync", check=False, timeout=120), "127.0.0.1:9")


def test_debug_shows_the_traceback(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"))
    p = h.run("--debug", "log", "nope", check=False)
    assert p.returncode == 1 and "Traceback" in p.stderr


def test_bad_usage_exits_2(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"))
    assert h.run("frobnicate", check=False).returncode == 2
    assert h.run("restore", "docs", check=False).returncode == 2


def test_one_broken_share_does_not_stop_the_others(cli_host, tmp_path):
    h = cli_host("a", str(tmp_path / "store"))
    (h.folder / "f").write_text("x")
    h.run("add-share", "gone", "22" * 32, "--path", str(tmp_path / "gone"), "--store", str(tmp_path / "store"))
    (tmp_path / "gone" / MARKER).unlink()  # add-share left it
    (tmp_path / "gone").rmdir()
    p = h.run("sync", check=False)
    assert p.returncode == 1
    assert "docs: committed v1" in p.stdout
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "gone" in p.stderr and "not there" in p.stderr
