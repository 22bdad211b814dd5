"""An exclude rule leaves paths alone on the excluding host, and on no other (issue 22, case 6).

Two in-process hosts (real folders, real SQLite state) on one store; host A
excludes paths after they synced, by the config's ``exclude`` (the Share's
field) or by ``.fogsyncignore``.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from fogsync.engine.status import waiting


@pytest.fixture(params=["memory", "local"])
def two(request, hosts, tmp_path):
    store = f"memory://excluded-{uuid.uuid4().hex}" if request.param == "memory" else str(tmp_path / "store")
    a, b = hosts("A", store), hosts("B", store)
    a.write("build.log", "log 1\n")
    a.write("notes.txt", "notes 1\n")
    a.write("logs/run.log", "run 1\n")
    for _ in range(2):
        a.sync_here()
        b.sync_here()
    return a, b


def head_tree(h) -> dict:
    repo = h.share().repo
    return repo.load_tree(repo.read_root(repo.read_head().root).root)


def holds(h, path: str, data: bytes) -> bool:
    """Whether the head's tree holds ``data`` at ``path``."""
    entry = head_tree(h).get(path)
    return entry is not None and entry.sha256 == hashlib.sha256(data).hexdigest()


def exclude(h, *patterns: str) -> None:
    h.share().exclude = patterns


def test_excluding_a_synced_file_commits_no_deletion(two):
    a, b = two
    exclude(a, "*.log")
    assert waiting(str(a.folder), a.share().exclude, a.share().state, a.share_name) == (0, 0)
    r = a.sync_here()
    assert r.committed is None and r.removed == 0
    b.sync_here()
    assert b.read("build.log") == b"log 1\n" and b.read("logs/run.log") == b"run 1\n"
    a.remove("build.log")  # A's own copy is A's business now
    assert a.sync_here().committed is None
    b.sync_here()
    assert b.read("build.log") == b"log 1\n"


def test_another_hosts_change_to_an_excluded_path_reaches_the_trees_but_not_the_folder(two):
    a, b = two
    exclude(a, "*.log")
    a.write("build.log", "A's own log\n")
    b.write("build.log", "log 2 from B\n")
    b.write("new.log", "added by B\n")
    b.remove("logs/run.log")
    b.sync_here()
    r = a.sync_here()
    assert r.conflicts == [] and r.written == 0 and r.removed == 0
    assert a.read("build.log") == b"A's own log\n"
    assert not a.path("new.log").exists() and a.read("logs/run.log") == b"run 1\n"
    a.write("notes.txt", "notes 2 from A\n")
    r = a.sync_here()
    assert r.committed is not None  # A's commit holds each excluded path as the root A merged had it
    assert holds(a, "build.log", b"log 2 from B\n") and holds(a, "new.log", b"added by B\n")
    assert "logs/run.log" not in head_tree(a)
    b.sync_here()
    assert b.read("build.log") == b"log 2 from B\n" and b.read("new.log") == b"added by B\n"
    assert b.read("notes.txt") == b"notes 2 from A\n"
    assert a.sync_here().committed is None and a.read("build.log") == b"A's own log\n"


def test_an_excluded_directory_stays_in_the_trees(two):
    a, b = two
    exclude(a, "logs/")
    a.remove("logs")
    assert a.sync_here().committed is None
    b.write("logs/run.log", "run 2 from B\n")
    b.sync_here()
    a.sync_here()
    assert not a.path("logs").exists()
    a.write("notes.txt", "notes 2 from A\n")
    a.sync_here()
    assert holds(a, "logs/run.log", b"run 2 from B\n")
    b.sync_here()
    assert b.read("logs/run.log") == b"run 2 from B\n"


def test_a_fogsyncignore_rule_leaves_paths_alone_too(two):
    a, b = two
    a.write(".fogsyncignore", "*.log\n")  # synced: every host ignores alike
    a.sync_here()
    b.sync_here()
    assert b.read(".fogsyncignore") == b"*.log\n"
    a.remove("build.log")
    b.write("logs/run.log", "run 2 from B\n")
    for h in (a, b, a, b):
        assert h.sync_here().committed is None
    assert not a.path("build.log").exists() and a.read("logs/run.log") == b"run 1\n"
    assert b.read("build.log") == b"log 1\n" and b.read("logs/run.log") == b"run 2 from B\n"
    assert holds(b, "build.log", b"log 1\n") and holds(b, "logs/run.log", b"run 1\n")
