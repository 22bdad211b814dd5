"""fogsync.platform.processes: batches to worker processes, answers in order, nothing lost when the pool breaks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from fogsync.platform import processes
from fogsync.platform.processes import map_in_processes

_offset: list[int] = []


def _init(offset: int) -> None:
    _offset[:] = [offset]


def _add(items: list[int]) -> list[int]:
    return [i + _offset[0] for i in items]


def _die_on_13(items: list[int]) -> list[int]:
    if 13 in items:
        os._exit(3)  # a worker that crashes: the pool breaks
    return [i + _offset[0] for i in items]


def test_every_item_answered_in_order_across_batches():
    items = list(range(1000))
    out = list(map_in_processes(_add, items, _init, (5,), workers=2, batch=7))
    assert out == [(i, i + 5) for i in items]


def test_no_items_no_pool():
    assert list(map_in_processes(_add, [], _init, (0,))) == []


def test_a_broken_pool_hands_back_what_is_unanswered():
    items = list(range(40))
    out = list(map_in_processes(_die_on_13, items, _init, (100,), workers=1, batch=4))
    assert [i for i, _ in out] == items  # each item exactly once, in order
    answered = {i: r for i, r in out if r is not None}
    assert all(r == i + 100 for i, r in answered.items())
    assert 13 not in answered and 12 not in answered  # the crashed batch is unanswered
    assert answered.keys() == set(range(len(answered)))  # a prefix: the rest comes back for the caller


def test_a_batch_answered_just_before_the_pool_broke_is_not_lost():
    # The consumer dawdles while the worker answers 8-11 and dies on 12-15: the next send then finds
    # the pool broken, and the answers for 8-11 must still come out.
    items = list(range(40))
    out = []
    for i, r in map_in_processes(_die_on_13, items, _init, (100,), workers=1, batch=4):
        out.append((i, r))
        if i == 4:
            time.sleep(2)
    assert [i for i, _ in out] == items
    assert {i for i, r in out if r is not None} >= set(range(12))


def test_what_the_items_raise_is_raised_not_taken_for_a_broken_pool():
    def items():
        yield from range(600)
        raise OSError(28, "No space left on device")  # an OSError, as the pool's own breaking would be

    taken = []
    with pytest.raises(OSError, match="No space left"):
        for item, result in map_in_processes(_add, items(), _init, (1,), workers=2, batch=100):
            taken.append((item, result))
    assert all(result == item + 1 for item, result in taken)  # nothing handed back unanswered


def test_worker_processes_are_worth_it_only_for_enough_items_and_cores(monkeypatch):
    from fogsync.platform import processes

    monkeypatch.setattr(processes.os, "cpu_count", lambda: 2)
    assert processes.worth_processes(2000, workers=3, processes_min=2000)
    assert not processes.worth_processes(1999, workers=3, processes_min=2000)
    assert not processes.worth_processes(5000, workers=1, processes_min=2000)
    monkeypatch.setattr(processes.os, "cpu_count", lambda: 1)
    assert not processes.worth_processes(5000, workers=3, processes_min=2000)


def test_a_worker_forked_from_another_copy_of_fogsync_refuses_to_run():
    called = []
    with pytest.raises(RuntimeError, match="the caller from /elsewhere"):
        processes._start_worker(called.append, ("init",), "/elsewhere/fogsync/__init__.py")
    assert called == []
    processes._start_worker(called.append, ("init",), processes._fogsync_file())
    assert called == ["init"]


def test_the_server_is_not_started_early_where_it_would_import_another_fogsync(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert processes._server_imports_ours()  # this copy is found beyond the current directory
    (tmp_path / "fogsync").mkdir()
    (tmp_path / "fogsync" / "__init__.py").write_text("")  # a checkout of another version, say
    assert not processes._server_imports_ours()


def test_no_head_start_from_a_removed_current_directory(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert not processes._server_imports_ours()
    processes.start_early(["fogsync.engine.push"])  # and no error


START_EARLY = textwrap.dedent("""
    import sys
    from fogsync.platform import processes

    def preloaded(items):
        return [name in sys.modules for name in items]

    def nothing():
        pass

    if __name__ == "__main__":
        if sys.argv[1] == "early":
            processes.start_early(["fogsync.engine.merge"])
        names = ["fogsync.engine.merge", "fogsync.folder.state"]
        print(dict(processes.map_in_processes(preloaded, names, nothing, workers=1)))
""")


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(), reason="no forkserver")
def test_start_early_has_workers_fork_from_a_server_that_imported_what_they_run(tmp_path):
    script = tmp_path / "early.py"
    script.write_text(START_EARLY)
    runs = {}
    for how in ("early", "late"):
        out = subprocess.run([sys.executable, str(script), how], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        runs[how] = out.stdout.strip()
    # Neither module is imported by the worker itself: only the early server had fogsync.merge.
    assert runs == {"early": "{'fogsync.engine.merge': True, 'fogsync.folder.state': False}",
                    "late": "{'fogsync.engine.merge': False, 'fogsync.folder.state': False}"}
