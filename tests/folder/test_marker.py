"""fogsync.folder.marker: the file that says a folder is the share's, on real files."""

from __future__ import annotations

import os

from fogsync.folder.ignore import Ignore
from fogsync.folder.marker import MARKER, has_marker, holds_most, write_marker


def test_the_marker_names_the_share_and_is_never_synced(tmp_path):
    assert not has_marker(str(tmp_path))
    write_marker(str(tmp_path), "docs")
    assert has_marker(str(tmp_path)) and "'docs'" in (tmp_path / MARKER).read_text()
    assert Ignore().ignored(MARKER) and Ignore.for_folder(str(tmp_path)).ignored_name(MARKER, MARKER, False)


def test_an_existing_marker_is_left_as_it_is(tmp_path):
    (tmp_path / MARKER).write_text("mine")
    write_marker(str(tmp_path), "docs")
    assert (tmp_path / MARKER).read_text() == "mine"


def test_a_symlink_or_a_directory_is_no_marker(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / MARKER)
    assert not has_marker(str(tmp_path))
    os.unlink(tmp_path / MARKER)
    (tmp_path / MARKER).mkdir()
    assert not has_marker(str(tmp_path))


def test_holding_most_means_more_than_half_of_the_paths(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("a", "d/b"):
        (tmp_path / name).write_text("")
    assert holds_most(str(tmp_path), ["a", "d/b", "c"])  # two of three
    assert not holds_most(str(tmp_path), ["a", "d/b", "c", "e"])  # two of four: not more than half
    assert not holds_most(str(tmp_path), ["x"])
    assert holds_most(str(tmp_path), [])  # nothing to lose
