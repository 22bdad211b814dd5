"""An HTTP proxy on 127.0.0.1 that makes S3 requests fail, for tests (importable as ``faultproxy``).

``FaultProxy(upstream)`` forwards each request to ``upstream`` (moto's
server) and, by a fixed schedule, spoils some of them the ways a real
network and a busy S3 do:

- ``cut``: the response's headers and half its body, then the connection
  closes (only responses with a body: every ``period``-th of those);
- ``reset``: the request reaches the server, then the connection is reset
  before any reply (so a write may have landed);
- ``500``: ``500 InternalError`` without asking the server;
- ``503``: ``503 SlowDown`` without asking the server;
- ``late``: the answer comes a second late.

Every ``period``-th request is spoiled in each way (``cut`` counts only
responses with a body), so each kind happens about 1/period of the time,
and ``counts`` says how often each did. ``period=0`` spoils nothing but
what ``then(kind)`` asks for the next request.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

KINDS = ("cut", "reset", "500", "503", "late")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}

_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>fault</RequestId></Error>"
)


class FaultProxy:
    """Start with ``start()`` (or ``with``); ``url`` is its endpoint, ``counts`` what it spoiled."""

    def __init__(self, upstream: str, period: int = 10, late_seconds: float = 1.0) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.period = period
        self.late_seconds = late_seconds
        self.counts = dict.fromkeys(KINDS, 0)
        self._queued: list[str] = []
        self.requests = 0
        self._bodies = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def then(self, kind: str) -> None:
        """Spoil the next request this way (before the schedule)."""
        with self._lock:
            self._queued.append(kind)

    def _planned(self) -> str | None:
        """The fault for the next request, if any: slots 1, 3, 5 and 7 of each period (``cut`` is chosen later)."""
        with self._lock:
            self.requests += 1
            if self._queued:
                return self._queued.pop(0)
            slot = self.requests % self.period if self.period else -1
        return {1: "reset", 3: "500", 5: "503", 7: "late"}.get(slot)

    def _cut_this_body(self, fault: str | None) -> bool:
        with self._lock:
            self._bodies += 1
            return fault == "cut" or (self.period > 0 and self._bodies % self.period == 4)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._proxy()

            do_PUT = do_POST = do_HEAD = do_DELETE = do_GET

            def _proxy(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._planned()
                if fault in ("500", "503"):
                    proxy._count(fault)
                    code, message = ("InternalError", "fault") if fault == "500" else ("SlowDown", "Reduce rate")
                    self._answer(int(fault), {"Content-Type": "application/xml"},
                                 _ERROR_BODY.format(code=code, message=message).encode())
                    return
                status, headers, answer = self._forward(body)
                if fault == "reset":
                    proxy._count("reset")
                    self._reset()
                    return
                if fault == "late":
                    proxy._count("late")
                    time.sleep(proxy.late_seconds)
                if answer and self.command == "GET" and proxy._cut_this_body(fault):
                    proxy._count("cut")
                    self._answer(status, headers, answer[: len(answer) // 2], length=len(answer))
                    self.close_connection = True
                    return
                self._answer(status, headers, answer)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    answer = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS]
                    return response.status, kept, answer
                finally:
                    conn.close()

            def _answer(self, status: int, headers, body: bytes, length: int | None = None) -> None:
                self.send_response_only(status)
                items = headers.items() if isinstance(headers, dict) else headers
                has_length = False
                for k, v in items:
                    if k.lower() == "content-length":
                        has_length = True
                        v = str(length) if length is not None else v
                    self.send_header(k, v)
                if not has_length:
                    self.send_header("Content-Length", str(length if length is not None else len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.wfile.flush()

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

        return Handler
