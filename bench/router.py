"""Benchmark: the local router's cost over calling a model server directly.

One run on this machine: the example support bot is registered on an embedded sqlite registry in
a temporary directory and served by `agentctl apply --target local` (one real `mlflow models
serve`, behind the real router). The same load generator (aiohttp, in this process) then sends
the same request straight to the model server and through the router:

- latency: one client, alternating direct and routed requests (p50, p99); the router's added
  p50 is the goal (<= 1 ms);
- throughput: 32 concurrent clients, in rounds alternating direct and routed (requests/s, p50,
  p99); through the router >= 90 % of direct.

- time to first byte of a streamed answer (``"stream": true``: the ResponsesAgent's
  ``predict_stream`` events as server-sent events): one client, alternating direct and routed
  (p50, p99 of the first chunk's arrival, and of the last); the router's added p50 is the goal
  (<= 1 ms), and its streamed answers must carry the same events as direct ones.

Printed as measured / goal / ratio. Not a pass/fail test: run it with `make bench-router` or
`.venv/bin/python bench/router.py [--requests N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
AGENTCTL = str(Path(sys.executable).with_name("agentctl"))
BODY = {"input": [{"role": "user", "content": "how do I get a refund?"}]}


def agentctl(cwd: Path, *args: str) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    done = subprocess.run(
        [AGENTCTL, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"agentctl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


async def load(url: str, clients: int, total: int) -> tuple[list[float], float, int]:
    """Send ``total`` requests from ``clients`` concurrent loops; latencies (s), wall time (s)
    and the number of failed requests."""
    latencies: list[float] = []
    failures = 0
    remaining = total
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            nonlocal remaining, failures
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                async with http.post(url, data=payload, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - start)

        begin = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - begin
    return latencies, wall, failures


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
    )


async def paired(direct: str, router: str, total: int) -> tuple[list[float], list[float]]:
    """One client, alternating direct and routed requests, so that both see the same server
    state (its trace store grows as the run goes on)."""
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}
    out: dict[str, list[float]] = {direct: [], router: []}
    async with aiohttp.ClientSession() as http:
        for i in range(total * 2):
            url = direct if i % 2 == 0 else router
            start = time.perf_counter()
            async with http.post(url, data=payload, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            out[url].append(time.perf_counter() - start)
    return out[direct], out[router]


async def first_bytes(
    direct: str, router: str, total: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One client, alternating direct and routed streamed requests: per URL, the seconds to the
    first chunk ("first") and to the end ("last"); every streamed answer is checked to be
    server-sent events ending in ``data: [DONE]``, the same events direct and routed."""
    payload = json.dumps({**BODY, "stream": True}).encode()
    headers = {"Content-Type": "application/json"}
    out: dict[str, dict[str, list[float]]] = {
        u: {"first": [], "last": []} for u in (direct, router)
    }
    bodies: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(total * 2):
            url = direct if i % 2 == 0 else router
            start = time.perf_counter()
            async with http.post(url, data=payload, headers=headers) as resp:
                assert resp.status == 200, resp.status
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                first = await resp.content.readany()
                out[url]["first"].append(time.perf_counter() - start)
                body = first + await resp.content.read()
                out[url]["last"].append(time.perf_counter() - start)
            assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
            bodies.setdefault(url, body)
    assert bodies[direct] == bodies[router], "the router changed the streamed events"
    return out[direct], out[router]


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    return {
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "rps": len(latencies) / wall,
        "failures": 0,
    }


def rounds(
    direct: str, router: str, clients: int, total: int, n: int = 6
) -> tuple[dict[str, float], dict[str, float]]:
    """``clients`` concurrent clients, in ``n`` rounds that alternate direct and routed, so that
    a drift of the server (its trace store grows) weighs on both alike."""
    asyncio.run(load(direct, clients, 200))  # warm-up
    asyncio.run(load(router, clients, 200))
    lat: dict[str, list[float]] = {direct: [], router: []}
    wall = {direct: 0.0, router: 0.0}
    failed = {direct: 0, router: 0}
    for i in range(n):
        url = direct if i % 2 == 0 else router
        latencies, seconds, failures = asyncio.run(load(url, clients, total // (n // 2)))
        lat[url] += latencies
        wall[url] += seconds
        failed[url] += failures
    out = []
    for url in (direct, router):
        row = summary(lat[url], wall[url])
        row["failures"] = failed[url]
        out.append(row)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per measurement")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--streams", type=int, default=500, help="streamed requests each way")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentctl-bench-"))
    try:
        repo = work / "repo"
        shutil.copytree(REPO / "manifests", repo / "manifests")
        (repo / ".git").mkdir()
        (repo / "manifests" / "summarizer.yaml").unlink()
        agentctl(work, "apply", str(repo / "manifests"), "--target", "local", "--router-port", "0")
        state = json.loads((work / ".agentctl" / "state.json").read_text())
        server = state["agents"]["support-bot"]["versions"]["1"]["url"]
        direct_url = f"{server}/invocations"
        router_url = f"{state['router']}/agents/support-bot/invocations"

        print(f"machine: {os.cpu_count()} cores; {args.requests} requests per measurement")
        print("model server: agentctl's agent server (MLflow's scoring server + streaming, 1 "
              "uvicorn worker), tracing to sqlite")  # fmt: skip
        asyncio.run(paired(direct_url, router_url, 100))  # warm-up
        d, r = asyncio.run(paired(direct_url, router_url, args.requests // 2))
        # One client: its rate is the inverse of its latency, each measured on its own requests.
        one_direct, one_router = summary(d, sum(d)), summary(r, sum(r))
        many_direct, many_router = rounds(direct_url, router_url, args.clients, args.requests)
        asyncio.run(first_bytes(direct_url, router_url, 50))  # warm-up
        s_direct, s_router = asyncio.run(first_bytes(direct_url, router_url, args.streams))
    finally:
        try:
            agentctl(work, "down")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("direct, 1 client", one_direct),
        ("router, 1 client", one_router),
        (f"direct, {args.clients} clients", many_direct),
        (f"router, {args.clients} clients", many_router),
    ]
    print(f"\n{'':24} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'failed':>7}")
    for name, r in rows:
        print(
            f"{name:24} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['rps']:8.1f} {r['failures']:7.0f}"
        )
    print(f"\n{'router / direct':24} {'p50':>8} {'p99':>8} {'req/s':>8}")
    for name, d, r in (("1 client", one_direct, one_router),
                       (f"{args.clients} clients", many_direct, many_router)):  # fmt: skip
        print(
            f"{name:24} {r['p50_ms'] / d['p50_ms']:8.3f} {r['p99_ms'] / d['p99_ms']:8.3f} "
            f"{r['rps'] / d['rps']:8.3f}"
        )
    added = one_router["p50_ms"] - one_direct["p50_ms"]
    share = many_router["rps"] / many_direct["rps"]
    added_32 = many_router["p50_ms"] - many_direct["p50_ms"]
    print(f"\n{'goal':44} {'measured':>10} {'goal':>8} {'ratio':>7}")
    print(
        f"{'p50 added by the router, 1 client (ms)':44} {added:10.2f} {'<= 1':>8} {added / 1.0:7.2f}"
    )
    print(
        f"{f'throughput via router / direct, {args.clients} clients':44} "
        f"{share:10.2f} {'>= 0.90':>8} {share / 0.9:7.2f}"
    )
    print(f"{f'(p50 added at {args.clients} clients, ms)':44} {added_32:10.2f}")

    print(f"\n{'streamed, 1 client':24} {'first p50':>10} {'first p99':>10} {'last p50':>9}")
    for name, got in (("direct", s_direct), ("router", s_router)):
        print(
            f"{name:24} {pct(got['first'], 50) * 1000:10.2f} {pct(got['first'], 99) * 1000:10.2f} "
            f"{pct(got['last'], 50) * 1000:9.2f}"
        )
    ttfb = (pct(s_router["first"], 50) - pct(s_direct["first"], 50)) * 1000
    print(
        f"{'time to first byte added by the router (ms)':44} {ttfb:10.2f} {'<= 1':>8} "
        f"{ttfb / 1.0:7.2f}"
    )


if __name__ == "__main__":
    main()
