"""engine.check: every root, listing and content blob a share's head reaches is verified, and each problem reported."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from helpers import KEYS, MTIME, flip_last_block, stored

from fogsync.engine.check import check_share
from fogsync.engine.push import write_listings, write_root
from fogsync.format.blocks import BLOCK_SIZE
from fogsync.format.roots import Root
from fogsync.format.tree import DIR, Entry
from fogsync.repo.repository import Repo
from fogsync.store.local import LocalStore

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@dataclass
class Share:
    """A share of two versions: v1 has docs/a.txt and big.bin; v2 adds docs/b.txt."""

    repo: Repo
    v1: tuple[bytes, Root, dict[str, Entry]]
    v2: tuple[bytes, Root, dict[str, Entry]]

    def checked(self):
        repo = Repo(self.repo.store, KEYS, self.repo.name)
        try:
            return check_share(repo)
        finally:
            repo.close()


def _commit(repo: Repo, tree: dict[str, Entry], previous: dict[str, Entry], prev) -> tuple[bytes, Root, dict]:
    writer = repo.writer()
    top, final = write_listings(writer, tree, previous, "h")
    ref, root = write_root(writer, top, prev, "h", NOW)
    repo.wait_uploads()
    return ref, root, final


@pytest.fixture
def share(tmp_path) -> Share:
    repo = Repo(LocalStore(str(tmp_path / "store")), KEYS, "share")
    first = {
        "docs": Entry(DIR, MTIME, "h"),
        "docs/a.txt": stored(repo, b"alpha " * 200),
        "big.bin": stored(repo, os.urandom(3 * BLOCK_SIZE + 5)),
    }
    v1 = _commit(repo, first, {}, None)
    second = {**v1[2], "docs/b.txt": stored(repo, b"beta")}
    v2 = _commit(repo, second, v1[2], v1[:2])
    repo.swap_head(v2[0], None)
    return Share(repo, v1, v2)


def _block_file(repo: Repo, h: bytes) -> str:
    return os.path.join(repo.store.root, *repo.block_key(h).split("/"))


def _only(problems: list[str], start: str) -> None:
    assert len(problems) == 1 and problems[0].startswith(start), problems


def test_a_clean_share_passes_and_everything_is_counted(share):
    report = share.checked()
    assert report.problems == []
    assert report.roots == 2
    assert report.listings == 4  # "" and docs in each version: v2 rewrote both
    assert report.files == 3  # a.txt is the same content in both versions: checked once


def test_progress_names_each_root_newest_first(share):
    seen: list[str] = []
    check_share(share.repo, seen.append)
    assert seen == ["root v2", "root v1"]


def test_a_flipped_byte_in_a_block_is_reported_for_its_file(share):
    flip_last_block(share.repo, share.v2[2]["docs/a.txt"])
    report = share.checked()
    _only(report.problems, "/docs/a.txt: ")
    assert report.files == 3


def test_a_missing_block_is_reported_for_its_file(share):
    first_block = share.repo.pieces(share.v2[2]["big.bin"].bptr)[0]
    os.unlink(_block_file(share.repo, first_block.hash))
    _only(share.checked().problems, "/big.bin: ")


def test_content_that_does_not_match_its_listing_is_reported(share):
    wrong = share.v2[2]["docs/b.txt"]._replace(sha256="00" * 32)
    v3 = _commit(share.repo, {**share.v2[2], "docs/b.txt": wrong}, share.v2[2], share.v2[:2])
    share.repo.swap_head(v3[0], share.repo.read_head().tag)
    _only(share.checked().problems, "/docs/b.txt: content does not match")


def test_a_tampered_listing_is_reported_and_the_rest_still_checked(share):
    flip_last_block(share.repo, share.v1[2]["docs"])  # v1's docs listing; v2 wrote docs anew
    report = share.checked()
    _only(report.problems, "listing of /docs: ")
    assert report.roots == 2 and report.listings == 3 and report.files == 3  # a.txt is reached through v2


def test_a_root_that_does_not_verify_is_reported_and_ends_the_walk(share):
    ref, _, _ = share.v1
    flip_last_block(share.repo, Entry(DIR, 0, "h", bptr=ref))
    report = share.checked()
    _only(report.problems, f"history: root {ref.hex()[:16]} ")
    assert report.roots == 1  # v2 was checked; the chain stops at v1


def test_a_head_that_does_not_verify_is_reported(share):
    share.repo.store.put(share.repo.head_key, os.urandom(100))
    report = share.checked()
    _only(report.problems, "head of ")
    assert report.roots == 0


def test_a_listing_two_versions_share_is_checked_once(share):
    v3 = _commit(share.repo, {**share.v2[2], "c.txt": stored(share.repo, b"gamma")}, share.v2[2], share.v2[:2])
    share.repo.swap_head(v3[0], share.repo.read_head().tag)
    report = share.checked()
    assert report.problems == [] and report.roots == 3
    assert report.listings == 5 and report.files == 4  # v3 wrote only "": its docs is v2's
