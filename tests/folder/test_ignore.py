"""fogsync.folder.ignore: gitignore semantics and the built-in scratch-file patterns."""

from __future__ import annotations

import os

import pytest

from fogsync.folder.ignore import BUILTIN, IGNORE_FILE, Ignore, temp_file


def ig(*patterns: str) -> Ignore:
    return Ignore(patterns)


@pytest.mark.parametrize(
    "patterns,path,is_dir,expected",
    [
        # unanchored: any depth
        (["*.log"], "a.log", False, True),
        (["*.log"], "x/y/a.log", False, True),
        (["*.log"], "a.log.txt", False, False),
        (["name"], "x/name", False, True),
        (["name"], "x/name", True, True),
        (["name"], "x/names", False, False),
        # a leading or inner slash anchors at the top
        (["/top"], "top", False, True),
        (["/top"], "a/top", False, False),
        (["a/b"], "a/b", False, True),
        (["a/b"], "x/a/b", False, False),
        (["doc/*.txt"], "doc/a.txt", False, True),
        (["doc/*.txt"], "doc/x/a.txt", False, False),  # * does not cross /
        # trailing slash: directories only (and what is under them)
        (["logs/"], "logs", True, True),
        (["logs/"], "logs", False, False),
        (["logs/"], "a/logs", True, True),
        (["logs/"], "a/logs/x.txt", False, True),
        (["/logs/"], "a/logs", True, False),
        # a matched directory takes everything under it
        (["build"], "build/x/y.o", False, True),
        (["*.d"], "x.d/inner", False, True),
        # ?, [...], [!...]
        (["f?o"], "foo", False, True),
        (["f?o"], "f/o", False, False),
        (["[ab].txt"], "a.txt", False, True),
        (["[ab].txt"], "c.txt", False, False),
        (["[!ab].txt"], "a.txt", False, False),
        (["[!ab].txt"], "c.txt", False, True),
        (["[a-c]x"], "bx", False, True),
        # **
        (["**/foo"], "foo", False, True),
        (["**/foo"], "a/b/foo", False, True),
        (["abc/**"], "abc/x/y", False, True),
        (["abc/**"], "abc", True, False),
        (["abc/**"], "x/abc/y", False, False),
        (["a/**/b"], "a/b", False, True),
        (["a/**/b"], "a/x/y/b", False, True),
        (["a/**/b"], "xa/b", False, False),
        # negation: the last matching pattern wins
        (["*.log", "!keep.log"], "keep.log", False, False),
        (["*.log", "!keep.log"], "x/keep.log", False, False),
        (["*.log", "!keep.log"], "other.log", False, True),
        (["!keep.log", "*.log"], "keep.log", False, True),
        (["*.o", "!/x.o"], "x.o", False, False),
        (["*.o", "!/x.o"], "d/x.o", False, True),
        (["*", "!*.txt"], "a.txt", False, False),
        # comments, blank lines and trailing spaces
        (["# a comment", "", "   "], "# a comment", False, False),
        (["foo   "], "foo", False, True),
        # nothing by default but the builtin list
        ([], "notes.txt", False, False),
        ([], "dir", True, False),
    ],
)
def test_gitignore_semantics(patterns, path, is_dir, expected):
    assert ig(*patterns).ignored(path, is_dir) is expected


@pytest.mark.parametrize(
    "path",
    [
        ".fogsync-tmp-0123abcd", "sub/.fogsync-anything",
        "a.swp", "d/.a.swp", "a.swx", "a.swo", "notes.txt~", ".#notes.txt",
        "movie.part", "x.crdownload", "y.partial", ".~lock.report.odt#",
    ],
)
def test_builtin_editor_and_download_temp_files(path):
    assert Ignore().ignored(path)


def test_builtin_emacs_autosave_files():
    assert "#*#" in BUILTIN
    assert Ignore().ignored("#notes.txt#")


@pytest.mark.parametrize("path", ["notes.txt", "swp", "a.swp.txt", "part", "partial.doc", "fogsync-x", "a~b"])
def test_builtins_leave_ordinary_names_alone(path):
    assert not Ignore().ignored(path)


def test_user_patterns_cannot_unignore_our_temp_files_by_accident():
    # Builtins come first, so a user's "!" can re-include them; a plain pattern cannot un-ignore.
    assert Ignore(["*.txt"]).ignored(".fogsync-tmp-1")


def test_dir_pattern_covers_files_of_the_same_name_below_it():
    assert ig("logs/").ignored("logs/logs", False)


def test_for_folder_reads_the_ignore_file_and_extra(tmp_path):
    (tmp_path / IGNORE_FILE).write_text("# comment\n*.tmp\n!keep.tmp\nbuild/\n", encoding="utf-8")
    i = Ignore.for_folder(str(tmp_path), extra=["*.bak"])
    assert i.ignored("a.tmp") and not i.ignored("keep.tmp")
    assert i.ignored("build", True) and i.ignored("x.bak")
    assert not i.ignored(IGNORE_FILE)  # the ignore file itself is synced


def test_for_folder_without_an_ignore_file(tmp_path):
    i = Ignore.for_folder(str(tmp_path), extra=["x"])
    assert i.ignored("x") and not i.ignored("y")


def test_for_folder_with_an_unreadable_ignore_file(tmp_path):
    (tmp_path / IGNORE_FILE).write_bytes(b"\xff\xfe*.x\n")
    i = Ignore.for_folder(str(tmp_path))  # not UTF-8: ignored, not fatal
    assert not i.ignored("a.x")


@pytest.mark.parametrize("patterns", [["a[!x]b"], ["a[!x]b", "!keep"]], ids=["fast", "with-negation"])
def test_a_negated_class_never_matches_a_slash(patterns):
    ig = Ignore(patterns)
    assert ig.ignored("ayb")
    assert not ig.ignored("a/b")
    assert not ig.ignored_here("a/b")


@pytest.mark.parametrize("patterns", [["*.log"], ["*.log", "!keep"]], ids=["fast", "with-negation"])
def test_name_patterns_and_path_patterns_give_the_same_answers_both_ways(patterns):
    ig = Ignore([*patterns, "build/out", "/top.txt", "deep/**/x"])
    cases = {"a.log": True, "d/a.log": True, "a.log.txt": False, "build/out": True, "x/build/out": False,
             "top.txt": True, "d/top.txt": False, "deep/1/2/x": True, "deep/x": True, "x": False}
    for path, expected in cases.items():
        assert ig.ignored_here(path) is expected, path


NAME_GLOBS = ["*.log", "a*", "#*#", ".~lock.*#", "exact", "a?c", "[ab]x*", "*[0-9]", "x*y*z", "\\q*", "?*", "*"]
NAMES = ["a.log", "log", ".log", "abc", "a", "#x#", "#", "##", ".~lock.f#", ".~lock.", "exact", "exactly", "inexact",
         "axc", "bxq", "cx", "f9", "9f", "xyz", "x1y2z", "xz", "\\qq", "q", "", "b", "ü.log", "x/a.log"]


@pytest.mark.parametrize("glob", NAME_GLOBS)
def test_the_quick_name_filter_never_changes_an_answer(glob):
    quick = Ignore([glob])
    rule_by_rule = Ignore([glob, "!never-matches-anything"])  # a "!" rule turns the quick path off
    for name in NAMES:
        for is_dir in (False, True):
            assert quick.ignored_here(name, is_dir) is rule_by_rule.ignored_here(name, is_dir), (glob, name)


def test_temp_file_names_exactly_what_a_pull_writes(tmp_path):
    from fogsync.engine.prepare import _temp_name

    written = os.path.basename(_temp_name(str(tmp_path / "notes.txt")))
    assert temp_file(written)
    for name in (".fogsync-tmp-12-0123abcd-7", ".fogsync-tmp-4194304-ffffffff-0"):
        assert temp_file(name)
    for name in (".fogsync-tmp-notes.txt", ".fogsync-tmp-12-0123ABCD-7", ".fogsync-tmp-12-0123abcd-7.bak",
                 "x.fogsync-tmp-12-0123abcd-7", ".fogsync-tmp-12-0123abc-7", ".fogsync-state", ".tmp-0123abcd"):
        assert not temp_file(name), name
