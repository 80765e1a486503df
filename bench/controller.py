"""Benchmark: `agentctl controller` against a real MLflow server and a real API server.

One run on this machine: ``mlflow server`` (sqlite) and kube-apiserver + etcd (envtest style,
with the Gateway API CRDs) on 127.0.0.1; the controller as a process (``--target kubernetes``),
Deployments marked Available by a thread here as a Deployment controller would. The desired
state: one served agent (the example support bot, two registered versions) and N - 1
registry-only agents (a registered model each, with a description and a tag).

Printed as measured / goal / ratio:
- time from a manifest change (the champion alias moved and the split changed, in one file) to
  the change being visible in the registry and in the HTTPRoute: median and worst of several
  (goal <= 2 s; Argo CD's default Git poll is 3 minutes);
- the controller's memory once it has converged on N agents: resident set now and at its peak
  (goal <= 200 MiB).

Run it with `make bench-controller` or `.venv/bin/python bench/controller.py [--agents N]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.controller import AGENTCTL  # noqa: E402
from tests.support.kube_apiserver import api_server  # noqa: E402
from tests.support.mlflow_server import MlflowServer, free_port  # noqa: E402

SERVED = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: bot
spec:
  source:
    code: ../agents/support_bot/agent.py
    config: ../agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: {versions}
  aliases:
    champion: {champion}
  serving:
    traffic:
      - version: {one}
        percent: {first}
{second}"""

SECOND = """\
      - version: {two}
        percent: {percent}
"""

PLAIN = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: agent-{i:04d}
spec:
  description: Registry-only agent number {i}.
  tags:
    team: bench
"""


def served(versions: str, champion: str, first: int) -> str:
    two = "current" if "current" in versions else "2"
    second = SECOND.format(two=two, percent=100 - first) if first < 100 else ""
    one = "current" if versions == "[current]" else "1"
    return SERVED.format(versions=versions, champion=champion, one=one, first=first, second=second)


def row(what: str, measured: float, goal: float | None, unit: str) -> None:
    if goal is None:
        print(f"{what:<52} {measured:>10.3f} {unit:<4} {'':>10} {'':>7}")
    else:
        print(f"{what:<52} {measured:>10.3f} {unit:<4} {goal:>10.3f} {measured / goal:>7.2f}")


def until(condition: Any, timeout: float, log: Path, step: float = 0.02) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            sys.exit(f"timed out; the controller's log ends:\n{log.read_text()[-4000:]}")
        time.sleep(step)
    return time.perf_counter()


def models(client: Any) -> int:
    """How many registered models the server has (pages of at most 1,000)."""
    count, token = 0, None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        count += len(page)
        token = page.token
        if not token:
            return count


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on the way out
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="agentctl-bench-ctl-") as tmp, api_server() as kube:
        work = Path(tmp)
        mlflow = MlflowServer(work / "mlflow").start()
        stop = threading.Event()
        proc: subprocess.Popen[bytes] | None = None
        try:
            client = MlflowClient(mlflow.url, mlflow.url)
            root = work / "repo"
            (root / ".git").mkdir(parents=True)
            agent_dir = root / "agents" / "support_bot"
            agent_dir.mkdir(parents=True)
            examples = REPO / "manifests" / "agents" / "support_bot"
            for f in ("agent.py", "config.yaml"):
                (agent_dir / f).write_text((examples / f).read_text())
            manifests = root / "manifests"
            manifests.mkdir()
            for i in range(1, args.agents):
                (manifests / f"agent-{i:04d}.yaml").write_text(PLAIN.format(i=i))
            bot = manifests / "bot.yaml"
            bot.write_text(served("[current]", "current", 100))
            kube.create_namespace("bench")

            def mark() -> None:
                while not stop.wait(0.05):
                    try:
                        kube.mark_available("bench")
                    except urllib.error.HTTPError:
                        continue

            threading.Thread(target=mark, daemon=True).start()
            log = work / "controller.log"
            env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow.url)
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [AGENTCTL, "controller", "--manifests", str(manifests), "--root", str(root),
                     "--target", "kubernetes", "--kubeconfig", kube.kubeconfig(),
                     "--namespace", "bench", "--listen", f"127.0.0.1:{free_port()}",
                     "--no-leader-elect", "--resync", "300"],
                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip

            def route() -> list[tuple[str, int]]:
                routes = kube.objects("bench", "HTTPRoute")
                if "bot" not in routes:
                    return []
                refs = routes["bot"]["spec"]["rules"][0]["backendRefs"]
                return [(r["name"], r["weight"]) for r in refs]

            def champion() -> str:
                try:
                    return str(client.get_model_version_by_alias("bot", "champion").version)
                except Exception:
                    return ""

            start = time.perf_counter()
            until(lambda: route() == [("bot-v1", 100)], 1800, log, step=0.5)
            until(lambda: models(client) >= args.agents, 600, log, step=1.0)
            first = time.perf_counter() - start

            # A second version and a canary (not timed: it logs a model).
            config = agent_dir / "config.yaml"
            config.write_text(config.read_text().replace("Hi, this", "Hello, this"))
            bot.write_text(served("[1, current]", "1", 90))
            until(lambda: route() == [("bot-v1", 90), ("bot-v2", 10)], 600, log, step=0.2)
            time.sleep(2)  # let it settle: the next changes start from a quiet controller

            latencies = []
            for n in range(args.changes):
                champ, split = ("2", 50) if n % 2 == 0 else ("1", 90)
                want = [("bot-v1", split), ("bot-v2", 100 - split)]
                t0 = time.perf_counter()
                bot.write_text(served("[1, 2]", champ, split))
                seen_alias = until(lambda c=champ: champion() == c, 60, log)
                seen_route = until(lambda w=want: route() == w, 60, log)
                latencies.append(max(seen_alias, seen_route) - t0)
                time.sleep(1.0)
            rss, peak = memory(proc.pid)

            print(f"{args.agents} agents (1 served on Kubernetes, {args.agents - 1} registry-only)")
            print(f"{'':<52} {'measured':>10} {'':<4} {'goal':>10} {'ratio':>7}")
            row("first convergence from nothing", first, None, "s")
            row(f"file change -> registry and HTTPRoute: median of {args.changes}",
                statistics.median(latencies), 2.0, "s")  # fmt: skip
            row("file change -> registry and HTTPRoute: worst", max(latencies), 2.0, "s")
            row(f"controller memory at {args.agents} agents: resident", rss, 200.0, "MiB")
            row(f"controller memory at {args.agents} agents: peak", peak, 200.0, "MiB")
        finally:
            stop.set()
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)
            mlflow.stop()


if __name__ == "__main__":
    main()
