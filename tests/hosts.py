"""A host of a share for tests: its own config, state dir and folder; the CLI as a subprocess or the engine in process."""

from __future__ import annotations

import os

from helpers import folder_tree

SHARE = "docs"
SHARE_KEY = "5a" * 32


class Host:
    """One host of a share: its own config file, state dir and folder under ``home``; the store is shared.

    ``run``/``start``/``sync`` drive the installed CLI as a subprocess (the
    host name comes from the config's ``host``); ``share()`` builds the same
    host in-process as a ``share.Share`` (same state database), ``sync_here``
    runs one pass with it.
    """

    def __init__(
        self, home, name: str, store: str, key: str = SHARE_KEY, share: str = SHARE, with_share: bool = True,
    ) -> None:
        from pathlib import Path

        self.home = Path(home)
        self.name, self.store, self.key, self.share_name = name, store, key, share
        self.folder = self.home / "folder"
        self.state_dir = self.home / "state"
        self.config = self.home / "config.toml"
        self.folder.mkdir(parents=True, exist_ok=True)
        text = f'host = "{name}"\nstate_dir = "{self.state_dir}"\n'
        if with_share:
            text += f'\n[shares.{share}]\nkey = "{key}"\npath = "{self.folder}"\nstore = "{store}"\n'
        self.config.write_text(text)
        self.config.chmod(0o600)  # it holds a key: load() refuses it readable by others
        self._share = None
        self._state = None

    def __repr__(self) -> str:
        return f"Host({self.name!r})"

    # --- the folder ----------------------------------------------------------------

    def path(self, rel: str):
        return self.folder / rel

    def write(self, rel: str, data: str | bytes) -> None:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    def read(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def remove(self, rel: str) -> None:
        import shutil

        p = self.path(rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()

    def move(self, src: str, dst: str) -> None:
        self.path(dst).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path(src), self.path(dst))

    def tree(self, mtimes: bool = False) -> dict[str, tuple]:
        return folder_tree(self.folder, mtimes)

    # --- the CLI -------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        import shutil
        import sys

        exe = os.path.join(os.path.dirname(sys.executable), "fogsync")
        exe = exe if os.path.exists(exe) else shutil.which("fogsync")
        return [exe, "--config", str(self.config), *args]

    @staticmethod
    def env() -> dict[str, str]:
        env = dict(os.environ)
        env.pop("FOGSYNC_CONFIG", None)
        env.pop("FOGSYNC_HOST", None)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        import subprocess

        p = subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env(), timeout=timeout,
                           input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"{self.name}: fogsync {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p

    def start(self, *args: str):
        """Start ``fogsync ARGS`` without waiting; ``finish`` collects it."""
        import subprocess

        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env())

    def finish(self, proc, timeout: float = 120) -> str:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(proc.args[3:])} exited {proc.returncode}:\n{out}{err}")
        return out

    def sync(self) -> str:
        return self.run("sync").stdout

    def add(self) -> None:
        """Record the share with ``add-share``, as a person would."""
        self.run("add-share", self.share_name, self.key, "--path", str(self.folder), "--store", self.store)

    def log(self) -> list[tuple[str, int, str, str]]:
        """(full id, version, RFC 3339 date, host) per root, newest first."""
        import json

        roots = json.loads(self.run("--json", "log", self.share_name).stdout)["roots"]
        return [(r["id"], r["version"], r["date"], r["host"]) for r in roots]

    # --- in-process ----------------------------------------------------------------

    def share(self):
        """This host as a ``share.Share`` (opened once; closed by the ``hosts`` fixture)."""
        if self._share is None:
            from fogsync.config import file as config
            from fogsync.config.shares import open_share, open_state

            cfg = config.load(str(self.config))
            self._state = open_state(cfg)
            self._share = open_share(cfg, self.share_name, self._state)
        return self._share

    def sync_here(self):
        from fogsync.engine.sync import sync_share

        return sync_share(self.share())

    def close(self) -> None:
        if self._share is not None:
            self._share.repo.close()
            self._state.close()
            self._share = self._state = None

    def stop_daemon(self, timeout: float) -> None:
        """End ``self.daemon`` (a Popen of ``fogsync daemon``) as a person would: SIGTERM, then kill."""
        import signal
        import subprocess

        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
