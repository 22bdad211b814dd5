"""The CLI for scripts and people (issue 24): every --json shape (docs/json.md), short IDs and
local times, root prefixes, exit statuses 3 and 130, conflicts, shell completion."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from helpers import signalled_when

KEY = "11" * 32
FULL_ID = re.compile(r"[0-9a-f]{96}")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")

# docs/json.md, per document or message
SUMMARY_KEYS = {"message_type", "share", "root", "committed", "files_pushed", "bytes_pushed", "files_pulled",
                "files_removed", "conflicts", "problems", "deferred", "in_step"}
ROOT_KEYS = {"id", "version", "date", "host"}
LS_ENTRY_KEYS = {"path", "name", "type", "size", "mtime", "mtime_ns", "exec", "host"}
STATUS_SHARE_KEYS = {"name", "state", "reason", "in_step", "waiting_files", "waiting_bytes", "deferred",
                     "last_commit", "last_error", "last_error_at", "last_poll", "last_pass", "retry_in", "watch",
                     "remote", "last_forget", "last_prune", "progress"}
CONFLICT_KEYS = {"share", "path", "original", "host", "date", "original_exists"}


def run(h, *args, env: dict | None = None, check: bool = True, input: str | None = None):
    p = subprocess.run(h.command(*args), capture_output=True, text=True, env={**h.env(), **(env or {})},
                       timeout=120, input=input)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def doc(h, *args, **kw) -> dict:
    return json.loads(run(h, "--json", *args, **kw).stdout)


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def is_root(d: dict) -> bool:
    return set(d) == ROOT_KEYS and FULL_ID.fullmatch(d["id"]) and RFC3339.fullmatch(d["date"]) is not None


def test_sync_and_restore_print_ndjson_summaries(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "f.txt").write_text("hello")
    out = ndjson(run(a, "--json", "sync").stdout)
    assert len(out) == 1 and set(out[0]) == SUMMARY_KEYS
    s = out[0]
    assert s["message_type"] == "summary" and s["share"] == "docs" and FULL_ID.fullmatch(s["root"])
    assert is_root(s["committed"]) and s["committed"]["id"] == s["root"] and s["committed"]["version"] == 1
    assert (s["files_pushed"], s["bytes_pushed"], s["files_pulled"], s["in_step"]) == (1, 5, 0, True)
    again = ndjson(run(a, "--json", "sync").stdout)[0]
    assert again["committed"] is None and again["root"] == s["root"] and again["files_pushed"] == 0

    r = ndjson(run(a, "--json", "restore", "docs", "--to", str(tmp_path / "r")).stdout)
    assert r == [{"message_type": "summary", "share": "docs", "root": s["root"], "path": "",
                  "target": str(tmp_path / "r"), "entries_restored": 1}]
    (a.folder / "f.txt").write_text("changed")
    run(a, "sync")
    inplace = ndjson(run(a, "--json", "restore", "docs", "--in-place", "--root", s["root"][:8]).stdout)
    head = doc(a, "log", "docs")["roots"][0]
    assert set(inplace[0]) == SUMMARY_KEYS and inplace[0]["root"] == head["id"] and head["version"] == 3
    assert inplace[0]["files_pulled"] == 1
    assert (a.folder / "f.txt").read_text() == "hello"


def test_errors_are_json_messages_on_stderr(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    for args in (("sync", "nope"), ("restore", "docs", "--to", str(tmp_path / "r")), ("log", "docs")):
        p = run(a, "--json", *args, check=False)
        assert p.returncode == 1 and p.stdout == ""
        err = ndjson(p.stderr)
        assert len(err) == 1 and err[0]["message_type"] == "error" and err[0]["message"], p.stderr


def test_one_failing_share_is_an_error_message_beside_the_others_summaries(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    run(a, "add-share", "other", KEY, "--path", str(tmp_path / "other"), "--store", str(tmp_path / "store2"))
    a.config.write_text(a.config.read_text().replace(f'key = "{KEY}"\npath = "{tmp_path / "other"}"',
                                                     f'key_command = "exit 1"\npath = "{tmp_path / "other"}"'))
    p = run(a, "--json", "sync", check=False)
    assert p.returncode == 1
    assert [m["share"] for m in ndjson(p.stdout)] == ["docs"]
    err = ndjson(p.stderr)
    assert err[0]["message_type"] == "error" and err[0]["share"] == "other"


def test_documents_of_the_reading_commands(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "sub").mkdir()
    (a.folder / "sub" / "x.sh").write_text("#!/bin/sh\n")
    os.chmod(a.folder / "sub" / "x.sh", 0o755)
    os.symlink("sub/x.sh", a.folder / "link")
    run(a, "sync")

    log = doc(a, "log", "docs")
    assert set(log) == {"share", "roots"} and len(log["roots"]) == 1 and is_root(log["roots"][0])
    head = log["roots"][0]["id"]

    ls = doc(a, "ls", "docs")
    assert set(ls) == {"share", "root", "path", "entries"} and ls["root"] == head and ls["path"] == ""
    by_name = {e["name"]: e for e in ls["entries"]}
    assert set(by_name) == {"sub", "link"}
    assert set(by_name["sub"]) == LS_ENTRY_KEYS and by_name["sub"]["type"] == "dir" and by_name["sub"]["size"] is None
    assert set(by_name["link"]) == LS_ENTRY_KEYS | {"target"} and by_name["link"]["target"] == "sub/x.sh"
    x = doc(a, "ls", "docs", "sub")["entries"]
    assert [(e["path"], e["type"], e["size"], e["exec"]) for e in x] == [("sub/x.sh", "file", 10, True)]
    assert RFC3339.fullmatch(x[0]["mtime"]) and x[0]["mtime_ns"] == os.stat(a.folder / "sub" / "x.sh").st_mtime_ns

    status = doc(a, "status")
    assert set(status) == {"daemon", "shares"} and status["daemon"] == {"running": False, "pid": None}
    (s,) = status["shares"]
    assert set(s) == STATUS_SHARE_KEYS and s["state"] == "idle" and s["in_step"] is True
    assert s["last_commit"]["id"] == head and (s["waiting_files"], s["waiting_bytes"]) == (0, 0)
    (a.folder / "new.txt").write_text("12345")
    s = doc(a, "status", "docs")["shares"][0]
    assert (s["waiting_files"], s["waiting_bytes"], s["in_step"]) == (1, 5, False)

    assert doc(a, "shares") == {"shares": [{"name": "docs", "path": str(a.folder), "store": a.store,
                                            "key_source": "config"}]}
    assert doc(a, "check", "docs") == {"share": "docs", "ok": True, "roots": 1, "listings": 2, "files": 1,
                                        "problems": []}
    assert set(doc(a, "keygen")) == {"key"}


def test_check_json_reports_problems_and_exits_1(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "f.txt").write_text("some content " * 100)
    run(a, "sync")
    for block in (tmp_path / "store").rglob("*"):
        if block.is_file() and "/blocks/" in block.as_posix():
            block.unlink()
    p = run(a, "--json", "check", "docs", check=False)
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["problems"] and all(isinstance(x, str) for x in out["problems"])


def test_log_shows_short_ids_and_local_time(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    for i in range(3):
        (a.folder / "f.txt").write_text(str(i))
        run(a, "sync")
        time.sleep(1.0 if i == 0 else 0)  # the oldest root alone in its second, for --at below
    roots = doc(a, "log", "docs")["roots"]
    for tz in ("UTC", "Asia/Kolkata"):
        lines = run(a, "log", "docs", env={"TZ": tz}).stdout.splitlines()
        expected = []
        for r in roots:
            when = datetime.fromisoformat(r["date"].replace("Z", "+00:00")).astimezone(ZoneInfo(tz))
            expected.append(f"{r['id'][:8]} {r['version']} {when:%Y-%m-%d %H:%M:%S} alpha")
        assert lines == expected, tz
    # a short ID is what --root takes, and a date as shown is what --at takes
    oldest = run(a, "log", "docs").stdout.splitlines()[-1].split()
    assert run(a, "cat", "docs", "f.txt", "--root", oldest[0]).stdout == "0"
    run(a, "restore", "docs", "--to", str(tmp_path / "r"), "--at", f"{oldest[2]} {oldest[3]}")
    assert (tmp_path / "r" / "f.txt").read_text() == "0"


def test_an_ambiguous_or_unknown_root_prefix_is_one_clear_line(hosts, cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    for i in range(17):  # 17 IDs: two of them share their first hex character
        (a.folder / "f.txt").write_text(str(i))
        a.sync_here()
    ids = [r["id"] for r in doc(a, "log", "docs")["roots"]]
    first = [i[0] for i in ids]
    shared = next(c for c in first if first.count(c) > 1)
    for args in (("ls", "docs"), ("cat", "docs", "f.txt"), ("restore", "docs", "--to", str(tmp_path / "r"))):
        p = run(a, *args, "--root", shared, check=False)
        assert p.returncode == 1 and p.stdout == "" and len(p.stderr.splitlines()) == 1, p.stderr
        assert re.match(rf"fogsync: error: {first.count(shared)} roots .* match id '{shared}'", p.stderr), p.stderr
    p = run(a, "ls", "docs", "--root", "not-hex", check=False)
    assert p.returncode == 2 and p.stderr.startswith("fogsync: error: --root 'not-hex' is not a root ID")
    unique = ids[3][:12]
    assert run(a, "cat", "docs", "f.txt", "--root", unique).stdout == "13"


def test_a_pass_that_could_not_read_a_file_exits_3_after_committing(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    (a.folder / "f.txt").write_text("kept")
    os.mkfifo(a.folder / "pipe")
    p = run(a, "sync", check=False)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "committed v1" in p.stdout and "fogsync: warning: docs: skipped 'pipe'" in p.stderr
    assert [e["name"] for e in doc(a, "ls", "docs")["entries"]] == ["f.txt"]
    p = run(a, "--json", "sync", check=False)
    assert p.returncode == 3
    assert ndjson(p.stdout)[0]["problems"] == [m["message"] for m in ndjson(p.stderr)]
    assert ndjson(p.stderr)[0]["message_type"] == "warning"


def test_sigint_exits_130(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    mark = tmp_path / "asked"
    run(a, "add-share", "docs", KEY, "--path", str(a.folder), "--store", a.store)
    text = a.config.read_text().replace(f'key = "{KEY}"', f'key_command = "touch {mark}; exec sleep 60"')
    a.config.write_text(text)
    p = signalled_when(a, ("sync",), lambda pid: mark.exists(), signal.SIGINT)
    assert p.returncode == 130 and p.stderr == "fogsync: error: interrupted\n", (p.returncode, p.stderr)


def test_conflicts_lists_copies_with_their_originals(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    b = cli_host("beta", str(tmp_path / "store"))
    (a.folder / "sub").mkdir()
    (a.folder / "sub" / "report.txt").write_text("base")
    (a.folder / ".bashrc").write_text("base")
    a.sync()
    b.sync()
    for h in (a, b):
        (h.folder / "sub" / "report.txt").write_text(f"edited on {h.name}")
        (h.folder / ".bashrc").write_text(f"edited on {h.name}")
    a.sync()
    b.sync()
    assert run(b, "conflicts").stdout == run(b, "conflicts", "docs").stdout
    found = doc(b, "conflicts")["conflicts"]
    assert sorted(c["original"] for c in found) == [".bashrc", "sub/report.txt"]
    for c in found:
        assert set(c) == CONFLICT_KEYS and c["share"] == "docs" and c["host"] == "beta" and c["original_exists"]
        assert (b.folder / c["path"]).read_text() == "edited on beta"
        assert RFC3339.fullmatch(c["date"])
    lines = run(b, "conflicts").stdout.splitlines()
    assert sorted(line.split("\t")[2] for line in lines) == [".bashrc", "sub/report.txt"]
    assert doc(a, "conflicts") == {"conflicts": []}  # alpha has not pulled them yet


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_every_command(cli_host, tmp_path, shell):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    script = run(a, "completion", shell).stdout
    for command in ("add-share", "sync", "wait", "conflicts", "restore", "--key-file"):
        assert command in script, (shell, command)


def test_bash_can_source_the_completion_script(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    exe = a.command()[0]
    p = subprocess.run(["bash", "-c", f"source <({exe} completion bash) && complete -p fogsync"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "fogsync" in p.stdout, p.stderr
    script = run(a, "completion", "bash").stdout
    assert "_add_share___key_file_COMPGEN=_shtab_compgen_files" in script  # file names after --key-file
    assert "_restore___to_COMPGEN=_shtab_compgen_dirs" in script
