"""``LocalServing``: the local serving target (``--target local``), a client of the daemon.

Implements :class:`controller.ports.ServingTarget`. Observing starts nothing: with no daemon in
the run directory the snapshot is empty. The first change that needs serving starts the daemon
(:mod:`controller.adapters.local.daemon`) in a session of its own, so that it outlives this
process; ``attach`` (``agentctl up``) makes it stop when this process is gone instead.

Model servers get ``MLFLOW_TRACKING_URI`` and ``MLFLOW_TRACING_DESTINATION=<experiment id>`` so
that their traces reach the registry's tracking server, and
``MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE=1`` so that each trace is exported at once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.adapters.local.defaults import DEFAULT_ROUTER_PORT
from controller.adapters.local.rundir import (
    ENV_MARKER,
    RunDir,
    alive,
    ours,
    private_open,
    reap_leftovers,
    tail,
)
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot

__all__ = ["DEFAULT_ROUTER_PORT", "LocalServing", "absolute_tracking_uri"]


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` names a file relative to the working directory; servers that run
    elsewhere need the absolute path."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        rest = uri[len(prefix) :]
        path, sep, query = rest.partition("?")
        if path and path != ":memory:":
            return prefix + os.path.abspath(path) + sep + query
    return uri


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class LocalServing:
    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        tracking_uri: str,
        *,
        experiment_of: Callable[[str], str],
        router_port: int = DEFAULT_ROUTER_PORT,
        attach: bool = False,
        ready_timeout: float = 300.0,
        start_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.run_dir = RunDir(run_dir)
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self.experiment_of = experiment_of
        self.router_port = router_port
        self.attach = attach
        self.ready_timeout = ready_timeout
        self.start_timeout = start_timeout
        # The environment model servers start from: by default this process's.
        self.env = dict(env if env is not None else os.environ)

    # -- the daemon ----------------------------------------------------------------------------

    def daemon(self) -> dict[str, Any] | None:
        """The running daemon's record (pid, router, socket), or None when none runs."""
        info = RunDir.read(self.run_dir.daemon_file)
        if info is None or not isinstance(info.get("pid"), int):
            return None
        pid = info["pid"]
        owned = ours(pid, self.run_dir) if alive(pid) else False
        if owned is None:  # no /proc to tell: ask the socket whose it is
            try:
                owned = self._request("GET", "/state", timeout=5).get("pid") == pid
            except (TemporaryBackendError, PermanentBackendError):
                owned = False
        return info if owned else None  # gone, or its pid now belongs to another process

    def ensure_daemon(self) -> dict[str, Any]:
        info = self.daemon()
        if info is not None:
            return info
        try:
            self.run_dir.prepare()
        except (OSError, ValueError) as exc:
            raise PermanentBackendError(str(exc), operation="start local serving") from exc
        # -P, and a working directory of its own: the caller's, where a user's own `controller`
        # package may be, is not on its sys.path (nor on its model servers').
        command = [
            sys.executable, "-P", "-m", "controller.adapters.local.daemon",
            "--run-dir", str(self.run_dir.path), "--router-port", str(self.router_port),
        ]  # fmt: skip
        if self.attach:
            command += ["--parent-pid", str(os.getpid())]
        env = {**os.environ, ENV_MARKER: str(self.run_dir.path), "PYTHONSAFEPATH": "1"}
        with private_open(self.run_dir.daemon_log, "ab") as log:
            start = log.seek(0, os.SEEK_END)  # a failed start shows only what it wrote
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.run_dir.path,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            info = self.daemon()
            if info is not None:
                return info
            if proc.poll() is not None and proc.returncode != 3:
                # (3: another daemon won the race for this run directory; wait for its record)
                raise PermanentBackendError(
                    f"local serving did not start (exit {proc.returncode}); "
                    f"see {self.run_dir.daemon_log}:\n{tail(self.run_dir.daemon_log, since=start)}",
                    operation="start local serving",
                )
            time.sleep(0.05)
        proc.kill()
        raise TemporaryBackendError(
            f"local serving did not start within {self.start_timeout:.0f} s; "
            f"see {self.run_dir.daemon_log}",
            operation="start local serving",
        )

    def shutdown(self, timeout: float = 60.0) -> bool:
        """Stop the daemon and every server it runs, or, if the daemon died, the servers it
        left behind; False if nothing was running."""
        info = self.daemon()
        if info is None:
            return bool(reap_leftovers(self.run_dir))
        pid = info["pid"]
        try:
            self._request("POST", "/shutdown", timeout=5)
        except (TemporaryBackendError, PermanentBackendError):
            if ours(pid, self.run_dir) is not True:
                raise  # it does not answer, and nothing proves the pid is ours: kill nothing
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid) and ours(pid, self.run_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            reap_leftovers(self.run_dir)
        return True

    def _request(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> Any:
        conn = _UnixConnection(str(self.run_dir.socket), timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise TemporaryBackendError(
                f"local serving did not answer {method} {path}: {exc}",
                operation="local serving",
                target=path,
            ) from exc
        finally:
            conn.close()
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"message": data.decode("utf-8", "replace")}
        if resp.status >= 500:
            raise TemporaryBackendError(
                f"local serving: {decoded.get('message', resp.status)}", target=path
            )
        if resp.status >= 400:
            raise PermanentBackendError(
                f"local serving: {decoded.get('message', resp.status)}", target=path
            )
        return decoded

    # -- ServingBackend ------------------------------------------------------------------------

    def observe(self) -> ServingSnapshot:
        info = self.daemon()
        if info is None:
            return ServingSnapshot()
        state = self._request("GET", "/state")
        agents = {}
        for name, raw in state.get("agents", {}).items():
            versions = {
                int(v): ServedVersion(
                    int(v), s["model"], bool(s["ready"]), int(s["restarts"]), s["url"]
                )
                for v, s in raw["versions"].items()
            }
            shadow = raw.get("shadow")
            affinity = raw.get("affinity")
            agents[name] = AgentServing(
                name,
                raw["model"],
                versions,
                {int(v): int(p) for v, p in raw["weights"].items()},
                (int(shadow[0]), int(shadow[1])) if shadow else None,
                headers=tuple(
                    (str(h["header"]), str(h["value"]), int(h["version"]))
                    for h in raw.get("headers") or ()
                ),
                affinity=(affinity.get("header"), affinity.get("cookie")) if affinity else None,
            )
        return ServingSnapshot(agents, f"{state['router']}/agents")

    def start_version(self, agent: str, model: str, version: int) -> str:
        self.ensure_daemon()
        # The server's whole environment: this process's (an agent may need an API key from
        # it), and where its registry and traces are.
        env = {
            **self.env,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.tracking_uri,
            "MLFLOW_TRACING_DESTINATION": self.experiment_of(model),
            "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "1",
        }
        server = self._request(
            "PUT",
            f"/agents/{agent}/versions/{version}",
            {"model": model, "env": env, "timeout": self.ready_timeout},
            timeout=self.ready_timeout + 30,
        )
        return str(server["url"])

    def stop_version(self, agent: str, version: int) -> None:
        if self.daemon() is None:
            return
        self._request("DELETE", f"/agents/{agent}/versions/{version}", timeout=120)

    # -- TrafficRouter -------------------------------------------------------------------------

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        self.ensure_daemon()
        body = {"model": model, "weights": {str(v): p for v, p in weights.items()}}
        self._request("PUT", f"/agents/{agent}/route", body)

    def verify_weight(self, agent: str, weights: Mapping[int, int]) -> bool:
        """Read the daemon's route back: its weights must be exactly these."""
        if self.daemon() is None:
            return False
        state = self._request("GET", "/state")
        route = state.get("agents", {}).get(agent, {}).get("weights", {})
        return {int(v): int(p) for v, p in route.items()} == dict(weights)

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        self.ensure_daemon()
        self._request(
            "PUT", f"/agents/{agent}/mirror", {"shadow": list(shadow) if shadow else None}
        )

    def set_routing(
        self,
        agent: str,
        headers: Sequence[tuple[str, str, int]],
        affinity: tuple[str | None, str | None] | None,
    ) -> None:
        self.ensure_daemon()
        body = {
            "headers": [{"header": h, "value": v, "version": n} for h, v, n in headers],
            "affinity": {"header": affinity[0], "cookie": affinity[1]} if affinity else None,
        }
        self._request("PUT", f"/agents/{agent}/routing", body)

    def remove_route(self, agent: str) -> None:
        if self.daemon() is None:
            return
        self._request("DELETE", f"/agents/{agent}/route")
