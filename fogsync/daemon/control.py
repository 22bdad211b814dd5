"""Control: the daemon's UNIX socket, ``<state_dir>/daemon.sock`` (mode 0600).

The protocol is JSON lines: a client connects, sends one request object on
one line, reads one reply object on one line, and closes.

- ``{"op": "status", "names": [...]}`` ->
  ``{"ok": true, "pid": N, "shares": [{"name": ..., "state": ..., ...}]}``
  (each share's keys are those of ``status --json``, docs/json.md)
- ``{"op": "sync", "names": [...], "accept_rollback": bool,
  "allow_mass_delete": bool}`` (the flags optional: the consent of ``sync``'s
  flags, for that pass) -> after a pass of each named share
  that started after the request: ``{"ok": true, "pid": N, "results":
  [{"name": ..., "summary": ..., "problems": [...], "report": {...}}]}``
  (``report``: the ``summary`` message's fields), or ``{"name": ..., "error": ...}``
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
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterator

from fogsync.config.file import Config
from fogsync.daemon.upkeep import upkeep_doc
from fogsync.engine.status import waiting
from fogsync.engine.sync import human_size
from fogsync.errors import FogsyncError
from fogsync.format.roots import Root, parse_date

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


def report_fields(report) -> dict:
    """A pass's ``sync.Report`` as the JSON ``summary`` message's fields (docs/json.md)."""
    return {
        "share": report.name,
        "root": report.root.hex() if report.root else None,
        "committed": root_doc(report.root, report.committed) if report.committed else None,
        "files_pushed": report.pushed,
        "bytes_pushed": report.pushed_bytes,
        "files_pulled": report.written,
        "files_removed": report.removed,
        "conflicts": [{"path": c.path, "kind": c.kind, "copy_path": c.copy_path} for c in report.conflicts],
        "problems": list(report.problems),
        "deferred": list(report.deferred),
        "in_step": not report.deferred,
    }


def ask_to_sync(cfg: Config, names: list[str], accept_rollback: bool = False,
                allow_mass_delete: bool = False) -> tuple[int | None, list[dict]] | None:
    """Have the running daemon do the passes: (its pid, one result per share), or None when no daemon runs.

    A result is ``{"name", "summary", "problems", "report"}`` or ``{"name", "error"}``. The flags
    are the consent of ``sync --accept-rollback`` / ``--allow-mass-delete``, for these passes only.
    """
    message = {"op": "sync", "names": names, "accept_rollback": accept_rollback,
               "allow_mass_delete": allow_mass_delete}
    reply = request(cfg.state_dir, message, timeout=None)
    if reply is None:
        return None
    return reply.get("pid"), list(reply.get("results", []))


def status_docs(cfg: Config, names: list[str]) -> tuple[int | None, list[dict]]:
    """(the daemon's pid or None, one status per share): from the daemon, else from the state database and store."""
    reply = request(cfg.state_dir, {"op": "status", "names": names}, timeout=60)
    if reply is None:
        return None, [_offline(cfg, name) for name in names]
    return reply.get("pid"), list(reply.get("shares", []))


def status_lines(cfg: Config, names: list[str]) -> list[str]:
    """One line per share: from the running daemon, else from the state database and the store."""
    pid, docs = status_docs(cfg, names)
    return [_line(s, pid) for s in docs]


def _offline(cfg: Config, name: str) -> dict:
    from fogsync.config.shares import open_repo, open_state

    sc = cfg.share(name)
    state = open_state(cfg)
    out: dict = {"name": name, "state": "idle", "reason": None, "waiting_files": None, "waiting_bytes": None,
                 "deferred": [], "last_commit": None, "last_error": None, "last_error_at": None,
                 "last_poll": None, "last_pass": None, "retry_in": None, "watch": None, "remote": None,
                 "progress": None}
    try:
        out.update(upkeep_doc(state.upkeep(name)))
        info = state.share(name)
        base = info.base if info else None
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
        out["last_poll"] = rfc3339(time.time())
        out["last_commit"] = root_doc(base, repo.read_root(base)) if base else None
        if head.root != base and head.root is not None:
            newer = repo.read_root(head.root)
            out["remote"] = f"the store has a newer root (v{newer.version} by {newer.host}) to pull"
    except FogsyncError as e:
        out["remote"] = f"store unreachable: {' '.join(str(e).split())}"
    finally:
        repo.close()
    out["in_step"] = out["state"] == "idle" and base is not None and not out["waiting_files"] and not out["remote"]
    return out


def _line(s: dict, pid: int | None) -> str:
    state = s.get("state")
    files = s.get("waiting_files")
    to_go = f"{files} file(s) ({human_size(s.get('waiting_bytes') or 0)})" if files else None
    if state in ("error", "held"):
        text = f"{state}: {s.get('reason')}"
        if s.get("retry_in") is not None:
            text += f" (retrying in {s['retry_in']:.0f} s)"
    elif state in ("syncing", "scanning"):
        text = f"{state}, {to_go} to go" if to_go else str(state)
        text += progress_text(s.get("progress"))
    elif to_go:
        text = f"{to_go} waiting to sync"
    else:
        text = "in step" if s.get("in_step") else "local folder in step"
    parts = [text]
    if s.get("remote"):
        parts.append(s["remote"])
    commit = s.get("last_commit")
    if commit:
        when = local_time(commit["date"]) if commit.get("date") else "?"
        parts.append(f"root {commit['id'][:16]} v{commit.get('version')} committed {when} by {commit.get('host')}")
    else:
        parts.append("no commits yet")
    if s.get("last_error") and state not in ("error", "held"):
        parts.append(f"last error {s.get('last_error_at')}: {s['last_error']}")
    if s.get("watch"):
        parts.append(f"watching: {s['watch']}")
    parts += upkeep_parts(s)
    parts.append(f"daemon: running (pid {pid})" if pid else "daemon: not running")
    return f"{s.get('name')}: " + "; ".join(parts)


def upkeep_parts(s: dict) -> list[str]:
    """The last forget and prune of a share's status, as text."""
    parts = []
    forget, prune = s.get("last_forget"), s.get("last_prune")
    if forget:
        parts.append(f"last forget {local_time(forget['at'])}: {forget.get('roots_forgotten') or 0} root(s) forgotten")
    if prune:
        freed = f"{prune.get('deleted_objects') or 0} object(s) ({human_size(prune.get('deleted_bytes') or 0)}) freed"
        parts.append(f"last prune {local_time(prune['at'])}: {freed}")
    return parts


def progress_doc(snap) -> dict | None:
    """A pass's progress (``engine.progress.Snapshot``) in a share's status, or None."""
    if snap is None:
        return None
    return {"phase": snap.phase or "starting", "files_done": snap.files_done, "files_total": snap.files_total,
            "bytes_done": snap.bytes_done, "bytes_total": snap.bytes_total,
            "current_files": [snap.current] if snap.current else []}


def progress_text(doc: dict | None) -> str:
    """``; pushing 120/2000 files (1.2 MiB/40.0 MiB)``, or nothing when no pass is in hand."""
    if not doc:
        return ""
    if doc.get("files_total") is None:
        return f"; {doc['phase']}"
    return (f"; {doc['phase']} {doc['files_done']}/{doc['files_total']} files "
            f"({human_size(doc['bytes_done'])}/{human_size(doc['bytes_total'] or 0)})")


def root_doc(ref: bytes | None, info: Root | None) -> dict | None:
    """A root as JSON: full ID, version, RFC 3339 date, host."""
    if ref is None:
        return None
    out: dict = {"id": ref.hex(), "version": None, "date": None, "host": None}
    if info is not None:
        out.update(version=info.version, date=info.date, host=info.host)
    return out


def local_time(rfc: str) -> str:
    return parse_date(rfc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(when: float | None) -> str | None:
    """A wall-clock time (seconds since the epoch) as RFC 3339 UTC."""
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
