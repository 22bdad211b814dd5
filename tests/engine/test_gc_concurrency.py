"""Two hosts commit while a third forgets and prunes with no grace, again and again (issue 23), on a
local store and on S3 (moto over HTTP), in threads of one process: each host has its own folder,
state database and store handle.

Every round each writer adds files of 1 KB, 70 KB and 200 KB, deletes the ones of two rounds
before, and copies back content it deleted earlier (which it may still remember); the third host
runs ``forget --keep-last 2`` and ``prune --grace 0s`` in a loop. Afterwards every sync has
succeeded, the hosts converge, ``check`` passes and every kept root restores whole. The default
variant is short; ``-m slow`` runs a longer one.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest

from fogsync.engine.check import check_share
from fogsync.engine.forget import Policy, forget_share
from fogsync.engine.prune import prune_share
from fogsync.engine.restore import restore
from fogsync.errors import FogsyncError
from fogsync.repo.repository import Repo
from fogsync.store import open_store

SIZES = (1000, 70_000, 200_000)
# Seconds between two forget-and-prune runs. With no grace, a mark takes a writer's uploads not yet
# committed as candidates, and the writer starts again: back to back, prunes would starve the writers.
PAUSE = 0.5
# And between two rounds of a writer: a pass that lost its swap starts again from the scan, so a
# writer committing back to back would starve the other's merging passes, pruner or not.
WRITER_PAUSE = 0.3
SWEEPS = 2  # the writers go on until the pruner has deleted blocks this many times


def now() -> datetime:
    return datetime.now(timezone.utc)


def write_rounds(host, rounds: range, errors: list, ran: list, contents: dict[str, bytes],
                 more: Callable[[], bool] = lambda: False) -> None:
    """One writer: new files, deletions and content copied back, a sync per round; after ``rounds``,
    more rounds while ``more()`` says so."""
    i = rounds.start
    try:
        while i < rounds.stop or (more() and i < rounds.stop * 5):
            for size in SIZES:
                path = f"{host.name}/{i}-{size}.bin"
                contents[path] = os.urandom(size)
                host.write(path, contents[path])
            if i >= 2:
                for size in SIZES:
                    host.remove(f"{host.name}/{i - 2}-{size}.bin")
            if i >= 3:  # content deleted a round ago, back under a new name
                back = f"{host.name}/back-{i}.bin"
                contents[back] = contents[f"{host.name}/{i - 3}-70000.bin"]
                host.write(back, contents[back])
            host.sync_here()
            ran.append(host.name)
            i += 1
            time.sleep(WRITER_PAUSE)
    except BaseException as e:  # noqa: BLE001 - reported by the test, with the host's name
        errors.append(f"{host.name} round {i}: {e!r}")


def prune_loop(repo: Repo, done: threading.Event, errors: list, runs: list) -> None:
    while not done.is_set():
        try:
            forget_share(repo, Policy(last=2), "pruner", now, tz=timezone.utc)
            runs.append(prune_share(repo, "pruner", now, timedelta(0)))
            done.wait(PAUSE)
        except FogsyncError as e:
            if "kept committing" not in str(e):  # outrun by the writers: the next run goes on
                errors.append(f"pruner: {e!r}")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"pruner: {e!r}")
            return


def run_concurrently(hosts, store: str, rounds: int, tmp_path) -> None:
    a, b = hosts("alpha", store), hosts("beta", store)
    pruner = Repo(open_store(store), a.share().repo.keys, "docs")
    errors: list[str] = []
    ran: list[str] = []
    runs: list = []
    done = threading.Event()
    contents: dict[str, bytes] = {}
    for h in (a, b):  # a first pass each (it starts the worker processes), one after the other
        write_rounds(h, range(1), errors, ran, contents)
    def more() -> bool:
        return sum(1 for r in runs if r.deleted) < SWEEPS and not any(e.startswith("pruner") for e in errors)

    writers = [threading.Thread(target=write_rounds, args=(h, range(1, rounds), errors, ran, contents, more))
               for h in (a, b)]
    gc = threading.Thread(target=prune_loop, args=(pruner, done, errors, runs))
    gc.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    gc.join()
    assert errors == []
    assert len(ran) >= 2 * rounds
    assert sum(1 for r in runs if r.deleted) >= SWEEPS  # the prunes deleted while the writers committed

    for _ in range(2):
        a.sync_here()
        b.sync_here()
    assert a.tree() == b.tree()
    assert {p: v[1] for p, v in a.tree().items() if v[0] == "file"} == {
        p: data for p, data in contents.items() if (a.folder / p).exists()}
    forget_share(pruner, Policy(last=2), "pruner", now, tz=timezone.utc)
    prune_share(pruner, "pruner", now, timedelta(0))
    report = check_share(pruner)
    assert report.problems == []
    folder = a.tree()
    history = list(pruner.history(pruner.read_head().root))
    for n, (ref, root) in enumerate(history):
        tree = pruner.load_tree(root.root)
        dest = tmp_path / f"restored-{n}"
        restore(pruner, tree, str(dest))
        files = {p for p, e in tree.items() if e.type == "file"}
        assert all((dest / p).stat().st_size == tree[p].size for p in files)
    newest = {p: v for p, v in folder.items() if v[0] == "file"}
    restored = tmp_path / "restored-0"
    assert all((restored / p).read_bytes() == v[1] for p, v in newest.items())
    pruner.close()


def test_two_writers_and_a_pruner(hosts, share_store, tmp_path):
    run_concurrently(hosts, share_store, 6, tmp_path)


@pytest.mark.slow
def test_two_writers_and_a_pruner_for_longer(hosts, share_store, tmp_path):
    run_concurrently(hosts, share_store, 30, tmp_path)
