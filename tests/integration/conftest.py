"""Fixtures for tests that drive the real CLI as a subprocess.

``cli_host(name, store, key=...)`` makes a host: its own config file, state
dir and share folder under tmp_path, and ``host.run(*args)`` runs
``python -m fogsync --config CFG --host NAME ...`` with the test's
environment (so the moto fixtures' AWS variables reach it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY = "11" * 32


@dataclass
class CliHost:
    name: str
    config: Path
    state: Path
    folder: Path
    store: str
    key: str

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120):
        cmd = [sys.executable, "-m", "fogsync", "--config", str(self.config), "--host", self.name, *args]
        env = dict(os.environ)
        env.pop("FOGSYNC_CONFIG", None)
        env.pop("FOGSYNC_HOST", None)
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    def add(self, share: str = "docs") -> None:
        self.run("add-share", share, self.key, "--path", str(self.folder), "--store", self.store)

    def sync(self, *names: str):
        return self.run("sync", *names)


@pytest.fixture
def cli_host(tmp_path: Path):
    def make(name: str, store: str, key: str = KEY, add: bool = True) -> CliHost:
        home = tmp_path / name
        home.mkdir()
        config = home / "config.toml"
        config.write_text(f'state_dir = "{home / "state"}"\n')
        host = CliHost(name, config, home / "state", home / "folder", store, key)
        if add:
            host.add()
        return host

    return make


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path: Path) -> str:
    """A fresh store for CLI tests: a local directory, and an S3 bucket on moto."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_url")
