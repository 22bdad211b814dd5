"""forget, prune, history, diff and log through the installed CLI, on a local store and on S3
(moto over HTTP); retention from the config; a forged chain and an unknown ``requires`` refused
in one line (issues 22 and 23)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from fogsync.format import crypto
from fogsync.format.roots import Root, format_date
from fogsync.repo.repository import Repo
from fogsync.store import open_store

KEY = "11" * 32  # the cli_host fixture's default key


def one_line_error(p, *words: str) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fogsync: error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def versions_of_report(a) -> None:
    for text in ("one", "two!", None, "three"):
        if text is None:
            a.remove("report.odt")
        else:
            a.write("report.odt", text)
        a.write("counter.txt", f"{text}")
        a.sync()


def repo_of(store: str) -> Repo:
    return Repo(open_store(store), crypto.ShareKeys.derive(bytes.fromhex(KEY)), "docs")


def test_history_cat_diff_forget_prune_and_check(cli_host, share_store):
    a = cli_host("alpha", share_store)
    a.write("big.bin", bytes(range(256)) * 800)  # 200 KB that only the oldest roots hold
    a.sync()
    a.remove("big.bin")
    versions_of_report(a)
    lines = a.run("history", "docs", "report.odt").stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["5", "deleted", "4", "3"]
    assert all(re.fullmatch(r"[0-9a-f]{8,} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d alpha \S+", line) for line in lines)
    ids = [line.split()[0] for line in lines]
    assert [a.run("cat", "docs", "report.odt", "--root", i).stdout for i in (ids[0], ids[2], ids[3])] == [
        "three", "two!", "one"]
    assert a.run("diff", "docs").stdout.splitlines() == ["+ report.odt", "M counter.txt"][::-1]
    assert a.run("diff", "docs", ids[3], ids[2]).stdout.splitlines() == ["M counter.txt", "M report.odt"]

    log = a.run("log", "docs").stdout.splitlines()
    assert len(log) == 5
    dry = a.run("forget", "docs", "--keep-last", "2", "--dry-run").stdout
    assert dry.count("\nforget ") + dry.startswith("forget ") == 3 and "would forget 3" in dry
    assert len(a.run("log", "docs").stdout.splitlines()) == 5
    out = a.run("forget", "docs", "--keep-last", "2").stdout
    assert "keep 2 root(s), forget 3" in out
    log = a.run("log", "docs").stdout.splitlines()
    assert [line.split()[1] for line in log] == ["6", "5", "4"]
    one_line_error(a.run("cat", "docs", "report.odt", "--root", ids[3], check=False), "no root")

    dry = a.run("prune", "docs", "--grace", "0s", "--dry-run").stdout
    n = int(re.search(r"would delete (\d+) object", dry).group(1))
    assert n >= 4  # big.bin's four blocks at least
    out = a.run("prune", "docs", "--grace", "0s").stdout
    assert f"delete {n} object(s)" in out
    assert "no problem" in a.run("check", "docs").stdout
    assert a.run("cat", "docs", "report.odt").stdout == "three"
    a.write("after.txt", "after")
    a.sync()  # a pass on top of the forget and the sweep
    assert "no problem" in a.run("check", "docs").stdout


def test_json_documents(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    versions_of_report(a)
    log = json.loads(a.run("--json", "log", "docs").stdout)["roots"]
    assert [e["version"] for e in log] == [4, 3, 2, 1]
    assert all(len(e["id"]) == 96 and e["date"].endswith("Z") and e["host"] == "alpha" for e in log)
    hist = json.loads(a.run("--json", "history", "docs", "report.odt").stdout)
    assert [v["deleted"] for v in hist["versions"]] == [False, True, False, False]
    assert hist["versions"][0]["id"] == log[0]["id"] and hist["versions"][0]["size"] == 5
    diff = json.loads(a.run("--json", "diff", "docs").stdout)
    assert diff["from"] == log[1]["id"] and diff["to"] == log[0]["id"]
    assert [(c["change"], c["path"]) for c in diff["changes"]] == [("M", "counter.txt"), ("+", "report.odt")]
    forget = json.loads(a.run("--json", "forget", "docs", "--keep-last", "1").stdout)
    assert [k["id"] for k in forget["keep"]] == [log[0]["id"]] and len(forget["forget"]) == 3
    assert len(forget["root"]) == 96
    prune = json.loads(a.run("--json", "prune", "docs", "--grace", "0s").stdout)
    assert prune["deleted_objects"] > 0 and prune["gc_state"] == "swept" and prune["gc_epoch"] == 1


def test_forget_uses_the_retention_of_the_config_and_refuses_without_one(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    versions_of_report(a)
    one_line_error(a.run("forget", "docs", check=False), "no retention policy", "docs")
    text = a.config.read_text()
    a.config.write_text(text + "\n[retention]\nkeep_last = 3\n")
    assert "forget 1 " in a.run("forget", "docs", "--dry-run").stdout
    a.config.write_text(text + "\n[retention]\nkeep_last = 3\n\n[shares.docs.retention]\nkeep_last = 2\n")
    assert "forget 2 " in a.run("forget", "docs", "--dry-run").stdout
    a.config.write_text(text + '\n[shares.docs.retention]\nkeep_daily = "7"\n')
    one_line_error(a.run("forget", "docs", check=False), "shares.docs.retention.keep_daily", "whole number")
    a.config.write_text(text + "\n[retention]\nkeep_fortnightly = 2\n")
    one_line_error(a.run("forget", "docs", check=False), "retention.keep_fortnightly", "not a retention key")
    a.config.write_text(text)
    one_line_error(a.run("forget", "docs", "--keep-within", "2x", check=False), "2x", "duration")
    one_line_error(a.run("prune", "docs", "--grace", "soon", check=False), "--grace")


def forge(store: str, version: int, prev_of_forged: str = "head") -> bytes:
    """A head whose chain goes up in version: a forged prev, or a cycle as far as a reader can tell."""
    repo = repo_of(store)
    head = repo.read_head()
    top = repo.read_root(head.root)
    w = repo.writer()

    def seal(root: Root) -> bytes:
        (ref,) = w.resolve([w.write_bytes(crypto.seal(repo.keys, root.encode(), compress=False))])
        return ref

    when = format_date(datetime.now(timezone.utc))
    newer = seal(Root(version + 5, head.root, when, "evil", top.root))
    forged = seal(Root(version, newer, when, "evil", top.root))
    repo.wait_uploads()
    repo.swap_head(forged, head.tag)
    repo.close()
    return forged


def test_a_forged_chain_is_one_line_not_a_loop(cli_host, tmp_path):
    store = str(tmp_path / "store")
    a = cli_host("alpha", store)
    versions_of_report(a)
    forge(store, 3)
    for args in (("log", "docs"), ("ls", "docs", "--root", "abcdef12"),
                 ("restore", "docs", "--to", str(tmp_path / "r"), "--at", "2000-01-01T00:00:00Z"),
                 ("history", "docs", "report.odt"), ("forget", "docs", "--keep-last", "1")):
        one_line_error(a.run(*args, check=False, timeout=60), "history", "broken")
    p = a.run("check", "docs", check=False)
    assert p.returncode == 1 and "broken" in p.stdout


def test_a_head_requiring_an_unknown_feature_is_read_but_not_committed_to(cli_host, tmp_path):
    store = str(tmp_path / "store")
    a = cli_host("alpha", store)
    versions_of_report(a)
    first = a.run("log", "docs").stdout.splitlines()[-1].split()[0]
    repo = repo_of(store)
    head = repo.read_head()
    top = repo.read_root(head.root)
    w = repo.writer()
    future = Root(top.version + 1, head.root, format_date(datetime.now(timezone.utc)), "future", top.root,
                  requires=("gc1", "gc2"))
    (ref,) = w.resolve([w.write_bytes(crypto.seal(repo.keys, future.encode(), compress=False))])
    repo.wait_uploads()
    repo.swap_head(ref, head.tag)
    repo.close()
    for args in (("forget", "docs", "--keep-last", "1"), ("prune", "docs", "--grace", "0s"),
                 ("restore", "docs", "--in-place", "--root", first)):
        one_line_error(a.run(*args, check=False), "gc2", "upgrade")
    assert a.run("cat", "docs", "report.odt").stdout == "three"
    assert "would forget" in a.run("forget", "docs", "--keep-last", "1", "--dry-run").stdout
    a.sync()  # nothing of its own to commit: a pass still runs
    a.write("mine.txt", "a change to commit")
    one_line_error(a.run("sync", check=False), "gc2", "upgrade")


@pytest.mark.parametrize("prefix_len", [8, 12])
def test_cat_takes_the_short_ids_history_prints(cli_host, tmp_path, prefix_len):
    a = cli_host("alpha", str(tmp_path / "store"))
    versions_of_report(a)
    ids = [line.split()[0] for line in a.run("history", "docs", "report.odt").stdout.splitlines()]
    full = {e["id"] for e in json.loads(a.run("--json", "log", "docs").stdout)["roots"]}
    assert all(any(f.startswith(i) for f in full) for i in ids)
    assert a.run("cat", "docs", "report.odt", "--root", ids[-1][:prefix_len]).stdout == "one"


def test_status_shows_the_forget_and_prune_a_command_ran_and_not_a_dry_run(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    versions_of_report(a)

    def upkeep() -> tuple:
        doc = json.loads(a.run("--json", "status", "docs").stdout)["shares"][0]
        return doc["last_forget"], doc["last_prune"]

    a.run("forget", "docs", "--keep-last", "1", "--dry-run")
    a.run("prune", "docs", "--dry-run")
    assert upkeep() == (None, None)
    a.run("forget", "docs", "--keep-last", "1")
    a.run("prune", "docs")  # the default grace: every block is younger than an hour, none is a candidate
    forget, prune = upkeep()
    assert forget["roots_forgotten"] == 3 and forget["at"].endswith("Z")
    assert prune["deleted_objects"] == 0 and prune["at"].endswith("Z")
    a.run("prune", "docs", "--grace", "0s")
    forget, prune = upkeep()
    assert prune["deleted_objects"] > 0 and prune["sweep_at"] is None
