"""A supervised model server's log, with the real uvicorn that ``mlflow models serve`` runs
(tests/support/asgi_stand_in.py as the app): private, without the readiness pings, every
other request kept, and rotated when it outgrows its bound."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from controller.adapters.local.rundir import RunDir
from controller.adapters.local.supervisor import ModelServer

REPO = Path(__file__).resolve().parents[4]


def uvicorn(model: str, version: int, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
            "--app-dir", str(REPO), "tests.support.asgi_stand_in:app"]  # fmt: skip


def _supervised(
    tmp_path: Path,
    command: Callable[[str, int, int], list[str]],
    test: Callable[[ModelServer, aiohttp.ClientSession], Awaitable[None]],
    **kwargs: object,
) -> ModelServer:
    run_dir = RunDir(tmp_path / "run")
    run_dir.prepare()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UVICORN_", "AGENTCTL_"))}

    async def main() -> ModelServer:
        async with aiohttp.ClientSession() as session:
            server = ModelServer(
                "bot", "bot", 1, env=env, log_path=run_dir.server_log("bot", 1),
                session=session, interval=0.05, command=command, **kwargs,  # type: ignore[arg-type]
            )  # fmt: skip
            server.start()
            try:
                await server.wait_ready(30)
                await test(server, session)
            finally:
                await server.stop(drain=0, grace=5)
            return server

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_the_log_is_private_and_has_every_request_but_the_pings(tmp_path: Path) -> None:
    async def test(server: ModelServer, session: aiohttp.ClientSession) -> None:
        for _ in range(3):
            async with session.post(f"{server.url}/invocations", json={}) as resp:
                assert resp.status == 200
        await asyncio.sleep(1.0)  # about 20 more pings (one every 0.05 s)

    server = _supervised(tmp_path, uvicorn, test)
    log = server.log_path.read_text()
    assert log.count('"POST /invocations HTTP/1.1" 200') == 3, log
    assert "Uvicorn running on" in log  # uvicorn's own lines are still there
    assert "/ping" not in log, log
    assert stat.S_IMODE(server.log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.log_path.parent.stat().st_mode) == 0o700


CHATTY = (
    "import sys, time\n"
    "from aiohttp import web\n"
    "async def ping(r):\n"
    "    print('x' * 2000, flush=True)\n"
    "    return web.Response(text='\\n')\n"
    "app = web.Application(); app.router.add_get('/ping', ping)\n"
    "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)\n"
)


def test_a_chatty_server_s_log_is_rotated_at_its_bound(tmp_path: Path) -> None:
    limit = 32 << 10

    async def test(server: ModelServer, session: aiohttp.ClientSession) -> None:
        backup = server.log_path.with_name(server.log_path.name + ".1")
        for _ in range(200):  # bounded: 2 KB a ping, a ping every 0.05 s: 100 KB in 2.5 s
            await asyncio.sleep(0.05)
            if backup.exists() and server.log_path.stat().st_size > limit // 2:
                break
        assert backup.exists()

    server = _supervised(
        tmp_path,
        lambda model, version, port: [sys.executable, "-c", CHATTY, str(port)],
        test,
        log_max_bytes=limit,
    )
    files = sorted(p.name for p in server.log_path.parent.iterdir() if p.name.startswith("bot"))
    assert files == ["bot-v1.log", "bot-v1.log.1"]
    for f in files:
        size = (server.log_path.parent / f).stat().st_size
        assert size <= limit + (16 << 10), (f, size)  # the bound, and a few pings more
