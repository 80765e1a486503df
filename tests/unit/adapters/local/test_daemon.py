"""The local serving daemon's operations, with stand-in model servers (real processes on
127.0.0.1, tests/support/stand_in_server.py) in place of `mlflow models serve`: replacing a
version without a gap, a start that fails, shutting down while a replacement gets ready."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from controller.adapters.local.daemon import Closing, Daemon
from controller.adapters.local.rundir import RunDir, alive
from controller.adapters.local.supervisor import ModelServer, ServerFailed

STAND_IN = str(Path(__file__).resolve().parents[3] / "support" / "stand_in_server.py")


def command(*extra: str) -> Callable[[str, int, int], list[str]]:
    def build(model: str, version: int, port: int) -> list[str]:
        return [sys.executable, STAND_IN, model, str(version), str(port), *extra]

    return build


def commands(by_model: dict[str, tuple[str, ...]]) -> Callable[[str, int, int], list[str]]:
    def build(model: str, version: int, port: int) -> list[str]:
        return command(*by_model.get(model, ()))(model, version, port)

    return build


def run_daemon(
    tmp_path: Path,
    build: Callable[[str, int, int], list[str]],
    test: Callable[[Daemon, aiohttp.ClientSession], Awaitable[None]],
) -> Daemon:
    run_dir = RunDir(tmp_path / "run")
    run_dir.prepare()
    daemon = Daemon(run_dir, 0, None, command=build)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            daemon._session = session
            try:
                await test(daemon, session)
            finally:
                daemon.stopped.set()
                await daemon.stop_all()

    asyncio.run(asyncio.wait_for(main(), 60))
    return daemon


ENV = dict(os.environ)


async def ask(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with session.post(f"{url}/invocations", json={}) as resp:
        return dict(await resp.json())


def test_a_version_of_another_model_is_replaced_beside_the_old_one(tmp_path: Path) -> None:
    pids: list[int] = []

    async def test(daemon: Daemon, session: aiohttp.ClientSession) -> None:
        old = await daemon.start_version("bot", 1, "old", ENV, 30)
        daemon.set_route("bot", "old", {1: 100})
        pids.append(old.pid or 0)
        replacing = asyncio.create_task(daemon.start_version("bot", 1, "new", ENV, 30))
        await asyncio.sleep(0.3)
        # While the new one gets ready (it waits 1 s), the old one still answers.
        assert daemon.servers["bot"][1] is old and old.ready
        assert [s["model"] for s in daemon.state()["pending"]] == ["new"]
        new = await replacing
        pids.append(new.pid or 0)
        assert daemon.servers["bot"][1] is new and daemon.state()["pending"] == []
        assert await ask(session, new.url) == {"model": "new", "version": 1}
        assert not alive(pids[0]), "the old server was stopped after the swap"
        assert daemon.router.routes["bot"].weights == ((1, 100),)

    run_daemon(tmp_path, commands({"new": ("--delay", "1")}), test)
    assert not any(alive(p) for p in pids)


def test_a_start_that_fails_is_stopped_and_forgotten(tmp_path: Path) -> None:
    async def test(daemon: Daemon, _session: aiohttp.ClientSession) -> None:
        with pytest.raises(ServerFailed, match="exited 2 times before it was ready"):
            await daemon.start_version("bot", 1, "broken", ENV, 30)
        assert daemon.servers == {} and daemon.state()["agents"] == {}

    run_daemon(tmp_path, commands({"broken": ("--fail",)}), test)


def test_a_server_that_takes_traffic_is_not_removed_when_a_wait_for_it_fails(
    tmp_path: Path,
) -> None:
    async def test(daemon: Daemon, _session: aiohttp.ClientSession) -> None:
        server = await daemon.start_version("bot", 1, "m", ENV, 30)
        daemon.set_route("bot", "m", {1: 100})
        server.ready, server.failures_before_ready = False, 2  # as if it were crash-looping
        with pytest.raises(ServerFailed, match="exited 2 times"):
            await daemon.start_version("bot", 1, "m", ENV, 30)
        assert daemon.servers["bot"][1] is server, "another call's server is left alone"

    run_daemon(tmp_path, command(), test)


def test_shutting_down_stops_a_replacement_that_is_getting_ready(tmp_path: Path) -> None:
    seen: dict[str, int] = {}

    async def test(daemon: Daemon, _session: aiohttp.ClientSession) -> None:
        old = await daemon.start_version("bot", 1, "old", ENV, 30)
        daemon.set_route("bot", "old", {1: 100})
        replacing = asyncio.create_task(daemon.start_version("bot", 1, "new", ENV, 30))
        await asyncio.sleep(0.3)
        seen["old"], seen["new"] = old.pid or 0, daemon.pending[("bot", 1)].pid or 0
        daemon.stopped.set()
        await daemon.stop_all()
        with pytest.raises(Closing):
            await replacing
        with pytest.raises(Closing):
            daemon.set_mirror("bot", None)
        with pytest.raises(Closing):
            await daemon.start_version("bot", 2, "old", ENV, 30)

    run_daemon(tmp_path, commands({"new": ("--delay", "5")}), test)
    for pid in seen.values():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert not any(alive(p) for p in seen.values())


def test_a_server_whose_port_was_taken_restarts_on_another(tmp_path: Path) -> None:
    async def test() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            async with aiohttp.ClientSession() as session:
                server = ModelServer(
                    "bot", "m", 1, env=ENV, log_path=tmp_path / "bot.log", session=session,
                    port=port, command=command(),
                )  # fmt: skip
                server.start()
                try:
                    await server.wait_ready(30)
                    assert server.port != port and server.restarts == 1
                    assert await ask(session, server.url) == {"model": "m", "version": 1}
                finally:
                    await server.stop(drain=0)

    asyncio.run(asyncio.wait_for(test(), 60))
