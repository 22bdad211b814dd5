"""fogsync.engine.progress: the counters a pass, a restore, a check and a prune keep reach their totals."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from helpers import Recorder, small_tree

from fogsync.engine import restore
from fogsync.engine.check import check_share
from fogsync.engine.forget import Policy, forget_share
from fogsync.engine.progress import NO_PROGRESS, Progress, as_progress
from fogsync.engine.prune import prune_share
from fogsync.engine.push import PARALLEL_MIN, ContentIndex, seal_files


def test_counts_add_up_across_threads():
    p = Progress(clock=lambda: 5.0)
    p.phase("pushing", 4000, 8000)

    def work():
        for _ in range(1000):
            p.add(1, 2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = p.snapshot()
    assert (s.phase, s.files_done, s.files_total, s.bytes_done, s.bytes_total) == ("pushing", 4000, 4000, 8000, 8000)
    assert s.phase_started == 5.0


def test_a_new_phase_starts_from_zero_and_grow_raises_the_totals():
    p = Progress()
    p.phase("pushing", 2, 10)
    p.add(2, 10)
    p.note("nearly there")
    p.phase("checking")
    s = p.snapshot()
    assert (s.files_done, s.files_total, s.bytes_done, s.bytes_total, s.note) == (0, None, 0, None, None)
    p.grow(3, 30)
    p.grow(1, 5)
    assert p.snapshot()[1:5] == (0, 4, 0, 35)


def test_the_default_counts_nothing_and_a_text_callback_hears_only_notes():
    NO_PROGRESS.phase("pushing", 1, 1)
    NO_PROGRESS.add(1, 1)
    assert NO_PROGRESS.snapshot().phase is None
    heard: list[str] = []
    p = as_progress(heard.append)
    p.phase("pruning")
    p.add(1, 1)
    p("listing the store")
    assert heard == ["listing the store"]
    real = Progress()
    assert as_progress(real) is real and as_progress(None) is NO_PROGRESS


def _files(folder, sizes: dict[str, int]) -> None:
    for path, n in sizes.items():
        full = os.path.join(folder, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(os.urandom(n))


@pytest.mark.parametrize("processes_min", [2, 10_000], ids=["worker processes", "this process"])
def test_sealing_counts_every_file_with_its_scanned_size(repo, tmp_path, processes_min):
    sizes = {f"d/small{i}.bin": 100 + i for i in range(30)}
    sizes.update({"big1.bin": PARALLEL_MIN, "big2.bin": PARALLEL_MIN + 7, "mid.bin": 200_000})
    _files(tmp_path, sizes)
    p = Recorder()
    sealed = seal_files(str(tmp_path), sorted(sizes), repo.writer(), repo.keys, ContentIndex(), "h", workers=3,
                        sizes=sizes, processes_min=processes_min, progress=p)
    assert len(sealed.entries) == len(sizes)
    total = sum(sizes.values())
    assert p.ends() == {"pushing": (len(sizes), len(sizes), total, total)}
    assert p.snapshot().current in sizes


def test_a_file_that_cannot_be_read_still_counts_as_done(repo, tmp_path):
    sizes = {"here.txt": 10, "gone.txt": 20}
    _files(tmp_path, {"here.txt": 10})
    p = Recorder()
    sealed = seal_files(str(tmp_path), sorted(sizes), repo.writer(), repo.keys, ContentIndex(), "h", sizes=sizes,
                        progress=p)
    assert len(sealed.problems) == 1
    assert p.ends() == {"pushing": (2, 2, 30, 30)}


@pytest.mark.parametrize("processes_min", [2, 10_000], ids=["worker processes", "threads"])
def test_restore_counts_files_not_directories(repo, tmp_path, processes_min):
    files = {f"f{i}.txt": os.urandom(50 + i) for i in range(12)}
    tree = small_tree(repo, files)
    p = Recorder()
    restore.restore(repo, tree, str(tmp_path / "out"), processes_min=processes_min, progress=p)
    total = sum(len(v) for v in files.values())
    assert p.ends() == {"restoring": (12, 12, total, total)}
    assert p.snapshot().current in files  # the path in the share, not in the target


def test_a_pass_reports_each_phase_and_reaches_its_totals(hosts):
    store = f"memory://progress-{uuid.uuid4().hex}"
    laptop, desktop = hosts("laptop", store), hosts("desktop", store)
    data = {f"docs/{i}.txt": os.urandom(1000 + i) for i in range(40)}
    data["big.bin"] = os.urandom(PARALLEL_MIN + 1)
    for path, content in data.items():
        laptop.write(path, content)
    total = sum(len(v) for v in data.values())

    p = laptop.share().progress = Recorder()
    laptop.sync_here()
    ends = p.ends()
    # A first sync pushes as it walks (``first``): its totals grow with the walk, and end equal.
    assert [s.phase for s in p.ended] + [p.snapshot().phase] == ["pushing", "uploading"]
    assert ends["pushing"] == (41, 41, total, total)

    p = desktop.share().progress = Recorder()
    desktop.sync_here()
    assert p.ends()["pulling"] == (41, 41, total, total)

    laptop.write("docs/0.txt", b"changed")
    p = laptop.share().progress = Recorder()
    laptop.sync_here()
    assert [s.phase for s in p.ended] + [p.snapshot().phase] == ["scanning", "pushing", "uploading"]
    files, files_total, nbytes, bytes_total = p.ends()["pushing"]
    assert files == files_total > 0 and nbytes == bytes_total


def test_check_counts_each_content_once_with_totals_found_as_it_walks(hosts):
    store = f"memory://progress-{uuid.uuid4().hex}"
    h = hosts("laptop", store)
    h.write("a.txt", "one")
    h.write("sub/b.txt", "two")
    h.sync_here()
    h.write("sub/c.txt", "three!")  # v2 names a.txt's and b.txt's contents again: each is checked once
    h.sync_here()
    p = Recorder()
    notes: list[str] = []
    p.note = notes.append
    report = check_share(h.share().repo, p)
    assert report.problems == [] and report.files == 3
    assert p.ends() == {"checking": (3, 3, 12, 12)}
    assert notes == ["root v2", "root v1"]


def test_a_sweep_counts_the_blocks_it_deletes(hosts):
    store = f"memory://progress-{uuid.uuid4().hex}"
    h = hosts("laptop", store)
    h.write("a.bin", os.urandom(5000))
    h.sync_here()
    h.remove("a.bin")
    h.write("b.txt", "kept")
    h.sync_here()
    repo = h.share().repo
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    forget_share(repo, Policy(last=1), "laptop", lambda: later, tz=timezone.utc)
    p = Recorder()
    result = prune_share(repo, "laptop", lambda: later, grace=timedelta(0), progress=p)
    assert result.deleted >= 1
    assert p.ends()["pruning"] == (result.deleted, result.deleted, result.deleted_bytes, result.deleted_bytes)
