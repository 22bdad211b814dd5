"""Control: the daemon's UNIX socket, ``<state_dir>/daemon.sock`` (mode 0600).

The protocol is JSON lines: a client connects, sends one request object on
one line, reads one reply object on one line, and closes.

- ``{"op": "status", "names": [...]}`` ->
  ``{"ok": true, "pid": N, "shares": [{"name": ..., "state": ..., ...}]}``
- ``{"op": "sync", "names": [...]}`` -> after a pass of each named share
  that started after the request: ``{"ok": true, "pid": N, "results":
  [{"name": ..., "summary": ..., "problems": [...], "error": ...}]}``
- anything else -> ``{"ok": false, "error": "..."}``

This layer adds the socket itself (its address: a long state dir path is
reached through ``/proc/self/fd`` on Linux, as ``sun_path`` holds ~100
bytes; a stale socket left by a crash), a client that tells "no daemon"
(None) from a daemon that answered, and what the CLI prints from the
answers: ``status`` lines, from the daemon or, when none runs, from the
state database, a scan (stats only) and the store's head.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
from datetime import datetime, timezone
from typing import Callable, Iterator

from fogsync.config.file import Config
from fogsync.engine.status import waiting
from fogsync.engine.sync import human_size
from fogsync.errors import FogsyncError
from fogsync.format.roots import Root

log = logging.getLogger(__name__)

SOCKET_NAME = "daemon.sock"
MAX_REQUEST = 1 << 20
_SUN_PATH_MAX = 100


def socket_path(state_dir: str) -> str:
    return os.path.join(state_dir, SOCKET_NAME)


@contextlib.contextmanager
def _address(path: str) -> Iterator[str]:
    """An address ``bind``/``connect`` accept for ``path``, however long its directory name."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX or not os.path.isdir("/proc/self/fd"):
        yield path
        return
    fd = os.open(os.path.dirname(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


class Server:
    """Accepts connections on the socket; each request is answered by ``handle`` on its own thread."""

    def __init__(self, path: str, handle: Callable[[dict], dict]) -> None:
        self.path = path
        self._handle = handle
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (replacing a stale socket: the caller holds the daemon lock) and start serving."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with _address(self.path) as addr:
                sock.bind(addr)
        except OSError as e:
            sock.close()
            raise FogsyncError(f"cannot create the control socket {self.path}: {e.strerror or e}") from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        sock.settimeout(1.0)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="fogsync-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux; elsewhere its timeout does
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if not self._stop.is_set():
                    log.warning("control socket %s: %s", self.path, e)
                return
            threading.Thread(target=self._answer, args=(conn,), name="fogsync-request", daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                request = json.loads(_read_line(conn))
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
            except (OSError, ValueError) as e:
                _send(conn, {"ok": False, "error": f"bad request: {e}"})
                return
            try:
                reply = self._handle(request)
            except Exception as e:  # a bug must not take the daemon down: answer it
                log.exception("control request %r failed", request.get("op"))
                reply = {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
            conn.settimeout(None)
            _send(conn, reply)


def request(state_dir: str, message: dict, timeout: float | None = 10.0) -> dict | None:
    """Ask the daemon; None when no daemon listens. ``timeout`` None waits as long as it takes."""
    path = socket_path(state_dir)
    if not os.path.exists(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5.0)
        try:
            with _address(path) as addr:
                sock.connect(addr)
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # a stale socket: the daemon is gone
        except OSError as e:
            raise FogsyncError(f"cannot reach the daemon at {path}: {e.strerror or e}") from None
        sock.settimeout(timeout)
        try:
            _send(sock, message)
            line = _read_line(sock)
        except OSError as e:
            raise FogsyncError(f"the daemon at {path} did not answer: {e.strerror or e}") from None
    if not line:
        raise FogsyncError(f"the daemon at {path} closed the connection without answering (is it stopping?)")
    try:
        reply = json.loads(line)
    except ValueError:
        raise FogsyncError(f"the daemon at {path} answered something that is not JSON") from None
    if not reply.get("ok"):
        raise FogsyncError(f"the daemon refused: {reply.get('error', 'no reason given')}")
    return reply


def _send(sock: socket.socket, message: dict) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(json.dumps(message).encode("utf-8") + b"\n")


def _read_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise ValueError("message too long")
    return bytes(buf.split(b"\n", 1)[0])


# --- what the CLI shows ----------------------------------------------------------


def ask_to_sync(cfg: Config, names: list[str]) -> str | None:
    """Have the running daemon do the passes; the text to print, or None when no daemon runs."""
    reply = request(cfg.state_dir, {"op": "sync", "names": names}, timeout=None)
    if reply is None:
        return None
    lines, errors = [], []
    for r in reply.get("results", []):
        for problem in r.get("problems") or ():
            print(f"fogsync: warning: {r['name']}: {problem}", file=sys.stderr)
        if r.get("error"):
            errors.append(f"share {r['name']!r}: {r['error']}")
        else:
            lines.append(r["summary"])
    if errors:
        if lines:
            print("\n".join(lines))
        raise FogsyncError("; ".join(errors) + f" (reported by the daemon, pid {reply.get('pid')})")
    return "\n".join(lines)


def status_lines(cfg: Config, names: list[str]) -> list[str]:
    """One line per share: from the running daemon, else from the state database and the store."""
    reply = request(cfg.state_dir, {"op": "status", "names": names}, timeout=60)
    if reply is None:
        return [_line(_offline(cfg, name), None) for name in names]
    return [_line(s, reply.get("pid")) for s in reply.get("shares", [])]


def _offline(cfg: Config, name: str) -> dict:
    from fogsync.config.shares import open_repo, open_state

    sc = cfg.share(name)
    state = open_state(cfg)
    try:
        info = state.share(name)
        base = info.base if info else None
        out: dict = {"name": name, "state": "in step", "root": base.hex() if base else None}
        try:
            files, size = waiting(sc.path, tuple(cfg.exclude) + sc.exclude, state, name)
            out["waiting_files"], out["waiting_bytes"] = files, size
        except FogsyncError as e:
            out["state"], out["reason"] = "error", " ".join(str(e).split())
    finally:
        state.close()
    repo = open_repo(cfg, sc)
    try:
        head = repo.read_head()
        out.update(root_fields(base, repo.read_root(base) if base else None))
        if head.root != base and head.root is not None:
            newer = repo.read_root(head.root)
            out["remote"] = f"the store has a newer root (v{newer.version} by {newer.host}) to pull"
    except FogsyncError as e:
        out["remote"] = f"store unreachable: {' '.join(str(e).split())}"
    finally:
        repo.close()
    if out["state"] == "in step" and (out.get("waiting_files") or out.get("remote")):
        out["state"] = "waiting"
    return out


def _line(s: dict, pid: int | None) -> str:
    state = s.get("state")
    files = s.get("waiting_files")
    to_go = f"{files} file(s) ({human_size(s.get('waiting_bytes') or 0)})" if files else None
    if state == "error":
        text = f"error: {s.get('reason')}"
        if s.get("retry_in") is not None:
            text += f" (retrying in {s['retry_in']:.0f} s)"
    elif state == "syncing":
        text = f"syncing, {to_go} to go" if to_go else "syncing"
    elif state == "waiting":
        text = f"{to_go} waiting to sync" if to_go else "local folder in step"
    else:
        text = str(state)
    parts = [text]
    if s.get("remote"):
        parts.append(s["remote"])
    if s.get("root"):
        when = f" committed {s['committed_at']} by {s['committed_by']}" if s.get("committed_at") else ""
        version = f" v{s['version']}" if s.get("version") is not None else ""
        parts.append(f"root {s['root'][:16]}{version}{when}")
    else:
        parts.append("no commits yet")
    if s.get("last_error") and state != "error":
        parts.append(f"last error {s.get('last_error_at')}: {s['last_error']}")
    if s.get("watch"):
        parts.append(f"watching: {s['watch']}")
    parts.append(f"daemon: running (pid {pid})" if pid else "daemon: not running")
    return f"{s.get('name')}: " + "; ".join(parts)


def root_fields(ref: bytes | None, info: Root | None) -> dict:
    out: dict = {"root": ref.hex() if ref else None}
    if info is not None:
        out["version"], out["committed_by"] = info.version, info.host
        out["committed_at"] = info.datetime.strftime("%Y-%m-%d %H:%M:%S UTC")
    return out


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
