"""The controller's HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and
``POST /webhooks/mlflow``, served by the standard library's threading HTTP server.

``/healthz`` answers 200 while the reconcile loop is alive; ``/readyz`` 200 once it can do its
job (see :class:`Probes`), else 503 with why; ``/metrics`` is the Prometheus text format. The
webhook endpoint is on only when a secret is configured: a genuine MLflow delivery about a
model's alias, or a prompt's alias, version or tag (``webhook.EVENTS``), wakes the loop (202)
if this replica leads, else 503 so that MLflow delivers it again (perhaps to the leader);
anything else signed is acknowledged and ignored (204); anything
unsigned or stale is refused (401); a delivery id accepted before, 409; a body without a sane
length, 400 or 413. The listen backlog (:data:`BACKLOG`) holds a burst of connections while the
accepting thread catches up, instead of resetting them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from controller.adapters.http.replay import ReplayCache
from controller.adapters.http.webhook import WebhookRefused, verify

__all__ = ["BACKLOG", "Endpoints", "Probes"]

log = logging.getLogger("agentctl.http")
_MAX_BODY = 1 << 20
#: Connections the kernel queues before this server accepts them (capped by net.core.somaxconn).
BACKLOG = 1024


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG
    daemon_threads = True


class Exposition(Protocol):
    """What ``/metrics`` serves: the Prometheus text format of the controller's metrics."""

    def exposition(self) -> bytes: ...


@dataclass
class Probes:
    """``alive()`` and ``ready()``: each "" when fine, else why not."""

    alive: Callable[[], str]
    ready: Callable[[], str]


class Endpoints:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Exposition,
        probes: Probes,
        *,
        webhook_secret: str | None = None,
        on_webhook: Callable[[str], bool] = lambda reason: True,
        clock: Callable[[], float] = time.time,
        replays: ReplayCache | None = None,
    ) -> None:
        seen = replays if replays is not None else ReplayCache()

        class Handler(BaseHTTPRequestHandler):
            server_version = "agentctl"
            timeout = 10  # seconds a client may take to send its request

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.exposition(), "text/plain; version=0.0.4")
                elif path in ("/healthz", "/readyz"):
                    why = (probes.alive if path == "/healthz" else probes.ready)()
                    self._send(503 if why else 200, (why or "ok").encode() + b"\n")
                else:
                    self._send(404, b"not found\n")

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/webhooks/mlflow" or not webhook_secret:
                    self._send(404, b"not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or "")
                except ValueError:
                    self._send(400, b"a Content-Length is needed\n")
                    return
                if length < 0:
                    self._send(400, b"bad Content-Length\n")
                    return
                if length > _MAX_BODY:
                    self._send(413, b"too large\n")
                    return
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                now = clock()
                try:
                    delivery = verify(webhook_secret, headers, body, now)
                except WebhookRefused as exc:
                    log.warning("webhook refused from %s: %s", self.address_string(), exc)
                    self._send(exc.status, f"{exc}\n".encode())
                    return
                first = seen.first(delivery.delivery_id, delivery.expires, now)
                if first is None:
                    log.warning("webhook: too many deliveries in the window; asking again later")
                    self._send(503, b"too many deliveries: deliver again later\n")
                    return
                if not first:
                    log.warning(
                        "webhook refused from %s: delivery %s was received before",
                        self.address_string(), delivery.delivery_id,
                    )  # fmt: skip
                    self._send(409, b"delivery already received\n")
                    return
                if delivery.relevant:
                    log.info("webhook: %s %s", delivery.event, delivery.subject)
                    if on_webhook("webhook"):
                        self._send(202, b"reconciling\n")
                    else:
                        seen.forget(delivery.delivery_id)  # not acted on: it may come again
                        self._send(503, b"not the leader: deliver again\n")
                else:
                    self._send(204)

        self.server = _Server((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="agentctl-http", daemon=True
        )

    def start(self) -> Endpoints:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
