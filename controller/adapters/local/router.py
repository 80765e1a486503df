"""The local traffic router: one port on 127.0.0.1 in front of every agent's model servers.

- ``POST /agents/<agent>/invocations``: forwarded to one ready version, chosen by the route
  (:class:`controller.adapters.local.routing.Route`: a header route the request matches, else its
  conversation's version when the route keeps conversations together, else by weight); the
  answer carries ``X-Agentctl-Version`` and ``X-Request-Id`` (the caller's, or a new one, also
  sent to the model server). A response without a length (a stream, server-sent events) is
  passed on chunk by chunk as it arrives. An error body that carries a stack trace is cut to a
  short JSON error (:func:`_without_trace`).
- OpenAI's API (:mod:`controller.adapters.local.asks`): ``POST /v1/responses`` and
  ``/v1/chat/completions`` choose the agent by the body's ``model`` (``<agent>``, or
  ``<agent>@<version>`` / ``<agent>@<alias>`` to pin one; an alias is read from the registry),
  ``POST /agents/<agent>/v1/...`` is the agent's own base URL (as on Kubernetes), ``GET
  /v1/models`` lists the agents. The model server answers in OpenAI's format; the router's own
  refusals (unknown agent or version, a malformed body, a conversation id that is not a
  string) are OpenAI-shaped errors, never a 500.
- A refused connection marks that server down and the request goes to another ready version:
  the request never reached the first, so sending it again is safe.
- ``shadow`` percent of requests are also sent to the shadow version in the background; the
  caller never waits for that copy nor sees its answer. At most ``MAX_MIRRORS`` copies are in
  flight; beyond that copies are dropped (and counted), never queued.
- ``GET /agents/<agent>/ping``: 200 when a weighted version is ready, else 503.
- ``GET /metrics``: Prometheus metrics per agent, version and role (primary / shadow). The
  label set is bounded: requests for an agent that is not routed are all counted under agent
  ``UNKNOWN_AGENT`` (whatever name they asked for), and the exposition is rendered on a worker
  thread, so a scrape never holds up routing.

A route is replaced as a whole (one assignment): requests in flight keep the server they chose,
and servers are stopped only after the route has left them and their requests have finished.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from controller.adapters.local.asks import (
    BadRequest,
    ModelRef,
    conversation_id,
    openai_error,
    parse_model,
    request_id,
)
from controller.adapters.local.routing import Route
from controller.adapters.local.supervisor import ModelServer

__all__ = ["MAX_MIRRORS", "UNKNOWN_AGENT", "VERSION_HEADER", "Router"]

VERSION_HEADER = "X-Agentctl-Version"
#: The code recorded when the caller hung up before the answer was through (nginx's 499).
CLIENT_GONE = "499"
#: The version label of requests the router refused itself (no route, no ready version).
NO_VERSION = 0
#: The agent label of requests for agents that are not routed: one label, whatever name was
#: asked for, so that /metrics stays bounded. Not a valid agent name (no "_" in a DNS label),
#: so it never mixes with a real agent's counts.
UNKNOWN_AGENT = "_unknown"
MAX_MIRRORS = 256
MAX_BODY = 64 << 20  # the largest request body the router takes
# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp sets itself.
_SKIP_REQUEST = {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                 "proxy-connection", "content-length"}  # fmt: skip
_SKIP_RESPONSE = _SKIP_REQUEST | {"date", "server", "x-request-id"}  # the router sets its own
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Router:
    def __init__(
        self,
        servers: Mapping[str, Mapping[int, ModelServer]],
        *,
        timeout: float = 120.0,  # the longest silence from a model server
        aliases: Callable[[str, str], Awaitable[int | None]] | None = None,
    ) -> None:
        self.servers = servers  # agent -> version -> server, owned by the daemon
        # (agent, alias) -> the version the registry names: for OpenAI's model "<agent>@<alias>"
        self._aliases = aliases
        self.routes: dict[str, Route] = {}
        self.timeout = timeout
        self.metrics = CollectorRegistry()
        labels = ("agent", "version", "role")
        self._requests = Counter(
            "agentctl_router_requests",
            "Requests answered, by agent, version, role (primary/shadow) and HTTP status.",
            (*labels, "code"),
            registry=self.metrics,
        )
        self._errors = Counter(
            "agentctl_router_request_errors",
            "Requests that failed: HTTP status >= 400 (an agent that raises answers 400) or no "
            "answer at all.",
            labels,
            registry=self.metrics,
        )
        self._latency = Histogram(
            "agentctl_router_request_duration_seconds",
            "Time from forwarding a request to the last byte of its answer.",
            labels,
            buckets=_BUCKETS,
            registry=self.metrics,
        )
        self._dropped = Counter(
            "agentctl_router_shadow_dropped",
            "Shadow copies not sent because MAX_MIRRORS were already in flight.",
            ("agent",),
            registry=self.metrics,
        )
        self._mirrors: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._children: dict[tuple[str, int, str], tuple[Any, Any]] = {}
        self._counts: dict[tuple[str, int, str, str], Any] = {}
        # One thread renders /metrics: scrapes wait for each other, never for routing.
        self._render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-metrics")

    # -- lifecycle -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        # Long conversations and images in a request: up to MAX_BODY, not aiohttp's 1 MiB.
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_openai_errors])
        app.router.add_post("/agents/{agent}/invocations", self.invocations)
        app.router.add_post(
            "/agents/{agent}/v1/{endpoint:responses|chat/completions}", self.agent_openai
        )
        app.router.add_post("/v1/responses", self.openai)
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/agents/{agent}/ping", self.ping)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/healthz", self.healthz)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, limit_per_host=256),
            # No total: a stream may run long. An upstream silent for `timeout` s is given up.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self.timeout),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def _close(self, _app: web.Application) -> None:
        for task in list(self._mirrors):
            task.cancel()
        if self._session is not None:
            await self._session.close()
        self._render.shutdown(wait=False, cancel_futures=True)

    # -- routes --------------------------------------------------------------------------------

    def set_route(self, agent: str, route: Route | None) -> None:
        if route is None:
            self.routes.pop(agent, None)
        else:
            self.routes[agent] = route

    async def _alias(self, agent: str, alias: str) -> int | None:
        if self._aliases is None:
            return None
        return await self._aliases(agent, alias)

    def _ready(self, agent: str) -> set[int]:
        return {v for v, s in self.servers.get(agent, {}).items() if s.ready}

    # -- handlers ------------------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(self, _request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self._render, generate_latest, self.metrics)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(self, _request: web.Request) -> web.Response:
        """OpenAI's model list: the agents routed here."""
        data = [{"id": a, "object": "model", "created": 0, "owned_by": "agentctl"}
                for a in sorted(self.routes)]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def ping(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        route = self.routes.get(agent)
        if route is None:
            return _error(404, f"agent '{agent}' is not served")
        ready = self._ready(agent)
        if route.choose(0.0, ready) is None:
            return _error(503, f"no version of agent '{agent}' that takes traffic is ready")
        return web.json_response({"status": "ok", "ready": sorted(ready)})

    def _unrouted(
        self, agent: str, status: int, message: str, api: str = "", param: str | None = None
    ) -> web.Response:
        """The router's own refusal (no route, no ready version, a bad request): counted as
        version "none", under ``UNKNOWN_AGENT`` when the agent is not routed; said in the
        caller's API's error shape (``api`` "openai": OpenAI's)."""
        counted = agent if agent in self.routes else UNKNOWN_AGENT
        self._count(counted, NO_VERSION, "primary", str(status))
        self._child(counted, NO_VERSION, "primary")[1].inc()
        if api == "openai":
            return web.json_response(openai_error(status, message, param), status=status)
        return _error(status, message)

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        return await self._route(request, request.match_info["agent"], "/invocations", "")

    async def agent_openai(self, request: web.Request) -> web.StreamResponse:
        """``/agents/<agent>/v1/...``: the agent's own OpenAI base URL (as on Kubernetes)."""
        path = "/v1/" + request.match_info["endpoint"]
        return await self._route(request, request.match_info["agent"], path, "openai")

    async def openai(self, request: web.Request) -> web.StreamResponse:
        """``/v1/responses`` and ``/v1/chat/completions``: the agent is the body's ``model``."""
        body = await request.read()
        try:
            ref = parse_model(_json_object(body).get("model"))
        except BadRequest as exc:
            return self._unrouted("", 400, str(exc), "openai", exc.param)
        return await self._route(request, ref.agent, request.path, "openai", body, ref)

    async def _route(
        self,
        request: web.Request,
        agent: str,
        path: str,
        api: str,
        body: bytes | None = None,
        ref: ModelRef | None = None,
    ) -> web.StreamResponse:
        """Send the request to one ready version of ``agent``: a pinned one (``ref``), else
        the first header route it matches, else its conversation's, else one by weight."""
        if agent not in self.routes:
            return self._unrouted(agent, 404, f"agent '{agent}' is not served", api, "model")
        if body is None:
            body = await request.read()
        pinned: int | None = ref.version if ref is not None else None
        if ref is not None and ref.alias is not None:
            try:  # before the route is read: it may change while the registry is asked
                pinned = await self._alias(agent, ref.alias)
            except LookupError as exc:
                return self._unrouted(agent, 503, str(exc), api)
            if pinned is None:
                return self._unrouted(
                    agent, 404, f"agent '{agent}' has no alias '{ref.alias}'", api, "model"
                )
        # The route and readiness as they are once the body is in (and an alias read), not as
        # they were when the request began: a weight change during a slow upload must not send
        # it to a stopped server.
        route = self.routes.get(agent)
        if route is None:
            return self._unrouted(agent, 404, f"agent '{agent}' is not served", api, "model")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in _SKIP_REQUEST and k.lower() != "x-request-id"}  # fmt: skip
        rid = request_id(request.headers, uuid.uuid4().hex)
        headers["X-Request-Id"] = rid
        servers = self.servers.get(agent, {})
        ready = self._ready(agent)
        if pinned is not None and pinned not in servers:
            return self._unrouted(
                agent, 404, f"version {pinned} of agent '{agent}' is not served", api, "model"
            )
        key: str | None = None
        if route.affinity is not None:  # the body is read only when a conversation may be in it
            try:
                parsed = _json_object(body, strict=False)
                affinity = route.affinity
                key = conversation_id(parsed, request.headers, affinity.header, affinity.cookie)
            except BadRequest as exc:
                return self._unrouted(agent, 400, str(exc), api, exc.param)
        mirror = route.mirror(random.random(), ready)
        shadow = servers.get(mirror) if mirror is not None else None
        if shadow is not None:
            self._mirror(agent, shadow, path, body, headers)
        tried: set[int] = set()
        while True:
            live = ready - tried
            if pinned is not None:
                version: int | None = pinned if pinned in live else None
            else:
                version = route.by_header(request.headers, live)
                if version is None:
                    version = route.choose(random.random(), live, key)
            server = servers.get(version) if version is not None else None
            if server is None:
                message = (
                    f"no version of agent '{agent}' that takes traffic is ready"
                    if pinned is None
                    else f"version {pinned} of agent '{agent}' is not ready"
                )
                return self._unrouted(agent, 503, message, api)
            try:
                return await self._forward(request, agent, server, path, body, headers, rid, api)
            except aiohttp.ClientConnectorError:
                # Never reached the server: mark it down and try another ready version.
                server.mark_down()
                tried.add(server.version)

    async def _forward(
        self,
        request: web.Request,
        agent: str,
        server: ModelServer,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        rid: str,
        api: str = "",
    ) -> web.StreamResponse:
        assert self._session is not None
        server.in_flight += 1
        start = time.perf_counter()
        code = "502"
        prepared = False
        try:
            async with self._session.post(
                f"{server.url}{path}", data=body, headers=headers
            ) as upstream:
                server.answered()
                code = str(upstream.status)
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_RESPONSE}
                out[VERSION_HEADER] = str(server.version)
                out["X-Request-Id"] = rid
                if upstream.content_length is not None:
                    data = await upstream.read()
                    if upstream.status >= 400:
                        data = _without_trace(data, agent, server.version, rid)
                        out.pop("Content-Length", None)
                    return web.Response(status=upstream.status, body=data, headers=out)
                # A stream: pass each chunk on as it comes.
                response = web.StreamResponse(status=upstream.status, headers=out)
                # A ConnectionError while writing: the caller hung up, nobody is left to answer.
                try:
                    await response.prepare(request)
                except ConnectionError:
                    code = CLIENT_GONE
                    return response
                prepared = True
                async for chunk in upstream.content.iter_any():
                    server.answered()  # a stream in progress: alive, whatever its pings say
                    try:
                        await response.write(chunk)
                    except ConnectionError:
                        code = CLIENT_GONE
                        return response
                try:
                    await response.write_eof()
                except ConnectionError:
                    code = CLIENT_GONE
                return response
        except aiohttp.ClientConnectorError:
            code = ""
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            if prepared:
                # The status line is sent: the only honest signal left is to cut the connection,
                # which aiohttp does when the handler raises.
                code = "504" if isinstance(exc, TimeoutError) else "502"
                raise
            code = "504" if isinstance(exc, TimeoutError) else "502"
            said = f"version {server.version} of '{agent}' failed to answer: {exc}"
            failed = (
                web.json_response(openai_error(int(code), said), status=int(code))
                if api == "openai"
                else _error(int(code), said)
            )
            failed.headers["X-Request-Id"] = rid
            return failed
        finally:
            server.in_flight -= 1
            if code:  # (no code: never reached the server; the request goes elsewhere)
                self._record(agent, server.version, "primary", code, start)

    def _record(self, agent: str, version: int, role: str, code: str, start: float) -> None:
        """One answered (or failed) request: its latency, its code, and whether it failed."""
        latency, errors = self._child(agent, version, role)
        latency.observe(time.perf_counter() - start)
        self._count(agent, version, role, code)
        if code[0] in "45" and code != CLIENT_GONE:
            errors.inc()

    def _child(self, agent: str, version: int, role: str) -> tuple[Any, Any]:
        key = (agent, version, role)
        found = self._children.get(key)
        if found is None:
            labels = (agent, _label(version), role)
            found = (self._latency.labels(*labels), self._errors.labels(*labels))
            self._children[key] = found
        return found

    def _count(self, agent: str, version: int, role: str, code: str) -> None:
        key = (agent, version, role, code)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = self._requests.labels(agent, _label(version), role, code)
        child.inc()

    def _mirror(
        self, agent: str, server: ModelServer, path: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        if len(self._mirrors) >= MAX_MIRRORS:
            self._dropped.labels(agent).inc()
            return
        task = asyncio.create_task(self._shadow(agent, server, path, body, dict(headers)))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _shadow(
        self, agent: str, server: ModelServer, path: str, body: bytes, headers: dict[str, str]
    ) -> None:
        assert self._session is not None
        server.in_flight += 1
        start = time.perf_counter()
        code = "502"
        try:
            async with self._session.post(
                f"{server.url}{path}", data=body, headers=headers
            ) as upstream:
                server.answered()
                await upstream.read()
                code = str(upstream.status)
        except aiohttp.ClientConnectorError:
            server.mark_down()
        except (aiohttp.ClientError, TimeoutError) as exc:
            code = "504" if isinstance(exc, TimeoutError) else "502"
        finally:
            server.in_flight -= 1
            self._record(agent, server.version, "shadow", code, start)


def _label(version: int) -> str:
    return "none" if version == NO_VERSION else str(version)


@web.middleware
async def _openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own refusals (no such path, wrong method, a body over MAX_BODY) on OpenAI's
    paths, in OpenAI's error shape."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        path = request.path
        if exc.status < 400 or not (path.startswith("/v1/") or "/v1/" in path):
            raise
        said = exc.text if exc.text and exc.status != 404 else f"no {request.method} {path}"
        code = "not_found" if exc.status == 404 else None
        return web.json_response(openai_error(exc.status, said, None, code), status=exc.status)


def _json_object(body: bytes, strict: bool = True) -> Mapping[str, Any]:
    """The body as a JSON object; not one: BadRequest (``strict``) or an empty mapping."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (nor UTF-8), or nested too deep to read
        if strict:
            raise BadRequest("the body is not JSON, or is nested too deep") from None
        return {}
    if not isinstance(data, dict):
        if strict:
            raise BadRequest("the body is not a JSON object")
        return {}
    return data


def _without_trace(data: bytes, agent: str, version: int, rid: str) -> bytes:
    """An error body with no stack trace: a model server that still sends one (MLflow's
    ``stack_trace``) has it cut here; it stays in that server's log."""
    if b"stack_trace" not in data and b"Traceback (most recent call last)" not in data:
        return data
    try:
        found = json.loads(data)
    except (ValueError, RecursionError):
        found = None
    message = "the agent failed to answer"
    if isinstance(found, dict):
        given = found.get("message")
        if isinstance(given, str) and "Traceback" not in given:
            message = given.splitlines()[0][:300] if given else message
    short = {"error_code": found.get("error_code") if isinstance(found, dict) else None,
             "message": message, "agent": agent, "version": version, "request_id": rid}  # fmt: skip
    return json.dumps(short).encode()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status)
