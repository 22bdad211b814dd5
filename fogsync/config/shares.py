"""Wiring: from a ``Config`` to live shares (store, repository, state).

The CLI and the daemon both start here, so a share is opened the same way
whichever face asks: its store behind a ``RetryingStore``.
"""

from __future__ import annotations

import os

from fogsync.config.file import Config, ShareConfig
from fogsync.engine.share import Share
from fogsync.folder.state import State
from fogsync.format.crypto import ShareKeys
from fogsync.repo.repository import Repo, spool_dir_for
from fogsync.store import open_store
from fogsync.store.retrying import RetryingStore


def state_path(cfg: Config) -> str:
    return os.path.join(cfg.state_dir, "state.sqlite")


def open_state(cfg: Config) -> State:
    return State(state_path(cfg))


def open_repo(cfg: Config, sc: ShareConfig) -> Repo:
    store = RetryingStore(open_store(sc.store, endpoint_url=cfg.s3_endpoint))
    return Repo(store, ShareKeys.derive(sc.open_key()), sc.name, spool_dir_for(cfg.state_dir))


def open_share(cfg: Config, name: str, state: State) -> Share:
    sc = cfg.share(name)
    return Share(
        name=sc.name,
        folder=sc.path,
        repo=open_repo(cfg, sc),
        state=state,
        host=cfg.host,
        exclude=tuple(cfg.exclude) + sc.exclude,
        workers=cfg.workers,
    )
