"""The daemon (placeholder until the live daemon lands): status without one."""

from __future__ import annotations

from .config import Config


def ask_daemon_to_sync(cfg: Config, names: list[str]) -> str | None:
    return None


def status_lines(cfg: Config, names: list[str]) -> list[str]:
    from .shares import open_state

    state = open_state(cfg)
    out = []
    for name in names:
        info = state.share(name)
        base = info.base.hex()[:16] if info and info.base else "none"
        out.append(f"{name}: last in step with root {base}; daemon: not running")
    state.close()
    return out


def run_daemon(cfg: Config, verbose: bool = False) -> int:
    raise NotImplementedError
