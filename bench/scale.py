"""Benchmark: 1,000 agents against a real MLflow server, one run, printed as measured / goal / ratio.

For each backend (sqlite, then PostgreSQL as the production-like one) it starts ``mlflow server``
on 127.0.0.1 with a counting proxy in front (requests counted as the server receives them),
generates N agent manifests (a registered model each, with a description, tags, two pinned
versions and a ``champion`` alias), brings the server to that desired state with ``agentctl
apply`` (the versions are registered from one logged model beforehand, as a platform's history
would be, so that no agent code runs), then measures:

(a) ``agentctl validate`` of the N files (wall, a fresh process: imports included);
(b) a no-op ``agentctl plan`` (wall including imports; REST requests the server received);
(c) ``agentctl apply`` moving N aliases (champion 1 -> 2), with parallel writes and serially
    (``--parallelism 1``);
(d) the baseline: the same reads (per agent: the model with its aliases and tags, its versions)
    and the same writes (N alias moves, one at a time) through a plain per-agent MlflowClient
    loop;
(e) the peak resident memory of every agentctl process above.

Run it with ``make bench-scale`` or ``.venv/bin/python bench/scale.py [--agents N]
[--backend sqlite|postgres|both]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.proxy import CountingProxy  # noqa: E402

AGENTCTL = str(Path(sys.executable).with_name("agentctl"))

MANIFEST = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: agent-{i:04d}
spec:
  description: Agent number {i} of the scale benchmark.
  tags:
    team: team-{team}
    tier: "{tier}"
{versions}"""

VERSIONS = """\
  versions: [1, 2]
  aliases:
    champion: {champion}
"""


def write_manifests(root: Path, n: int, champion: int | None) -> None:
    for i in range(1, n + 1):
        versions = VERSIONS.format(champion=champion) if champion is not None else ""
        text = MANIFEST.format(i=i, team=i % 17, tier=i % 3, versions=versions)
        (root / f"agent-{i:04d}.yaml").write_text(text)


@dataclass
class Run:
    wall: float
    rss_mib: float
    code: int
    out: str


def agentctl(*args: str, env: dict[str, str]) -> Run:
    """One agentctl process, timed from its start to its exit; its peak RSS (ru_maxrss of the one
    child of a small wrapper, so that other children of this process do not count)."""
    wrapper = (
        "import resource, subprocess, sys, json\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'code': p.returncode, 'rss': r, 'out': p.stdout[-3000:] + p.stderr[-3000:]}))\n"
    )
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", wrapper, AGENTCTL, *args], capture_output=True, text=True, env=env,
        check=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    data = json.loads(p.stdout)
    return Run(wall, data["rss"] / 1024, data["code"], data["out"])


@dataclass
class Table:
    rows: list[tuple[str, float, float | None, str, bool]] = field(default_factory=list)

    def add(self, what: str, measured: float, goal: float | None, unit: str, lower: bool = True):  # type: ignore[no-untyped-def]
        """``lower``: the goal is a ceiling (ratio = measured / goal); else a floor."""
        self.rows.append((what, measured, goal, unit, lower))
        if goal is None:
            print(f"  {what:<58} {measured:>10.3f} {unit:<5}", flush=True)
        else:
            ratio = measured / goal if lower else goal / measured
            ok = "ok" if ratio <= 1 else "MISSED"
            print(
                f"  {what:<58} {measured:>10.3f} {unit:<5} {goal:>8.2f} {ratio:>6.2f} {ok}",
                flush=True,
            )


def seed_versions(client: Any, names: list[str], workers: int = 8) -> None:
    """Two versions of each model, registered from one logged model (no agent code runs)."""
    import mlflow

    exp = client.create_experiment("/bench/seed")
    mlflow.set_tracking_uri(client.tracking_uri)
    logged = mlflow.initialize_logged_model(name="seed", experiment_id=exp)
    source = f"models:/{logged.model_id}"

    def two(name: str) -> None:
        for _ in (1, 2):
            client.create_model_version(
                name, source, model_id=logged.model_id, await_creation_for=0
            )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(two, names))


def baseline_reads(client: Any, names: list[str]) -> int:
    """What a hand-written script reads to plan: per agent, the model and its versions."""
    calls = 0
    for name in names:
        client.get_registered_model(name)
        client.search_model_versions(f"name = '{name}'")
        calls += 2
    return calls


def baseline_writes(client: Any, names: list[str], version: int, threads: int = 1) -> None:
    def move(name: str) -> None:
        client.set_registered_model_alias(name, "champion", version)

    if threads == 1:
        for name in names:
            move(name)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(move, names))


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(backend: str, n: int, work: Path, workers: int) -> Table:
    from mlflow import MlflowClient

    table = Table()
    pg = None
    server: MlflowServer | None = None
    try:
        if backend == "postgres":
            from tests.support.postgres import Postgres

            pg = Postgres()
            pg.start()
            server = MlflowServer(work / "mlflow", backend_store_uri=pg.url, workers=workers)
        else:
            server = MlflowServer(work / "mlflow", workers=workers)
        server.start(timeout=300)
        with CountingProxy(server.url) as proxy:
            client = MlflowClient(server.url, server.url)
            root = work / "repo"
            (root / ".git").mkdir(parents=True)
            manifests = root / "manifests"
            manifests.mkdir()
            env = dict(os.environ, MLFLOW_TRACKING_URI=server.url, AGENTCTL_TARGET="registry")
            counted = dict(env, MLFLOW_TRACKING_URI=proxy.url)
            names = [f"agent-{i:04d}" for i in range(1, n + 1)]

            # The desired state: models first, then their history, then the aliases.
            write_manifests(manifests, n, champion=None)
            first = agentctl("apply", str(manifests), env=env)
            assert first.code == 0, first.out
            t_seed = timed(lambda: seed_versions(client, names))
            write_manifests(manifests, n, champion=1)
            aliases = agentctl("apply", str(manifests), env=env)
            assert aliases.code == 0, aliases.out
            print(f"  set-up: {n} models created by apply in {first.wall:.1f} s; "
                  f"{2 * n} versions seeded in {t_seed:.1f} s; {n} aliases set by apply in "
                  f"{aliases.wall:.1f} s", flush=True)  # fmt: skip

            runs: list[Run] = [first, aliases]
            validate = agentctl("validate", str(manifests), env=env)
            assert validate.code == 0, validate.out
            runs.append(validate)
            table.add(f"(a) validate {n} files, wall", validate.wall, 1.0, "s")

            noop = [
                agentctl("plan", str(manifests), "--detailed-exitcode", env=env) for _ in range(3)
            ]
            assert all(r.code == 0 for r in noop), noop[0].out
            runs += noop
            best = min(r.wall for r in noop)
            table.add("(b) no-op plan, wall incl. imports (best of 3)", best, 3.0, "s")
            proxy.reset()
            counted_plan = agentctl("plan", str(manifests), "--detailed-exitcode", env=counted)
            assert counted_plan.code == 0, counted_plan.out
            table.add("(b) no-op plan, REST requests received", len(proxy.records), 5, "req")

            t_reads = timed(lambda: baseline_reads(client, names))
            table.add("(d) baseline: per-agent MlflowClient reads, wall", t_reads, None, "s")
            table.add("(b/d) no-op plan vs the per-agent loop, times faster", t_reads / best, 20.0,
                      "x", lower=False)  # fmt: skip

            # (c) 1,000 alias moves: agentctl in parallel, agentctl serially, the raw loop.
            write_manifests(manifests, n, champion=2)
            proxy.reset()
            moved = agentctl("apply", str(manifests), env=counted)
            assert moved.code == 0 and f"Apply complete: {n} configured" in moved.out, moved.out
            runs.append(moved)
            moved_requests = len(proxy.records)
            refused = [r.status for r in proxy.records if r.status >= 300]
            write_manifests(manifests, n, champion=1)
            back = agentctl("apply", str(manifests), "--parallelism", "1", env=env)
            assert back.code == 0, back.out
            runs.append(back)
            t_raw = timed(lambda: baseline_writes(client, names, 2))
            write_manifests(manifests, n, champion=2)  # agentctl's state again, for a clean end
            parallel = agentctl("apply", str(manifests), env=env)
            assert parallel.code == 0, parallel.out
            runs.append(parallel)
            # The raw loop left every alias on 2: that apply found nothing to do; time another
            # parallel move instead, back to 1.
            write_manifests(manifests, n, champion=1)
            parallel = agentctl("apply", str(manifests), env=env)
            assert parallel.code == 0 and f"Apply complete: {n} configured" in parallel.out, (
                parallel.out
            )
            runs.append(parallel)
            table.add("(d) baseline: N alias moves, raw serial client, wall", t_raw, None, "s")
            table.add("(c) apply moving N aliases, serial (--parallelism 1)", back.wall,
                      1.2 * t_raw, "s")  # fmt: skip
            table.add("(c) apply moving N aliases, parallel (8)", parallel.wall, t_raw, "s")
            table.add("(c) apply moving N aliases, REST requests", moved_requests, None, "req")
            table.add("(c) of which answered >= 300 (retried)", len(refused), None, "req")
            t_raw8 = timed(lambda: baseline_writes(client, names, 2, threads=8))
            table.add("(d) for context: the raw client on 8 threads, wall", t_raw8, None, "s")
            table.add("(e) peak RSS of agentctl (max of every run)", max(r.rss_mib for r in runs),
                      200.0, "MiB")  # fmt: skip
    finally:
        if server is not None:
            server.stop()
        if pg is not None:
            pg.stop()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--server-workers", type=int, default=4, help="mlflow server --workers (its default: 4)"
    )
    args = parser.parse_args()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), platform.processor(),
    )  # fmt: skip
    print(f"machine: {os.cpu_count()} cores ({cpu}), "
          f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}; {args.agents} agents")  # fmt: skip
    print(f"  {'measure':<58} {'measured':>10} {'unit':<5} {'goal':>8} {'ratio':>6}")
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    for backend in backends:
        print(f"mlflow server on {backend}, {args.server_workers} workers:", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"agentctl-scale-{backend}-") as tmp:
            bench(backend, args.agents, Path(tmp), args.server_workers)


if __name__ == "__main__":
    main()
