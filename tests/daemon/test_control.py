"""fogsync.daemon.control: what ``status`` says waits to sync, from a real folder and state database."""

from __future__ import annotations

import os

from helpers import SETTLED

from fogsync.daemon import control
from fogsync.daemon.control import waiting
from fogsync.engine.progress import Progress
from fogsync.folder.state import State


def counts(h) -> tuple[int, int]:
    share = h.share()
    return waiting(share.folder, share.exclude, share.state, share.name)


def test_waiting_counts_changed_new_and_gone_files(hosts, tmp_path):
    h = hosts("laptop", str(tmp_path / "store"))
    for rel in ("a.txt", "b.txt", "c.txt"):
        h.write(rel, rel)
        os.utime(h.path(rel), ns=(SETTLED, SETTLED))
    assert counts(h) == (3, 15)
    h.sync_here()
    assert counts(h) == (0, 0)
    h.write("a.txt", "changed")
    h.write("new.txt", "12")
    h.remove("b.txt")
    assert counts(h) == (3, 9)


def test_a_folder_as_the_last_pass_scanned_it_waits_for_nothing_unloaded(hosts, tmp_path, monkeypatch):
    h = hosts("laptop", str(tmp_path / "store"))
    h.write("a.txt", "a")
    os.utime(h.path("a.txt"), ns=(SETTLED, SETTLED))
    h.sync_here()
    loaded = []
    real = State.load
    monkeypatch.setattr(State, "load", lambda self, name: loaded.append(name) or real(self, name))
    assert counts(h) == (0, 0) and loaded == []
    os.utime(h.path("a.txt"), ns=(SETTLED + 1, SETTLED + 1))  # touched: a pass would read it again
    assert counts(h) == (1, 1) and loaded == []  # the one directory, moved, loaded by itself


def test_only_the_directories_whose_scan_moved_are_compared(hosts, tmp_path, monkeypatch):
    h = hosts("laptop", str(tmp_path / "store"))
    for rel in ("a/1.txt", "a/2.txt", "b/1.txt", "c/d/1.txt", "top.txt"):
        h.write(rel, rel)
        os.utime(h.path(rel), ns=(SETTLED, SETTLED))
    h.sync_here()
    loaded, partly = [], []
    real, real_dirs = State.load, State.load_dirs
    monkeypatch.setattr(State, "load", lambda self, name: loaded.append(name) or real(self, name))
    monkeypatch.setattr(State, "load_dirs", lambda self, name, dirs: partly.append(set(dirs)) or real_dirs(self, name, dirs))
    h.write("a/1.txt", "changed!")
    h.remove("c")
    assert counts(h) == (2, 8)  # a/1.txt changed, c/d/1.txt gone
    assert loaded == [] and partly == [{"", "a", "c", "c/d"}]


def test_a_pass_in_hand_shows_its_phase_and_counts():
    progress = Progress()
    assert control.progress_doc(None) is None
    assert control.progress_doc(progress.snapshot())["phase"] == "starting"
    progress.phase("scanning")
    assert control.progress_text(control.progress_doc(progress.snapshot())) == "; scanning"
    progress.phase("pushing", 2000, 40 * 1024 * 1024)
    progress.add(120, 1536 * 1024)
    progress.current = "docs/a.txt"
    doc = control.progress_doc(progress.snapshot())
    assert doc == {"phase": "pushing", "files_done": 120, "files_total": 2000, "bytes_done": 1536 * 1024,
                   "bytes_total": 40 * 1024 * 1024, "current_files": ["docs/a.txt"]}
    assert control.progress_text(doc) == "; pushing 120/2000 files (1.5 MiB/40.0 MiB)"
    assert control.progress_text(None) == ""
