"""Upkeep: the daemon applies a share's retention once a day, then prunes, so a share it syncs stays bounded.

After a successful pass, a share with a retention policy (``[retention]`` or
``[shares.NAME.retention]``) is forgotten (``forget_share``) when this host
has not done so for a day, then pruned with the default grace
(``prune_share``). A mark must age for the grace period before its sweep, so
the sweep runs on the first pass after that, not a day later. Every step is
a commit that swaps the head, as FORMAT.md 8 requires, so several hosts
doing this at once is safe; the one that loses a swap re-reads the head.
What was done is kept in the state (``State.upkeep``) for ``status``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from fogsync.engine.forget import ForgetResult, Policy, forget_share
from fogsync.engine.prune import DEFAULT_GRACE, MARKED, PruneResult, prune_share
from fogsync.engine.share import Share
from fogsync.folder.state import State, Upkept
from fogsync.format.roots import format_date, parse_date

log = logging.getLogger(__name__)

EVERY = timedelta(days=1)


@dataclass
class Upkeep:
    """When and how one share is forgotten and pruned by the daemon."""

    policy: Policy | None
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    grace: timedelta = DEFAULT_GRACE
    every: timedelta = EVERY

    def due(self, state: State, name: str) -> tuple[bool, bool]:
        """(forget, prune): what is due now."""
        if self.policy is None:
            return False, False
        done = state.upkeep(name)
        now = self.now()
        forget = done.forget_at is None or now - parse_date(done.forget_at) >= self.every
        sweep = done.sweep_at is not None and now >= parse_date(done.sweep_at)
        return forget, forget or sweep

    def run(self, share: Share) -> bool:
        """Forget and prune ``share`` if due; True if anything ran."""
        forget, prune = self.due(share.state, share.name)
        if not prune or share.repo.read_head().root is None:  # a share with no commits yet has nothing to keep
            return False
        state, name, repo = share.state, share.name, share.repo

        def own(ref: bytes) -> None:
            state.add_own_root(name, ref)

        if forget:
            result = forget_share(repo, self.policy, share.host, self.now, before_swap=own)
            record_forget(state, name, self.now(), result)
            if result.root:
                log.info("%s: retention (%s) forgot %d root(s)", name, self.policy.describe(), len(result.forgotten))
        pruned = prune_share(repo, share.host, self.now, self.grace, before_swap=own)
        record_prune(state, name, self.now(), self.grace, pruned)
        if pruned.deleted:
            log.info("%s: prune deleted %d object(s) (%d bytes)", name, pruned.deleted, pruned.deleted_bytes)
        return True


def record_forget(state: State, name: str, at: datetime, result: ForgetResult) -> None:
    """Keep what a forget did for ``status``, and so the daily one waits a day from it (daemon or CLI alike)."""
    state.record_forget(name, format_date(at), len(result.forgotten) if result.root else 0)


def record_prune(state: State, name: str, at: datetime, grace: timedelta, result: PruneResult) -> None:
    """Keep what a prune did for ``status``, with when its mark may be swept, so the daemon sweeps it then."""
    sweep_at = result.waiting_until
    if result.state == MARKED and sweep_at is None:
        sweep_at = at + grace
    state.record_prune(name, format_date(at), result.deleted, result.deleted_bytes,
                       format_date(sweep_at) if sweep_at else None)


def upkeep_doc(done: Upkept) -> dict:
    """``status --json``'s ``last_forget`` and ``last_prune`` (docs/json.md)."""
    forget = {"at": done.forget_at, "roots_forgotten": done.forgot} if done.forget_at else None
    prune = None
    if done.prune_at:
        prune = {"at": done.prune_at, "deleted_objects": done.deleted, "deleted_bytes": done.deleted_bytes,
                 "sweep_at": done.sweep_at}
    return {"last_forget": forget, "last_prune": prune}
