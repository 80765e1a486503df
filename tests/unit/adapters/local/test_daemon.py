"""The local serving daemon's operations, with stand-in model servers (real processes on
127.0.0.1, tests/support/stand_in_server.py) in place of `mlflow models serve`: replacing a
version without a gap, a start that fails, shutting down while a replacement gets ready; and
readiness behind the real router: a busy server stays in, a dead one is routed around."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

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


async def _through_router(daemon: Daemon, test: Callable[[str], Awaitable[None]]) -> None:
    """The daemon's router served on 127.0.0.1 as the daemon runs it; ``test(agents_url)``."""
    runner = web.AppRunner(daemon.router.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        await test(f"http://127.0.0.1:{runner.addresses[0][1]}/agents/bot")
    finally:
        await runner.cleanup()


async def _traffic(
    url: str,
    seconds: float,
    on_answer: Callable[[int, str, bool], None],
    before: Callable[[], bool] = lambda: True,
    workers: int = 4,
) -> None:
    """Requests from ``workers`` callers for ``seconds`` (at most 2,000 each); ``on_answer``
    gets each status, the version that answered and whether ``before()`` held as it was sent or
    as it was answered (a server restarted in between may answer a request sent while it was
    down)."""
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=10)

    async def caller(http: aiohttp.ClientSession) -> None:
        for _ in range(2000):
            if time.monotonic() > deadline:
                return
            tag = before()
            async with http.post(f"{url}/invocations", json={}, timeout=timeout) as resp:
                await resp.read()
                tag = tag or before()
                on_answer(resp.status, resp.headers.get("X-Agentctl-Version", ""), tag)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(caller(http) for _ in range(workers)))


def test_a_busy_server_whose_pings_time_out_stays_ready_and_nothing_is_refused(
    tmp_path: Path,
) -> None:
    answers: list[tuple[int, str, bool]] = []

    async def test(daemon: Daemon, _session: aiohttp.ClientSession) -> None:
        server = await daemon.start_version("bot", 1, "m", ENV, 30)
        daemon.set_route("bot", "m", {1: 100})
        # Once busy, its pings take 1 s: five times the ping timeout, so every ping of the
        # 2.5 s below times out (three in a row used to mark it down), while its answers go on.
        server.ping_timeout = 0.2

        async def run(url: str) -> None:
            await _traffic(url, 2.5, lambda *a: answers.append(a), lambda: server.ready)

        await _through_router(daemon, run)

    run_daemon(tmp_path, command("--slow-ping", "1.0", "--answer-delay", "0.02"), test)
    assert len(answers) > 20
    assert {(status, v) for status, v, _ in answers} == {(200, "1")}
    assert all(ready for _, _, ready in answers), "a busy server was marked down"


def test_a_killed_server_is_marked_down_at_once_and_routed_around(tmp_path: Path) -> None:
    answers: list[tuple[int, str, bool]] = []
    seen_down: list[bool] = []

    async def test(daemon: Daemon, _session: aiohttp.ClientSession) -> None:
        for v in (1, 2):
            await daemon.start_version("bot", v, "m", ENV, 30)
        daemon.set_route("bot", "m", {1: 50, 2: 50})
        killed = daemon.servers["bot"][2]

        async def run(url: str) -> None:
            async def kill_then_watch() -> None:
                await asyncio.sleep(0.5)
                os.killpg(killed.pid or 0, signal.SIGKILL)
                for _ in range(200):  # bounded (10 s): its supervisor looks every 0.25 s
                    if not killed.ready:
                        seen_down.append(True)
                        return
                    await asyncio.sleep(0.05)

            await asyncio.gather(
                # Long enough on a loaded machine to send requests after the death is noticed.
                _traffic(url, 4.0, lambda *a: answers.append(a), lambda: killed.ready),
                kill_then_watch(),
            )

        await _through_router(daemon, run)

    run_daemon(tmp_path, command(), test)
    assert seen_down == [True], "the killed server was not marked down"
    statuses = [status for status, _, _ in answers]
    # None is refused for want of a ready version; only requests sent to it before its death
    # was noticed are lost (502: a POST it may have begun is not sent again).
    assert 503 not in statuses, statuses
    assert all(ready for status, _, ready in answers if status != 200), answers
    # Sent while it was down: all answered by the other version.
    routed_around = [(status, v) for status, v, ready in answers if not ready]
    assert routed_around and set(routed_around) == {(200, "1")}
    assert {v for status, v, _ in answers if status == 200} == {"1", "2"}


def test_a_daemon_that_cannot_start_says_why_and_nothing_else(tmp_path: Path) -> None:
    """Its router's port taken: one line, exit 1, no ``Unclosed client session`` noise."""
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-P", "-m", "controller.adapters.local.daemon",
             "--run-dir", str(tmp_path / "run"), "--router-port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == "cannot start local serving: [Errno 98] Address already in use"
    assert not (tmp_path / "run" / "admin.sock").exists()
