"""Listing entries the format forbids are refused one by one (issue 22, case 10).

FORMAT.md section 5: a file's content must be what its ``size`` and
``sha256`` say; a directory's ``size``/``sha256`` are its listing's; a
symlink's ``size`` is its target's length in UTF-8; only a file or
directory with ``size > 0`` has a ``bptr``. A crafted root (its top listing
written by hand, sealed with the share's keys) holds such entries; ``pull``
refuses them file by file, a pass reports each with its reason and writes
everything else, the folder's path is left alone (never taken for a
deletion), and ``check`` reports them.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime, timezone

import pytest
from helpers import MTIME, stored, temporary_files

from fogsync.engine import pull
from fogsync.engine.check import check_share
from fogsync.engine.push import write_root
from fogsync.format import crypto
from fogsync.format.tree import FILE, Entry

NOW = datetime(2026, 11, 21, 23, 34, 58, tzinfo=timezone.utc)
OTHER_SHA = hashlib.sha256(b"something else").hexdigest()


# --- pull: a file whose content is not what its entry declares -------------------------------------


@pytest.mark.parametrize("processes_min", [1, 10_000], ids=["worker processes", "threads"])
def test_apply_refuses_a_lying_file_and_writes_the_others(repo, tmp_path, processes_min):
    target = {f"f{i:02d}.txt": stored(repo, f"file {i}\n".encode()) for i in range(20)}
    target["f03.txt"] = target["f03.txt"]._replace(sha256=OTHER_SHA)
    target["f07.txt"] = target["f07.txt"]._replace(size=target["f07.txt"].size + 1)
    target["f11.txt"] = target["f11.txt"]._replace(size=2)  # the blob holds more than it declares
    folder = tmp_path / "folder"
    folder.mkdir()
    applied = pull.apply(repo, str(folder), {}, {}, target, processes_min=processes_min, batch=5)
    assert set(applied.refused) == {"f03.txt", "f07.txt", "f11.txt"}
    assert "does not match its listing" in applied.refused["f03.txt"]
    assert "2 bytes" in applied.refused["f11.txt"] or "size 8 vs 2" in applied.refused["f11.txt"]
    assert applied.refused.keys() <= applied.left_alone and not applied.skipped
    assert sorted(os.listdir(folder)) == sorted(p for p in target if p not in applied.refused)
    assert (folder / "f04.txt").read_bytes() == b"file 4\n" and temporary_files(folder) == []


# --- a pass over a crafted root ----------------------------------------------------------------------


@pytest.fixture(params=["memory", "local"])
def two(request, hosts, tmp_path):
    """A writes, B reads; both synced on good.txt, lie.txt, sub/x.txt and link."""
    store = f"memory://entries-{uuid.uuid4().hex}" if request.param == "memory" else str(tmp_path / "store")
    a, b = hosts("A", store), hosts("B", store)
    a.write("good.txt", "good 1\n")
    a.write("lie.txt", "lie 1\n")
    a.write("sub/x.txt", "x 1\n")
    os.symlink("good.txt", a.path("link"))
    for _ in range(2):
        a.sync_here()
        b.sync_here()
    return a, b


def commit_crafted(h, edit) -> None:
    """A root on the head whose top listing is the head's, as JSON dicts, changed by ``edit``."""
    repo = h.share().repo
    head = repo.read_head()
    root = repo.read_root(head.root)
    top = json.loads(repo.read_small(root.root, "listing"))
    edit({d["name"]: d for d in top}, top)
    w = repo.writer()
    (top_ref,) = w.resolve([w.write_bytes(crypto.seal(repo.keys, json.dumps(top).encode(), compress=True))])
    ref, _ = write_root(w, top_ref, (head.root, root), "crafter", NOW)
    repo.wait_uploads()
    repo.swap_head(ref, head.tag)


def problems_about(report, path: str) -> list[str]:
    return [p for p in report.problems if p.startswith(f"refused {path!r}")]


def test_a_file_entry_whose_sha256_lies_is_refused_and_the_other_files_are_written(two):
    a, b = two
    a.write("good.txt", "good 2\n")
    a.write("lie.txt", "lie 2\n")
    a.write("new.txt", "new\n")
    a.sync_here()

    def lie(by_name, top):
        by_name["lie.txt"]["sha256"] = OTHER_SHA
        by_name["new.txt"]["sha256"] = OTHER_SHA

    commit_crafted(a, lie)
    r = b.sync_here()
    assert problems_about(r, "lie.txt") and problems_about(r, "new.txt")
    assert "does not match its listing" in problems_about(r, "lie.txt")[0]
    assert b.read("good.txt") == b"good 2\n"
    assert b.read("lie.txt") == b"lie 1\n" and not b.path("new.txt").exists()  # left as they were
    r = b.sync_here()  # tried again, refused again, still nothing lost
    assert problems_about(r, "lie.txt") and b.read("lie.txt") == b"lie 1\n"
    assert b.read("sub/x.txt") == b"x 1\n"


def test_a_directory_entry_whose_size_lies_is_refused_with_everything_below_it(two):
    a, b = two
    a.write("sub/x.txt", "x 2\n")
    a.write("sub/y.txt", "y\n")
    a.write("good.txt", "good 2\n")
    a.sync_here()
    commit_crafted(a, lambda by_name, top: by_name["sub"].update(size=by_name["sub"]["size"] + 1))
    r = b.sync_here()
    assert problems_about(r, "sub") and "directory's size and sha256 must be its listing's" in r.problems[0]
    assert b.read("good.txt") == b"good 2\n"
    assert b.read("sub/x.txt") == b"x 1\n" and not b.path("sub/y.txt").exists()
    assert any("/sub: a directory's size" in p for p in check_share(b.share().repo).problems)


def test_a_directory_of_size_0_with_a_bptr_is_refused_not_taken_for_an_empty_one(two):
    a, b = two
    a.write("good.txt", "good 2\n")
    a.sync_here()
    commit_crafted(a, lambda by_name, top: by_name["sub"].update(size=0))
    r = b.sync_here()
    assert problems_about(r, "sub") and "size 0 must have no bptr" in problems_about(r, "sub")[0]
    assert b.read("sub/x.txt") == b"x 1\n"  # its listing is not read: never a deletion of what is below
    assert b.read("good.txt") == b"good 2\n"
    assert any("/sub: an entry of size 0" in p for p in check_share(b.share().repo).problems)


def test_a_symlink_whose_size_is_not_its_targets_length_is_refused(two):
    a, b = two
    a.write("good.txt", "good 2\n")
    a.sync_here()

    def lie(by_name, top):
        by_name["link"].update(target="lie.txt", size=3)  # "lie.txt" is 7 bytes
        top.append({**by_name["link"], "name": "link2", "target": "€", "size": 1})  # 3 bytes in UTF-8

    commit_crafted(a, lie)
    r = b.sync_here()
    assert problems_about(r, "link") and problems_about(r, "link2")
    assert "target's length in UTF-8 (7), not 3" in problems_about(r, "link")[0]
    assert os.readlink(b.path("link")) == "good.txt" and not os.path.lexists(b.path("link2"))
    assert b.read("good.txt") == b"good 2\n"
    problems = check_share(b.share().repo).problems
    assert any(p.startswith("/link: a symlink's size") for p in problems)
    assert any(p.startswith("/link2: a symlink's size") for p in problems)


def test_an_empty_file_entry_with_a_bptr_is_refused(two):
    a, b = two
    a.write("good.txt", "good 2\n")
    a.sync_here()

    def lie(by_name, top):
        top.append({**by_name["good.txt"], "name": "empty.txt", "size": 0})
        by_name["lie.txt"]["size"] = 0

    commit_crafted(a, lie)
    r = b.sync_here()
    assert problems_about(r, "empty.txt") and problems_about(r, "lie.txt")
    assert not b.path("empty.txt").exists() and b.read("lie.txt") == b"lie 1\n"
    assert b.read("good.txt") == b"good 2\n"
    problems = check_share(b.share().repo).problems
    assert any(p.startswith("/empty.txt: an entry of size 0 must have no bptr") for p in problems)


def test_check_reports_a_well_formed_share_as_clean(two):
    a, _ = two
    assert check_share(a.share().repo).problems == []


def test_an_entry_that_names_its_content_truly_is_not_refused(repo):
    from fogsync.engine.entry_checks import entry_flaw

    assert entry_flaw(stored(repo, b"data")) is None
    assert entry_flaw(Entry(FILE, MTIME, "h")) is None  # an empty file: no bptr, no sha256
    assert entry_flaw(Entry("symlink", MTIME, "h", 3, target="€")) is None
