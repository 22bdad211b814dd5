"""Share: what a pass needs to know about one share.

The folder, the repo and state it syncs with, this host's name, and the
knobs a caller sets for a pass (workers, the settle time, the injectable
clocks, progress, and the consents a refusal asks for). Used by every
step of a pass (``sync``, ``first``) and wired from the config
(``config.shares``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from fogsync.engine.progress import NO_PROGRESS, Progress
from fogsync.engine.vouch import VouchMemo
from fogsync.folder.state import State
from fogsync.repo.repository import Repo


@dataclass
class Share:
    """What a pass needs to know about one share."""

    name: str
    folder: str
    repo: Repo
    state: State
    host: str
    exclude: tuple[str, ...] = ()
    workers: int = 3
    settle_ns: int = 0  # files modified more recently than this wait for a later pass
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    clock_ns: Callable[[], int] = time.time_ns
    progress: Progress = NO_PROGRESS  # what the pass has done so far, for whoever shows it
    accept_rollback: bool = False  # a store whose head does not descend from what this host saw is taken as it is
    allow_mass_delete: bool = False  # local changes may delete more than half of the files (``refusals``)
    memo: VouchMemo | None = None  # a long-lived process's: the vouched digests kept between passes
