"""The local serving daemon: model servers, their supervisor and the router, in one process.

``python -m controller.adapters.local.daemon --run-dir .agentctl --router-port 8765`` is started
by :class:`controller.adapters.local.client.LocalServing` when the first serving change is
applied; it outlives that ``agentctl`` process, so that the next one observes what runs. With
``--parent-pid`` (``agentctl up``) it also stops when that process is gone.

Its admin API is HTTP on the run directory's Unix socket (only this user can reach it):

    GET    /state                           servers (ready, restarts, port, pid) and routes
    PUT    /agents/{agent}/versions/{v}     {"model", "env", "timeout"}: start, wait until ready
                                            (``env``: the server's whole environment)
    DELETE /agents/{agent}/versions/{v}     drain, then stop
    PUT    /agents/{agent}/route            {"model", "weights": {"<v>": percent}}
    PUT    /agents/{agent}/mirror           {"shadow": [v, percent] | null}
    PUT    /agents/{agent}/routing          {"headers": [{"header", "value", "version"}],
                                             "affinity": {"header", "cookie"} | null}
    DELETE /agents/{agent}/route
    POST   /shutdown                        stop every server, then exit

SIGTERM and SIGINT stop every server, then exit. One daemon per run directory (``daemon.lock``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from controller.adapters.local.router import Router
from controller.adapters.local.routing import Affinity, HeaderRoute, Route
from controller.adapters.local.rundir import (
    ENV_MARKER,
    RunDir,
    alive,
    private_open,
    reap_leftovers,
)
from controller.adapters.local.supervisor import Command, ModelServer, ServerFailed, agent_serve

__all__ = ["Daemon", "main"]

log = logging.getLogger("agentctl.local")

#: How long the version an alias names is remembered for OpenAI's ``<agent>@<alias>``.
ALIAS_TTL = 2.0


class Conflict(Exception):
    """The request contradicts the current state (HTTP 409)."""


class Closing(Exception):
    """The daemon is shutting down (HTTP 503)."""


class Daemon:
    def __init__(
        self,
        run_dir: RunDir,
        router_port: int,
        parent_pid: int | None,
        command: Command = agent_serve,
    ) -> None:
        self.run_dir = run_dir
        self.router_port = router_port
        self.parent_pid = parent_pid
        self.servers: dict[str, dict[int, ModelServer]] = {}
        self.pending: dict[tuple[str, int], ModelServer] = {}  # replacements getting ready
        self.models: dict[str, str] = {}
        self.command = command
        self.router = Router(self.servers, aliases=self.resolve_alias)
        self._alias_cache: dict[tuple[str, str], tuple[float, int | None]] = {}
        self.stopped = asyncio.Event()
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.router_url = ""

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        agents: dict[str, Any] = {}
        for agent in sorted(set(self.servers) | set(self.router.routes)):
            route = self.router.routes.get(agent)
            agents[agent] = {
                "model": self.models.get(agent, agent),
                "versions": {
                    str(v): s.describe() for v, s in sorted(self.servers.get(agent, {}).items())
                },
                "weights": {str(v): p for v, p in route.weights} if route else {},
                "shadow": list(route.shadow) if route and route.shadow else None,
                "headers": [h.to_dict() for h in route.headers] if route else [],
                "affinity": route.affinity.to_dict() if route and route.affinity else None,
            }
        return {
            "pid": os.getpid(),
            "router": self.router_url,
            "agents": agents,
            "pending": [s.describe() for s in self.pending.values()],
        }

    def _save(self) -> None:
        RunDir.write(self.run_dir.state_file, self.state())

    def _reap_leftovers(self) -> None:
        """Stop the model servers a daemon that died without cleaning up left running."""
        for pid in reap_leftovers(self.run_dir):
            log.warning("stopped a leftover model server (pid %s)", pid)

    # -- admin operations ----------------------------------------------------------------------

    async def start_version(
        self, agent: str, version: int, model: str, env: dict[str, str], timeout: float
    ) -> ModelServer:
        """Start ``models:/<model>/<version>`` for ``agent`` and wait until it is ready.

        A server of that model is left alone (and waited for). One of another model is replaced
        without a gap: the new one starts beside it (``pending``), takes its place once ready,
        and the old one stops after its requests in flight. A server this call started that
        never gets ready is stopped and forgotten; one it found is left to its supervisor.
        """
        assert self._session is not None
        key = (agent, version)
        async with self._lock:
            self._check_open()
            have = self.servers.get(agent, {}).get(version)
            pending = self.pending.get(key)
            created = False
            if have is not None and have.model == model:
                server = have
            elif pending is not None and pending.model == model:
                server = pending
            elif pending is not None:
                raise Conflict(
                    f"{agent} version {version} is being replaced by model '{pending.model}'"
                )
            else:
                server = ModelServer(
                    agent,
                    model,
                    version,
                    env={**env, ENV_MARKER: str(self.run_dir.path)},
                    log_path=self.run_dir.server_log(agent, version),
                    session=self._session,
                    on_change=self._save,
                    command=self.command,
                )
                server.start()
                created = True
                if have is None:
                    self.servers.setdefault(agent, {})[version] = server
                    self.models[agent] = model
                else:
                    self.pending[key] = server
                self._save()
        try:
            await server.wait_ready(timeout)
        except ServerFailed:
            async with self._lock:
                if created:
                    if self.servers.get(agent, {}).get(version) is server:
                        self._forget(agent, version)
                    if self.pending.get(key) is server:
                        del self.pending[key]
                    self._save()
            if created:
                await server.stop(drain=0)
            self._check_open()
            raise
        if self.pending.get(key) is not server:
            return server
        async with self._lock:
            del self.pending[key]
            current = self.servers.get(agent, {}).get(version)
            swap = not self.stopped.is_set() and current is have and have is not None
            if swap:
                self.servers[agent][version] = server
                self.models[agent] = model
            self._save()
        if not swap:  # shut down, or the version was stopped meanwhile
            await server.stop(drain=0)
            self._check_open()
            raise Conflict(f"{agent} version {version} was stopped while it was being replaced")
        assert have is not None
        await have.stop()
        return server

    def _check_open(self) -> None:
        if self.stopped.is_set():
            raise Closing("local serving is shutting down")

    def _forget(self, agent: str, version: int) -> ModelServer | None:
        server = self.servers.get(agent, {}).pop(version, None)
        if agent in self.servers and not self.servers[agent]:
            del self.servers[agent]
        return server

    async def resolve_alias(self, agent: str, alias: str) -> int | None:
        """The version ``alias`` names in the agent's registered model, asked of one of its
        ready model servers (they reach the registry, whatever its kind: the daemon does not
        import MLflow); remembered for ``ALIAS_TTL`` seconds. LookupError: none could tell."""
        key = (agent, alias)
        now = time.monotonic()
        cached = self._alias_cache.get(key)
        if cached is not None and now - cached[0] < ALIAS_TTL:
            return cached[1]
        found: int | None = None
        answered = False
        for server in list(self.servers.get(agent, {}).values()):
            if not server.ready or self._session is None:
                continue
            try:
                async with self._session.get(
                    f"{server.url}/agentctl/aliases/{alias}",
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    if resp.status == 404:
                        answered = True
                        break
                    if resp.status != 200:
                        continue
                    found, answered = int((await resp.json())["version"]), True
                    break
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
                continue
        if not answered:
            raise LookupError(f"no model server of agent '{agent}' could read alias '{alias}'")
        self._alias_cache[key] = (now, found)
        if len(self._alias_cache) > 1024:
            self._alias_cache.clear()
        return found

    def _takes_traffic(self, agent: str, version: int) -> bool:
        route = self.router.routes.get(agent)
        return route is not None and version in route.versions()

    async def stop_version(self, agent: str, version: int) -> None:
        async with self._lock:
            self._check_open()
            if self._takes_traffic(agent, version):
                raise Conflict(
                    f"version {version} of {agent} is still in its route; route it away first"
                )
            server = self._forget(agent, version)
            self._save()
        if server is not None:
            await server.stop()

    def set_route(self, agent: str, model: str, weights: dict[int, int]) -> None:
        self._check_open()
        missing = sorted(set(weights) - set(self.servers.get(agent, {})))
        if missing:
            raise Conflict(f"versions {missing} of {agent} are not served; start them first")
        old = self.router.routes.get(agent)
        if old is None:
            self.router.set_route(agent, Route.of(weights))
        else:
            self.router.set_route(agent, Route.of(weights, old.shadow, old.headers, old.affinity))
        self.models[agent] = model
        self._save()

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        self._check_open()
        old = self.router.routes.get(agent)
        if old is None and shadow is None:
            return  # no route, so no mirror either
        if old is None:
            raise Conflict(f"agent {agent} has no route; set its weights first")
        if shadow is not None and shadow[0] not in self.servers.get(agent, {}):
            raise Conflict(f"version {shadow[0]} of {agent} is not served; start it first")
        self.router.set_route(agent, Route(old.weights, shadow, old.headers, old.affinity))
        self._save()

    def set_routing(
        self, agent: str, headers: tuple[HeaderRoute, ...], affinity: Affinity | None
    ) -> None:
        self._check_open()
        old = self.router.routes.get(agent)
        if old is None and not headers and affinity is None:
            return
        if old is None:
            raise Conflict(f"agent {agent} has no route; set its weights first")
        missing = sorted({h.version for h in headers} - set(self.servers.get(agent, {})))
        if missing:
            raise Conflict(f"versions {missing} of {agent} are not served; start them first")
        self.router.set_route(agent, Route(old.weights, old.shadow, headers, affinity))
        self._save()

    def remove_route(self, agent: str) -> None:
        self._check_open()
        self.router.set_route(agent, None)
        self._save()

    async def stop_all(self) -> None:
        """Called once ``stopped`` is set: admin writes are refused from then on."""
        async with self._lock:
            for agent in list(self.router.routes):
                self.router.set_route(agent, None)
            servers = [s for versions in self.servers.values() for s in versions.values()]
            servers += self.pending.values()
            self.servers.clear()
            self.pending.clear()
            await asyncio.gather(*(s.stop(drain=5.0) for s in servers), return_exceptions=True)
            self._save()

    # -- admin API -----------------------------------------------------------------------------

    def admin_app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        app.router.add_get("/state", self._get_state)
        app.router.add_put("/agents/{agent}/versions/{version}", self._put_version)
        app.router.add_delete("/agents/{agent}/versions/{version}", self._delete_version)
        app.router.add_put("/agents/{agent}/route", self._put_route)
        app.router.add_delete("/agents/{agent}/route", self._delete_route)
        app.router.add_put("/agents/{agent}/mirror", self._put_mirror)
        app.router.add_put("/agents/{agent}/routing", self._put_routing)
        app.router.add_post("/shutdown", self._shutdown)
        return app

    async def _get_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _put_version(self, request: web.Request) -> web.Response:
        body = await request.json()
        server = await self.start_version(
            request.match_info["agent"],
            int(request.match_info["version"]),
            str(body["model"]),
            {str(k): str(v) for k, v in (body.get("env") or os.environ).items()},
            float(body.get("timeout", 300)),
        )
        return web.json_response(server.describe())

    async def _delete_version(self, request: web.Request) -> web.Response:
        await self.stop_version(request.match_info["agent"], int(request.match_info["version"]))
        return web.json_response({})

    async def _put_route(self, request: web.Request) -> web.Response:
        body = await request.json()
        weights = {int(v): int(p) for v, p in body["weights"].items()}
        self.set_route(request.match_info["agent"], str(body["model"]), weights)
        return web.json_response({})

    async def _delete_route(self, request: web.Request) -> web.Response:
        self.remove_route(request.match_info["agent"])
        return web.json_response({})

    async def _put_mirror(self, request: web.Request) -> web.Response:
        body = await request.json()
        raw = body.get("shadow")
        shadow = (int(raw[0]), int(raw[1])) if raw else None
        self.set_mirror(request.match_info["agent"], shadow)
        return web.json_response({})

    async def _put_routing(self, request: web.Request) -> web.Response:
        body = await request.json()
        headers = tuple(
            HeaderRoute(str(h["header"]).lower(), str(h["value"]), int(h["version"]))
            for h in body.get("headers") or ()
        )
        raw = body.get("affinity")
        affinity = None
        if raw is not None:
            affinity = Affinity(
                str(raw["header"]).lower() if raw.get("header") else None,
                str(raw["cookie"]) if raw.get("cookie") else None,
            )
        self.set_routing(request.match_info["agent"], headers, affinity)
        return web.json_response({})

    async def _shutdown(self, _request: web.Request) -> web.Response:
        asyncio.get_running_loop().call_soon(self.stopped.set)
        return web.json_response({})

    # -- main ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until stopped. Whatever it opened is closed on the way out, a start that failed
        (the router's port taken) included: no ``Unclosed client session`` on the way."""
        self._reap_leftovers()
        self._session = aiohttp.ClientSession()
        router = web.AppRunner(self.router.app(), access_log=None, handle_signals=False)
        admin = web.AppRunner(self.admin_app(), access_log=None, handle_signals=False)
        try:
            await router.setup()
            await admin.setup()
            await self._serve(router, admin)
        finally:
            await admin.cleanup()
            await router.cleanup()
            await self._session.close()
            with contextlib.suppress(FileNotFoundError):
                self.run_dir.socket.unlink()

    async def _serve(self, router: web.AppRunner, admin: web.AppRunner) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.router_port))
        except OSError:
            sock.close()
            raise
        self.router_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(router, sock).start()
        with contextlib.suppress(FileNotFoundError):
            self.run_dir.socket.unlink()
        umask = os.umask(0o177)  # the socket is created 0600: only this user can reach it
        try:
            await web.UnixSite(admin, str(self.run_dir.socket)).start()
        finally:
            os.umask(umask)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopped.set)
        self._save()
        RunDir.write(
            self.run_dir.daemon_file,
            {
                "pid": os.getpid(),
                "router": self.router_url,
                "socket": str(self.run_dir.socket),
                "started": time.time(),
            },
        )
        log.info("router on %s, admin on %s", self.router_url, self.run_dir.socket)
        watch = asyncio.create_task(self._watch_parent())
        try:
            await self.stopped.wait()
        finally:
            watch.cancel()
            log.info("stopping every model server")
            await self.stop_all()
            with contextlib.suppress(FileNotFoundError):
                self.run_dir.daemon_file.unlink()
            log.info("stopped")

    async def _watch_parent(self) -> None:
        if self.parent_pid is None:
            return
        while True:
            await asyncio.sleep(0.5)
            if not alive(self.parent_pid):
                log.warning("process %s that started this daemon is gone", self.parent_pid)
                self.stopped.set()
                return


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except Conflict as exc:
        return web.json_response({"message": str(exc)}, status=409)
    except Closing as exc:
        return web.json_response({"message": str(exc)}, status=503)
    except ServerFailed as exc:
        return web.json_response({"message": str(exc)}, status=422)
    except (KeyError, ValueError, TypeError) as exc:
        return web.json_response({"message": f"bad request: {exc!r}"}, status=400)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentctl-local-daemon")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--router-port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    run_dir = RunDir(args.run_dir)
    run_dir.prepare()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    lock = private_open(run_dir.lock_file, "a+")  # held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"another daemon already serves {run_dir.path}", file=sys.stderr)
        return 3
    try:
        asyncio.run(Daemon(run_dir, args.router_port, args.parent_pid).run())
    except OSError as exc:
        print(f"cannot start local serving: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
