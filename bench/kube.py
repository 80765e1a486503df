"""Benchmark: Kubernetes serving of 200 agents x 2 versions against a real API server.

One run on this machine: etcd and kube-apiserver (envtest style, from ``hack/tools.sh``, with the
Gateway API CRDs) on 127.0.0.1; 200 agents, each with two registered versions (in the in-memory
registry of the unit tests: the registry is not what is measured) served 80/20 on Kubernetes:
400 Deployments, 400 Services and 200 HTTPRoutes. Deployments are marked Available by writing
their status, as a Deployment controller would.

Printed as measured / goal / ratio:
- the first reconcile (servers, then routes once Available): wall time and API requests;
- a no-op re-plan: wall time (goal <= 1 s) and API requests per kind (goal <= 1), and the ratio
  of requests to the objects it covers.

Run it with `make bench-kube` or `.venv/bin/python bench/kube.py [--agents N]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.adapters.kubernetes.serving import KubernetesServing, connect  # noqa: E402
from controller.core.plan.kube_objects import Settings  # noqa: E402
from controller.engine.loader import load  # noqa: E402
from controller.engine.retry import RetryPolicy  # noqa: E402
from tests.support.engine import reconcile  # noqa: E402
from tests.support.fake_registry import FakeRegistry  # noqa: E402
from tests.support.kube_apiserver import api_server  # noqa: E402

MANIFEST = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: {name}
spec:
  source:
    code: agent.py
    config: config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: {versions}
  aliases:
    champion: {champion}
{serving}"""

SPLIT = """\
  serving:
    traffic:
      - version: 1
        percent: 80
      - version: current
        percent: 20
"""


def write(root: Path, agents: int, second: bool) -> None:
    (root / "config.yaml").write_text("greeting: v2\n" if second else "greeting: v1\n")
    for i in range(agents):
        (root / f"agent-{i:04d}.yaml").write_text(
            MANIFEST.format(
                name=f"agent-{i:04d}",
                versions="[1, current]" if second else "[current]",
                champion=1 if second else "current",
                serving=SPLIT if second else "",
            )
        )


def row(what: str, measured: float, goal: float | None, unit: str) -> None:
    if goal is None:
        print(f"{what:<48} {measured:>10.3f} {unit:<9} {'':>10} {'':>7}")
    else:
        print(f"{what:<48} {measured:>10.3f} {unit:<9} {goal:>10.3f} {measured / goal:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    args = parser.parse_args()
    policy = RetryPolicy(attempts=3, initial=0.5, maximum=2.0)
    with tempfile.TemporaryDirectory(prefix="agentctl-bench-kube-") as tmp, api_server() as kube:
        root = Path(tmp)
        (root / ".git").mkdir()
        (root / "agent.py").write_text("print('never run')\n")
        registry = FakeRegistry()
        write(root, args.agents, second=False)
        reconcile(load(root)[0], registry, apply=True, policy=policy)
        write(root, args.agents, second=True)
        desired, _ = load(root)
        reconcile(desired, registry, apply=True, policy=policy)  # version 2 of every agent
        kube.create_namespace("bench")
        api, _ = connect(kube.kubeconfig())

        def target() -> KubernetesServing:
            return KubernetesServing(api, "bench", lambda agent: Settings(), wait=0.0)

        api.requests = 0
        start = time.perf_counter()
        reconcile(desired, registry, apply=True, policy=policy, serving=target())
        kube.mark_available("bench")
        reconcile(desired, registry, apply=True, policy=policy, serving=target())
        first, first_requests = time.perf_counter() - start, api.requests

        objects = sum(len(kube.objects("bench", k)) for k in ("Deployment", "Service", "HTTPRoute"))
        srv = target()
        api.requests = 0
        start = time.perf_counter()
        noop = reconcile(desired, registry, apply=False, policy=policy, serving=srv)
        replan = time.perf_counter() - start
        assert noop.plan.changes == (), [(c.address, c.reason) for c in noop.plan.changes[:5]]
        kinds = 4  # the namespace, Deployments, Services, HTTPRoutes

        print(f"{args.agents} agents x 2 versions: {objects} objects in the cluster")
        print(f"{'':<48} {'measured':>10} {'':<9} {'goal':>10} {'ratio':>7}")
        row("first reconcile: wall time", first, None, "s")
        row("first reconcile: API requests", first_requests, None, "requests")
        row("no-op re-plan: wall time", replan, 1.0, "s")
        row("no-op re-plan: API requests per kind", api.requests / kinds, 1.0, "requests")
        row("no-op re-plan: API requests per object", api.requests / objects, None, "requests")


if __name__ == "__main__":
    main()
