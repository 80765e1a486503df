"""A loopback HTTP proxy in front of the MLflow server that counts requests and injects faults.

Tests point agentctl at the proxy to count what it sends (a second apply must write nothing) and
to make the server fail on cue (503 for the next N matching requests, or refuse everything). The
chaos tests also hold matching requests before passing them on (a create the server commits
after the client gave up), and SIGKILL a process once the server has answered its N-th write.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}


@dataclass
class Fault:
    path_contains: str
    remaining: int  # -1: forever
    status: int = 503


@dataclass
class Hold:
    path_contains: str
    remaining: int
    seconds: float


@dataclass
class Kill:
    pid: int
    at_write: int  # 1-based: after the server answered this write, before the client hears it
    killed: bool = False


@dataclass
class Record:
    method: str
    path: str
    status: int


@dataclass
class _State:
    records: list[Record] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    #: (path_contains, fn): fn runs once, before the first matching request is forwarded
    hooks: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    kill: Kill | None = None
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hung up (a model server stopped mid-export) is not an error of the proxy.
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.state = _State()
        handler = self._handler()
        self.server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests use ---------------------------------------------------------------------

    def reset(self) -> None:
        with self.state.lock:
            self.state.records.clear()
            self.state.faults.clear()
            self.state.hooks.clear()
            self.state.holds.clear()
            self.state.kill = None
            self.state.writes = 0

    def hold(self, path_contains: str, seconds: float, times: int = 1) -> None:
        """Pass the next ``times`` matching requests on only after ``seconds``, whether or not
        the client still waits (a slow proxy: the server commits what the client gave up on)."""
        with self.state.lock:
            self.state.holds.append(Hold(path_contains, times, seconds))

    def kill_at_write(self, pid: int, n: int) -> None:
        """SIGKILL ``pid`` once the server has answered the ``n``-th write from now on."""
        with self.state.lock:
            self.state.writes = 0
            self.state.kill = Kill(pid, n)

    @property
    def killed(self) -> bool:
        with self.state.lock:
            return self.state.kill is not None and self.state.kill.killed

    def fail(self, path_contains: str, times: int = 1, status: int = 503) -> None:
        with self.state.lock:
            self.state.faults.append(Fault(path_contains, times, status))

    def before(self, path_contains: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` once, before the next matching request goes to the server."""
        with self.state.lock:
            self.state.hooks.append((path_contains, fn))

    @property
    def records(self) -> list[Record]:
        with self.state.lock:
            return list(self.state.records)

    def writes(self) -> list[Record]:
        """Requests that change state: everything but GETs and the search endpoints."""
        return [
            r
            for r in self.records
            if r.method != "GET" and not r.path.split("?")[0].endswith("/search")
        ]

    # -- the handler ------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.state.lock:
                    fault = next(
                        (
                            f
                            for f in proxy.state.faults
                            if f.remaining != 0 and f.path_contains in self.path
                        ),
                        None,
                    )
                    if fault is not None and fault.remaining > 0:
                        fault.remaining -= 1
                    hooks = [h for h in proxy.state.hooks if h[0] in self.path]
                    for hook in hooks:
                        proxy.state.hooks.remove(hook)
                    hold = next(
                        (
                            h
                            for h in proxy.state.holds
                            if h.remaining > 0 and h.path_contains in self.path
                        ),
                        None,
                    )
                    if hold is not None:
                        hold.remaining -= 1
                for _, fn in hooks:
                    fn()
                if hold is not None:
                    time.sleep(hold.seconds)
                if fault is not None:
                    payload = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected"}'
                    self._record(fault.status)
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=120
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self._record(resp.status)
                if self.command != "GET" and not self.path.split("?")[0].endswith("/search"):
                    with proxy.state.lock:
                        proxy.state.writes += 1
                        kill = proxy.state.kill
                        if (
                            kill is not None
                            and not kill.killed
                            and proxy.state.writes >= kill.at_write
                        ):
                            kill.killed = True
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(kill.pid, signal.SIGKILL)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _record(self, status: int) -> None:
                with proxy.state.lock:
                    proxy.state.records.append(Record(self.command, self.path, status))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Handler
