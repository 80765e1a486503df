"""One supervised model server of one registered model version: agentctl's own
(:mod:`controller.adapters.local.agent_server`, :func:`agent_serve`) or ``mlflow models serve``.

The process runs in a session (process group) of its own, so that stopping it also stops the
uvicorn it starts. The supervisor checks it every ``interval`` seconds: a process that exits is
restarted with exponential backoff (1 s doubling to 30 s, back to 1 s after a minute of health);
``/ping`` decides readiness. Readiness tells overload from death: a process that exited, or a
ping whose connection is refused, makes the server unready at once; a ping that times out
(``ping_timeout``) counts as a failure only when the server gave no answer through the router
(:meth:`ModelServer.answered`) since that ping was sent, since a busy server's pings queue
behind its requests; three failures in a row make it unready. The router never sends a request
to a server that is not ready, and tells the supervisor at once when a connection to it is
refused (:meth:`ModelServer.mark_down`).

Its log (0600) is kept under ``log_max_bytes`` (:func:`controller.adapters.local.rundir.rotate`:
the log and one older file), and uvicorn is told not to log the pings
(:mod:`controller.adapters.local.access_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from controller.adapters.local import access_log
from controller.adapters.local.rundir import private_open, rotate, tail
from controller.adapters.local.tracebacks import agent_failure

__all__ = ["Command", "ModelServer", "ServerFailed", "agent_serve", "free_port", "mlflow_serve"]

#: Builds the command line of a model server: (model, version, port) -> argv.
Command = Callable[[str, int, int], list[str]]


def agent_serve(model: str, version: int, port: int) -> list[str]:
    """agentctl's model server (:mod:`controller.adapters.local.agent_server`): MLflow's scoring
    server with streaming, OpenAI's /v1 routes, safe error bodies and the version's provenance
    on its traces."""
    return [
        sys.executable, "-m", "controller.adapters.local.agent_server",
        "--model-uri", f"models:/{model}/{version}", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def mlflow_serve(model: str, version: int, port: int) -> list[str]:
    """``mlflow models serve`` itself."""
    return [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/{model}/{version}",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip


BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
HEALTHY_RESET = 60.0  # seconds up after which the backoff starts again from BACKOFF_FIRST
PING_FAILURES = 3
PING_TIMEOUT = 2.0
LOG_MAX_BYTES = 10 << 20  # a model server's log, and one older file of about as much
#: How much of the end of its log is searched for the agent's traceback when it fails to start.
LOG_SCAN_BYTES = 256 << 10


def cwd_for(log_path: Path) -> Path:
    """The working directory of the server that logs to ``log_path`` when none is given:
    ``<log dir>/cwd/<log name less .log>``, e.g. ``logs/cwd/support-bot-v3``."""
    return log_path.parent / "cwd" / log_path.stem


class ServerFailed(Exception):
    """A model server did not become ready."""


class Ping(enum.Enum):
    OK = "ok"
    SLOW = "slow"  # no answer in time: busy, or hung
    REFUSED = "refused"  # nothing listens: dead
    FAILED = "failed"  # another answer than 200, or the connection broke


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ModelServer:
    def __init__(
        self,
        agent: str,
        model: str,
        version: int,
        *,
        env: Mapping[str, str],
        log_path: Path,
        session: aiohttp.ClientSession,
        port: int | None = None,
        interval: float = 0.25,
        on_change: Callable[[], None] = lambda: None,
        command: Command = agent_serve,
        log_max_bytes: int = LOG_MAX_BYTES,
        cwd: Path | None = None,
    ) -> None:
        self.agent = agent
        self.model = model
        # Its working directory (uvicorn puts "." on sys.path): not the caller's, where a user's
        # own packages may shadow mlflow's or agentctl's, nor a git checkout whose HEAD mlflow
        # would record on traces. None: a directory of its own beside its log (cwd_for).
        self.cwd = cwd
        self.version = version
        self.port = port or free_port()
        self.env = dict(env)
        self.log_path = log_path
        self.session = session
        self.interval = interval
        self.on_change = on_change  # called when the process or its readiness changes
        self.command = command
        self.log_max_bytes = log_max_bytes
        self.ready = False
        self.restarts = 0
        self.in_flight = 0
        self.ping_timeout = PING_TIMEOUT
        self.answered_at = float("-inf")  # time.monotonic() of its last answer via the router
        self.failures_before_ready = 0  # exits before the first ready: a model that cannot load
        self.ever_ready = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def describe(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "model": self.model,
            "version": self.version,
            "port": self.port,
            "pid": self.pid,
            "url": self.url,
            "ready": self.ready,
            "restarts": self.restarts,
            "log": str(self.log_path),
        }

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"serve {self.agent} v{self.version}")

    def answered(self) -> None:
        """The router got an answer from it: it is alive, however slow its pings are."""
        self.answered_at = time.monotonic()

    def mark_down(self) -> None:
        """The router could not connect: stop routing here, and check the process now."""
        self.ready = False
        self._wake.set()

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready:
            if self._stopping:
                raise ServerFailed(
                    f"the model server for {self.agent} version {self.version} was stopped "
                    "before it was ready"
                )
            if self.failures_before_ready >= 2:
                raise ServerFailed(
                    f"the model server for {self.agent} version {self.version} exited "
                    f"{self.failures_before_ready} times before it was ready{self.why()}"
                )
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"the model server for {self.agent} version {self.version} was not ready "
                    f"after {timeout:.0f} s{self.why()}"
                )
            await asyncio.sleep(0.05)

    def log_tail(self) -> str:
        return tail(self.log_path)

    def why(self) -> str:
        """What its log says went wrong: the agent's own traceback (its exception and frames in
        the agent's code) and the log's path, else the log's last lines."""
        try:
            with open(self.log_path, "rb") as fh:
                end = fh.seek(0, os.SEEK_END)
                fh.seek(max(end - LOG_SCAN_BYTES, 0))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        found = agent_failure(text)
        if found is not None:
            return f": {found}; see its log {self.log_path}"
        return f"; its log ({self.log_path}) ends:\n{self.log_tail()}"

    async def stop(self, drain: float = 30.0, grace: float = 10.0) -> None:
        """Let requests in flight finish (up to ``drain`` s), then SIGTERM, then SIGKILL."""
        self._stopping = True
        self.ready = False
        self._wake.set()
        deadline = time.monotonic() + drain
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._terminate(grace)

    async def _terminate(self, grace: float) -> None:
        proc = self.proc
        if proc is None:
            return
        _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # The leader is gone (or will be now); whatever is left in its group goes with it.
        _kill_group(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        bindir = os.path.dirname(sys.executable)  # `mlflow models serve` runs `uvicorn` by name
        env = dict(self.env)  # the environment of the apply that started it, not the daemon's
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env[access_log.ENV] = str(access_log.write_config(self.log_path.parent))
        env["PYTHONSAFEPATH"] = "1"  # nor is the directory of a script it runs
        command = self.command(self.model, self.version, self.port)
        with private_open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                command,
                env=env,
                cwd=self.cwd if self.cwd is not None else self._own_cwd(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _own_cwd(self) -> Path:
        path = cwd_for(self.log_path)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is masked by the umask
        os.chmod(path, 0o700)
        return path

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    async def _ping(self) -> Ping:
        try:
            async with self.session.get(
                f"{self.url}/ping", timeout=aiohttp.ClientTimeout(total=self.ping_timeout)
            ) as resp:
                return Ping.OK if resp.status == 200 else Ping.FAILED
        except aiohttp.ClientConnectorError:
            return Ping.REFUSED
        except TimeoutError:
            return Ping.SLOW
        except aiohttp.ClientError:
            return Ping.FAILED

    def _failed(self, ping: Ping, sent: float) -> bool:
        """Whether a ready server's ping outcome counts against it."""
        if ping is Ping.SLOW:
            return self.answered_at < sent  # nothing came back through the router either
        return ping is not Ping.OK

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping:
            self._spawn()
            self.on_change()
            assert self.proc is not None
            started = time.monotonic()
            failures = 0
            ready_this_time = False
            while not self._stopping and self.proc.poll() is None:
                self._wake.clear()  # before the ping: a mark_down during it is not lost
                sent = time.monotonic()
                ping = await self._ping()
                if ping is Ping.OK:
                    failures = 0
                    if not self.ready:
                        self.ready = self.ever_ready = ready_this_time = True
                        self.on_change()
                elif self.ready and not self._failed(ping, sent):
                    failures = 0  # busy, not dead: it keeps answering through the router
                elif self.ready:
                    failures = PING_FAILURES if ping is Ping.REFUSED else failures + 1
                    if failures >= PING_FAILURES:
                        self.ready = False
                        self.on_change()
                if self._log_size() > self.log_max_bytes:
                    await asyncio.to_thread(rotate, self.log_path, self.log_max_bytes)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
            self.ready = False
            if self._stopping:
                return
            # It died: clean up its group, then restart it after the backoff.
            await self._terminate(grace=2.0)
            self.restarts += 1
            if not self.ever_ready:
                self.failures_before_ready += 1
            if not ready_this_time:
                # It never listened: its port may have been taken between free_port() and its
                # bind. The router reads the URL per request, so a new port is safe.
                self.port = free_port()
            self.on_change()
            if time.monotonic() - started > HEALTHY_RESET:
                backoff = BACKOFF_FIRST
            with private_open(self.log_path, "ab") as log:
                log.write(
                    f"--- exited with {self.proc.returncode}; restart {self.restarts} "
                    f"in {backoff:.0f} s\n".encode()
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
