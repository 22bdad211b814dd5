"""Passes, forgets, marks and sweeps interleaved step by step (hypothesis), in process, on a memory
store: a forget, a mark or a sweep may also land inside a pass, after its first block upload or
just before its head swap (a store wrapper, through the public Store interface). Whatever the
order, no root ever refers to a deleted block: ``check`` passes after every step, and the hosts
converge at the end."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from datetime import datetime, timedelta, timezone

from hosts import Host
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fogsync.engine.check import check_share
from fogsync.engine.forget import Policy, forget_share
from fogsync.engine.prune import prune_share
from fogsync.engine.sync import sync_share
from fogsync.repo.repository import Repo
from fogsync.store import open_store
from fogsync.store.wrapper import Wrapper

GRACE = timedelta(hours=1)


class Clock:
    """The pruner's wall clock, moved on past the grace period before each prune step."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


class Interloper(Wrapper):
    """Runs ``action`` once, at the first block put or just before the head swap of a pass."""

    def __init__(self, inner, action, at: str) -> None:
        super().__init__(inner)
        self.action, self.at = action, at

    def _maybe(self, where: str) -> None:
        if self.action is not None and self.at == where:
            action, self.action = self.action, None
            action()

    def put(self, key, data):
        self._maybe("upload")
        self.inner.put(key, data)

    def put_if(self, key, data, expected_tag):
        self._maybe("swap")
        return self.inner.put_if(key, data, expected_tag)


GC_STEPS = ("forget", "prune", "collect")  # collect: a forget, a mark and a sweep in a row
# An edit on a host and that host's pass, into which a forget, a mark or a sweep may cut; or one of
# those on its own.
STEPS = st.one_of(
    st.tuples(st.sampled_from(["write", "delete", "copy back", "nothing"]), st.sampled_from([0, 1]),
              st.integers(0, 3), st.sampled_from([None, None, "upload", "swap"]), st.sampled_from(GC_STEPS)),
    st.tuples(st.sampled_from(GC_STEPS)),
)


class World:
    def __init__(self, home: str) -> None:
        url = f"memory://interleave-{uuid.uuid4().hex}"
        self.hosts = [Host(os.path.join(home, n), n, url) for n in ("alpha", "beta")]
        self.pruner = Repo(open_store(url), self.hosts[0].share().repo.keys, "docs")
        self.clock = Clock()
        self.deleted: list[bytes] = []  # content some host deleted: copied back later
        self.serial = 0

    def gc(self, step: str) -> None:
        if self.pruner.read_head().root is None:
            return
        if step == "collect":
            for one in ("forget", "prune", "prune"):
                self.gc(one)
        elif step == "forget":
            forget_share(self.pruner, Policy(last=2), "pruner", self.clock, tz=timezone.utc)
        else:
            self.clock.offset += 2 * GRACE  # every block is past the grace; a mark is too
            prune_share(self.pruner, "pruner", self.clock, GRACE)

    def edit(self, kind: str, host: int, n: int) -> None:
        h = self.hosts[host]
        self.serial += 1
        size = (1000, 70_000, 200_000, 5)[n]
        if kind == "write":
            h.write(f"{h.name}-{self.serial}.bin", os.urandom(size))
        elif kind == "delete":
            mine = sorted(p for p in h.tree() if p.endswith(".bin"))
            if mine:
                self.deleted.append(h.read(mine[n % len(mine)]))
                h.remove(mine[n % len(mine)])
        elif kind == "copy back" and self.deleted:
            h.write(f"back-{h.name}-{self.serial}.bin", self.deleted[n % len(self.deleted)])

    def sync(self, host: int, at: str | None, step: str) -> None:
        share = self.hosts[host].share()
        if at is None:
            sync_share(share)
            return
        store = Interloper(share.repo.store, lambda: self.gc(step), at)
        hooked = dataclasses.replace(share, repo=Repo(store, share.repo.keys, "docs"))
        try:
            sync_share(hooked)
        finally:
            hooked.repo.close()

    def close(self) -> None:
        self.pruner.close()
        for h in self.hosts:
            h.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEPS, min_size=3, max_size=12))
# Content a host remembers (it deleted it), then forgotten and swept, then copied back: on its own,
# and with the forget, mark and sweep landing just before the copy's head swap.
@example([("write", 0, 1, None, "forget"), ("delete", 0, 0, None, "forget"), ("write", 1, 0, None, "forget"),
          ("collect",), ("copy back", 0, 0, None, "forget")])
@example([("write", 0, 2, None, "forget"), ("delete", 0, 0, None, "forget"), ("write", 1, 0, None, "forget"),
          ("copy back", 0, 0, "swap", "collect")])
@example([("write", 0, 1, None, "forget"), ("write", 1, 0, None, "forget"), ("delete", 1, 0, "upload", "collect"),
          ("nothing", 1, 0, None, "collect"), ("write", 0, 3, None, "forget")])
def test_no_interleaving_commits_a_reference_to_a_deleted_block(steps):
    with tempfile.TemporaryDirectory() as home:
        world = World(home)
        try:
            for step in steps:
                if step[0] in GC_STEPS:
                    world.gc(step[0])
                else:
                    kind, host, n, at, gc = step
                    world.edit(kind, host, n)
                    world.sync(host, at, gc)
                if world.pruner.read_head().root is not None:
                    assert check_share(world.pruner).problems == [], step
            a, b = world.hosts
            for _ in range(2):
                sync_share(a.share())
                sync_share(b.share())
            assert a.tree() == b.tree()
            world.gc("prune")
            world.gc("prune")
            assert check_share(world.pruner).problems == []
        finally:
            world.close()
