"""The local router in front of small real HTTP upstreams on 127.0.0.1 (aiohttp servers that
stand in for model servers): streaming pass-through, a weight change with requests in flight, a
refused connection, shadow copies and error metrics. Real model servers: test_local_serving."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from controller.adapters.local.router import UNKNOWN_AGENT, VERSION_HEADER, Router
from controller.adapters.local.routing import Affinity, HeaderRoute, Route
from controller.adapters.local.supervisor import ModelServer, free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _upstream(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_post("/invocations", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def answering(version: int, delay: float = 0.0) -> Handler:
    """An upstream that answers ``{"version": version}`` after ``delay`` seconds."""

    async def handler(_request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.json_response({"version": version})

    return handler


def _served(session: aiohttp.ClientSession, version: int, port: int) -> ModelServer:
    server = ModelServer("bot", "bot", version, env={}, log_path=None, session=session, port=port)  # type: ignore[arg-type]
    server.ready = True
    return server


def _run(test: Callable[[], Awaitable[object]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


async def _with_router(
    upstreams: dict[int, Handler | None],
    route: Route,
    body: Callable[[Router, str], Awaitable[None]],
) -> Router:
    """Serve each version's handler on its own port (None: a port nothing listens on), put the
    router in front of them as the daemon runs it, and call ``body(router, base_url)``."""
    servers_up = {v: await _upstream(h) for v, h in upstreams.items() if h is not None}
    ports = {v: servers_up[v].port if v in servers_up else free_port() for v in upstreams}
    async with aiohttp.ClientSession() as session:
        servers = {"bot": {v: _served(session, v, port) for v, port in ports.items()}}
        router = Router(servers)
        router.set_route("bot", route)
        # As the daemon runs it (aiohttp's TestServer would cancel handlers on hang-ups).
        runner = web.AppRunner(router.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            await body(router, f"http://127.0.0.1:{port}/agents/bot")
        finally:
            await runner.cleanup()
            for up in servers_up.values():
                await up.close()
        return router


def test_a_stream_is_passed_on_chunk_by_chunk() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        await asyncio.sleep(0.5)
        await response.write(b"data: two\n\n")
        await response.write_eof()
        return response

    async def check(_router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            start = time.monotonic()
            async with http.post(f"{base}/invocations", json={"stream": True}) as resp:
                assert resp.headers[VERSION_HEADER] == "1"
                assert resp.headers["Content-Type"] == "text/event-stream"
                first = await resp.content.readuntil(b"\n\n")
                first_at = time.monotonic() - start
                rest = await resp.content.read()
        assert first == b"data: one\n\n" and rest == b"data: two\n\n"
        assert first_at < 0.4, f"the first chunk waited for the whole stream ({first_at:.2f} s)"

    _run(lambda: _with_router({1: stream}, Route.of({1: 100}), check))


def test_a_stream_cut_by_the_model_server_is_cut_for_the_caller_too() -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        assert request.transport is not None
        request.transport.close()  # dies mid-answer
        return response

    async def check(router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/invocations", json={}) as resp:
                assert resp.status == 200  # the status line went out before the cut
                try:
                    await resp.read()
                except aiohttp.ClientPayloadError:
                    pass
                else:
                    raise AssertionError("a cut stream was passed on as a complete answer")
            async with http.get(base.replace("/agents/bot", "/metrics")) as resp:
                metrics = await resp.text()
        assert 'request_errors_total{agent="bot",role="primary",version="1"} 1.0' in metrics

    _run(lambda: _with_router({1: broken}, Route.of({1: 100}), check))


def test_a_weight_change_does_not_drop_requests_in_flight() -> None:
    async def check(router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:

            async def ask() -> tuple[int, str]:
                async with http.post(f"{base}/invocations", json={}) as resp:
                    return resp.status, resp.headers[VERSION_HEADER]

            before = [asyncio.create_task(ask()) for _ in range(20)]
            await asyncio.sleep(0.2)  # all 20 are in flight on version 1
            router.set_route("bot", Route.of({1: 0, 2: 100}))
            after = [asyncio.create_task(ask()) for _ in range(20)]
            assert await asyncio.gather(*before) == [(200, "1")] * 20
            assert await asyncio.gather(*after) == [(200, "2")] * 20

    _run(
        lambda: _with_router(
            {1: answering(1, 0.5), 2: answering(2, 0.5)}, Route.of({1: 100, 2: 0}), check
        )
    )


def test_a_refused_connection_goes_to_another_ready_version() -> None:
    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({})

    async def check(router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            codes = []
            for _ in range(50):
                async with http.post(f"{base}/invocations", json={}) as resp:
                    codes.append((resp.status, resp.headers.get(VERSION_HEADER)))
        assert codes == [(200, "1")] * 50
        assert not router.servers["bot"][2].ready
        async with aiohttp.ClientSession() as http, http.get(f"{base}/ping") as resp:
            assert resp.status == 200 and (await resp.json())["ready"] == [1]

    _run(lambda: _with_router({1: ok, 2: None}, Route.of({1: 50, 2: 50}), check))


def test_shadow_copies_are_not_waited_for_and_errors_are_counted() -> None:
    seen: list[Any] = []

    async def primary(request: web.Request) -> web.Response:
        body = await request.json()
        status = 400 if body.get("raise") else 200
        return web.json_response({"from": "primary"}, status=status)

    async def shadow(request: web.Request) -> web.Response:
        seen.append(await request.json())
        await asyncio.sleep(1.0)
        return web.json_response({"from": "shadow"})

    async def check(router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            start = time.monotonic()
            for i in range(10):
                async with http.post(f"{base}/invocations", json={"i": i}) as resp:
                    assert (await resp.json()) == {"from": "primary"}
                    assert resp.headers[VERSION_HEADER] == "1"
            assert time.monotonic() - start < 1.0, "the caller waited for the shadow"
            async with http.post(f"{base}/invocations", json={"raise": True}) as resp:
                assert resp.status == 400
            await asyncio.sleep(1.2)
            async with http.get(base.replace("/agents/bot", "/metrics")) as resp:
                metrics = await resp.text()
        assert [x["i"] for x in seen[:10]] == list(range(10))
        assert (
            'agentctl_router_request_errors_total{agent="bot",role="primary",version="1"} 1.0'
            in metrics
        )
        assert (
            'agentctl_router_requests_total{agent="bot",code="200",role="shadow",version="2"} 11.0'
            in metrics
        )

    _run(lambda: _with_router({1: primary, 2: shadow}, Route.of({1: 100}, shadow=(2, 100)), check))


def test_the_route_is_read_once_the_body_is_in() -> None:
    async def check(router: Router, base: str) -> None:
        async def slow_body() -> AsyncIterator[bytes]:
            yield b'{"input": '
            await asyncio.sleep(0.5)
            yield b"[]}"

        async with aiohttp.ClientSession() as http:
            upload = asyncio.create_task(http.post(f"{base}/invocations", data=slow_body()))
            await asyncio.sleep(0.2)  # the upload has begun on the old route
            router.set_route("bot", Route.of({2: 100}))
            del router.servers["bot"][1]  # type: ignore[attr-defined]  # and v1 is stopped
            resp = await upload
            assert resp.status == 200 and resp.headers[VERSION_HEADER] == "2"
            resp.release()

    _run(lambda: _with_router({1: answering(1), 2: answering(2)}, Route.of({1: 100}), check))


def test_refusals_and_hang_ups_are_counted_apart_from_answers() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"data: more\n\n")
            await asyncio.sleep(0.05)
        return response

    async def check(router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/invocations", json={}) as resp:
                await resp.content.readuntil(b"\n\n")
            # The caller hung up mid-stream.
            router.servers["bot"][1].ready = False
            async with http.post(f"{base}/invocations", json={}) as resp:
                assert resp.status == 503
            async with http.post(base.replace("/bot", "/nobody") + "/invocations") as resp:
                assert resp.status == 404
            await asyncio.sleep(0.5)
            async with http.get(base.replace("/agents/bot", "/metrics")) as resp:
                metrics = await resp.text()
        assert 'requests_total{agent="bot",code="499",role="primary",version="1"} 1.0' in metrics
        assert 'errors_total{agent="bot",role="primary",version="1"} 0.0' in metrics
        assert 'requests_total{agent="bot",code="503",role="primary",version="none"} 1.0' in metrics
        assert (
            'requests_total{agent="_unknown",code="404",role="primary",version="none"} 1.0'
            in metrics
        )
        assert "nobody" not in metrics

    _run(lambda: _with_router({1: endless}, Route.of({1: 100}), check))


def test_requests_for_agents_that_are_not_routed_leave_the_metrics_bounded() -> None:
    async def check(router: Router, base: str) -> None:
        root = base.removesuffix("/agents/bot")
        sem = asyncio.Semaphore(64)
        statuses: dict[int, int] = {}

        async def one(http: aiohttp.ClientSession) -> None:
            async with sem, http.post(f"{root}/agents/{uuid.uuid4().hex}/invocations") as resp:
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(one(http) for _ in range(20_000)))
            async with http.post(f"{base}/invocations", json={}) as resp:
                assert resp.status == 200
            async with http.get(f"{root}/metrics") as resp:
                metrics = await resp.read()
        assert statuses == {404: 20_000}
        assert len(metrics) < 100_000, f"{len(metrics)} bytes"
        assert (
            f'agentctl_router_requests_total{{agent="{UNKNOWN_AGENT}",code="404",'
            'role="primary",version="none"} 20000.0'
        ).encode() in metrics
        # The routed agent keeps its own labels, as the rollout gates read them.
        assert (
            b'agentctl_router_requests_total{agent="bot",code="200",role="primary",version="1"} 1.0'
            in metrics
        )

    asyncio.run(asyncio.wait_for(_with_router({1: answering(1)}, Route.of({1: 100}), check), 300))


class _Blocking:
    """A collector whose collection waits until released: a scrape that takes as long as the
    test wants."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def collect(self) -> list[Any]:
        self.started.set()
        self.release.wait(30)
        return []


def test_routed_requests_are_answered_while_a_scrape_is_in_flight() -> None:
    blocking = _Blocking()

    async def check(router: Router, base: str) -> None:
        router.metrics.register(blocking)  # type: ignore[arg-type]
        root = base.removesuffix("/agents/bot")
        try:
            async with aiohttp.ClientSession() as http:
                scrape = asyncio.create_task(http.get(f"{root}/metrics"))
                for _ in range(100):  # bounded: the scrape has begun rendering
                    if blocking.started.is_set():
                        break
                    await asyncio.sleep(0.05)
                assert blocking.started.is_set()
                timeout = aiohttp.ClientTimeout(total=10)
                for _ in range(20):
                    async with http.post(f"{base}/invocations", json={}, timeout=timeout) as resp:
                        assert resp.status == 200 and resp.headers[VERSION_HEADER] == "1"
                # Every routed request was answered while the scrape was still being rendered.
                assert not scrape.done() and not blocking.release.is_set()
                blocking.release.set()
                resp = await scrape
                assert resp.status == 200
                assert b"agentctl_router_requests_total" in await resp.read()
                resp.release()
        finally:
            blocking.release.set()

    _run(lambda: _with_router({1: answering(1)}, Route.of({1: 100}), check))


async def _openai_upstreams(versions: list[int]) -> dict[int, Handler]:
    def echo(version: int) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body = await request.json() if request.can_read_body else {}
            return web.json_response(
                {
                    "version": version,
                    "path": request.path,
                    "model": body.get("model"),
                    "request_id": request.headers.get("X-Request-Id"),
                },
            )

        return handler

    return {v: echo(v) for v in versions}


async def _with_openai_router(
    route: Route,
    body: Callable[[Router, str], Awaitable[None]],
    aliases: dict[str, int] | None = None,
) -> None:
    handlers = await _openai_upstreams([v for v, _ in route.weights])
    servers_up = {}
    for v, h in handlers.items():
        app = web.Application(client_max_size=8 << 20)  # uvicorn has no limit of its own
        for path in ("/invocations", "/v1/responses", "/v1/chat/completions"):
            app.router.add_post(path, h)
        servers_up[v] = TestServer(app, host="127.0.0.1")
        await servers_up[v].start_server()

    async def resolve(_agent: str, alias: str) -> int | None:
        return (aliases or {}).get(alias)

    async with aiohttp.ClientSession() as session:
        servers = {"bot": {v: _served(session, v, up.port) for v, up in servers_up.items()}}
        router = Router(servers, aliases=resolve)
        router.set_route("bot", route)
        runner = web.AppRunner(router.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            await body(router, f"http://127.0.0.1:{runner.addresses[0][1]}")
        finally:
            await runner.cleanup()
            for up in servers_up.values():
                await up.close()


def test_openai_requests_choose_the_agent_and_pin_versions_by_the_model_field() -> None:
    async def check(_router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            for model, want in (("bot@2", 2), ("bot@v1", 1), ("bot@champion", 2), ("bot", 1)):
                async with http.post(f"{base}/v1/responses", json={"model": model}) as resp:
                    got = await resp.json()
                    assert resp.status == 200, got
                    assert (got["version"], got["path"], got["model"]) == (
                        want,
                        "/v1/responses",
                        model,
                    )
                    assert resp.headers[VERSION_HEADER] == str(want)
                    assert resp.headers["X-Request-Id"] == got["request_id"]
            async with http.post(
                f"{base}/agents/bot/v1/chat/completions", json={"model": "anything"}
            ) as resp:
                assert (await resp.json())["path"] == "/v1/chat/completions"
            async with http.get(f"{base}/v1/models") as resp:
                assert [m["id"] for m in (await resp.json())["data"]] == ["bot"]

    _run(lambda: _with_openai_router(Route.of({1: 100, 2: 0}), check, {"champion": 2}))


def test_openai_requests_the_router_cannot_take_get_openai_errors_never_a_500() -> None:
    async def check(_router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            cases = [
                ({"model": "nobody"}, 404, "model"),
                ({"model": "bot@7"}, 404, "model"),
                ({"model": "bot@nosuchalias"}, 404, "model"),
                ({"model": 3}, 400, "model"),
                ({"input": "hi"}, 400, "model"),
                ({"model": "bot", "conversation": 12}, 400, "conversation"),
                (
                    {"model": "bot", "context": {"conversation_id": ["x"]}},
                    400,
                    "context.conversation_id",
                ),
            ]
            for body, status, param in cases:
                async with http.post(f"{base}/v1/responses", json=body) as resp:
                    got = await resp.json()
                    assert resp.status == status, (body, got)
                    assert got["error"]["param"] == param and got["error"]["message"], got
                    assert got["error"]["type"] == "invalid_request_error"
            for raw in (b"not json", b"[1, 2]", b"\xff\xfe"):
                async with http.post(f"{base}/v1/responses", data=raw) as resp:
                    assert resp.status == 400 and "error" in await resp.json()

    affinity = Affinity()
    _run(lambda: _with_openai_router(Route.of({1: 100}, affinity=affinity), check))


def test_a_header_route_reaches_a_version_at_zero_percent() -> None:
    route = Route.of({1: 100, 2: 0}, headers=(HeaderRoute("x-agent-version", "canary", 2),))

    async def check(_router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.post(
                    f"{base}/agents/bot/invocations", json={}, headers={"X-Agent-Version": "canary"}
                ) as resp:
                    assert (await resp.json())["version"] == 2
                async with http.post(f"{base}/agents/bot/invocations", json={}) as resp:
                    assert (await resp.json())["version"] == 1

    _run(lambda: _with_openai_router(route, check))


def test_a_conversation_keeps_its_version_through_the_router() -> None:
    route = Route.of({1: 50, 2: 50}, affinity=Affinity(header="x-session-id"))

    async def check(_router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            spread = set()
            for c in range(40):
                seen = set()
                for turn in range(4):
                    body = {"input": [], "context": {"conversation_id": f"conv-{c}"}}
                    if turn % 2:
                        body = {"input": []}  # later turns may carry the id in the header only
                    async with http.post(
                        f"{base}/agents/bot/invocations",
                        json=body,
                        headers={"X-Session-Id": f"conv-{c}"},
                    ) as resp:
                        seen.add((await resp.json())["version"])
                assert len(seen) == 1, (c, seen)
                spread |= seen
            assert spread == {1, 2}

    _run(lambda: _with_openai_router(route, check))


def test_an_error_body_with_a_stack_trace_is_cut_short() -> None:
    async def raising(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "error_code": "BAD_REQUEST",
                "message": "Encountered an unexpected error",
                "stack_trace": 'Traceback (most recent call last):\n  File "agent.py", line 3',
            },
            status=400,
        )

    async def check(_router: Router, base: str) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base}/invocations", json={}) as resp,
        ):
            text = await resp.text()
            assert resp.status == 400
            assert "Traceback" not in text and "agent.py" not in text
            got = await resp.json()
            assert got["agent"] == "bot" and got["version"] == 1
            assert got["request_id"] == resp.headers["X-Request-Id"]
            assert got["message"] == "Encountered an unexpected error"

    _run(lambda: _with_router({1: raising}, Route.of({1: 100}), check))


def test_what_the_router_refuses_on_openai_paths_is_openai_shaped_never_a_500() -> None:
    async def check(_router: Router, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            deep = b"[" * 100_000
            for method, path, data, status in (
                ("POST", "/v1/responses", deep, 400),
                ("POST", "/agents/bot/v1/responses", b"{}", 200),
                ("GET", "/v1/responses", None, 405),
                ("POST", "/v1/embeddings", b"{}", 404),
            ):
                async with http.request(method, f"{base}{path}", data=data) as resp:
                    assert resp.status == status, (path, await resp.text())
                    if status != 200:
                        got = await resp.json()
                        assert set(got["error"]) == {"message", "type", "param", "code"}, got
            big = json.dumps({"model": "bot", "input": "x" * (2 << 20)}).encode()
            async with http.post(f"{base}/v1/responses", data=big) as resp:
                assert resp.status == 200  # over aiohttp's 1 MiB default, under MAX_BODY
                assert resp.headers.getall("X-Request-Id") == [resp.headers["X-Request-Id"]]

    _run(lambda: _with_openai_router(Route.of({1: 100}, affinity=Affinity()), check))
