"""One environment served on Kubernetes, by a controller started with ``--env prod``, against
the real MLflow server (through the counting proxy) and a real kube-apiserver: prod takes what
staging serves, by copy, in the namespace its Environment names, walks its own canary steps, and
``agentctl rollback --env prod`` returns prod to its previous version without touching dev or
staging.

No Deployment controller runs: a thread marks Deployments Available, as one would.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.controller import Proc, repo_with, until
from tests.support.kube_apiserver import ApiServer
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

_names = itertools.count(1)

AGENT = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: support-bot
spec:
  source:
    code: ../agents/support_bot/agent.py
    config: ../agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: current
  serving:
    traffic:
      - alias: champion
        percent: 100
    kubernetes:
      image: registry.example/agents/support-bot:1
      replicas: 2
"""

ENVIRONMENTS = """\
apiVersion: agentctl.io/v1alpha1
kind: Environment
metadata:
  name: dev
---
apiVersion: agentctl.io/v1alpha1
kind: Environment
metadata:
  name: staging
spec:
  after: dev
  promotion: {{evaluation: false}}
---
apiVersion: agentctl.io/v1alpha1
kind: Environment
metadata:
  name: prod
spec:
  after: staging
  promotion: {{evaluation: false}}
  serving:
    namespace: {ns}
    kubernetes: {{replicas: 3}}
  agents:
    support-bot:
      rollout:
        canary: {{alias: champion}}
        promoteAlias: champion
        scaleDownDelay: 1s
        steps:
          - {{weight: 30, pause: 2s}}
          - {{weight: 100}}
"""


@pytest.fixture
def ns(kube: ApiServer) -> str:
    name = f"e{next(_names)}"
    kube.create_namespace(name)
    return name


def _weights(kube: ApiServer, ns: str) -> list[tuple[str, int]]:
    route = kube.objects(ns, "HTTPRoute").get("support-bot")
    if route is None:
        return []
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def _champion(client: Any, model: str) -> int:
    return int(client.get_model_version_by_alias(model, "champion").version)


def _snapshot(client: Any, model: str) -> Any:
    """What a write to ``model`` would change: its tags, aliases, description, versions with
    their tags, and its last update time."""
    m = client.get_registered_model(model)
    versions = client.search_model_versions(f"name='{model}'")
    return (
        m.tags, m.aliases, m.description, m.last_updated_timestamp,
        sorted((v.version, v.source, v.tags, v.last_updated_timestamp) for v in versions),
    )  # fmt: skip


def test_prod_on_kubernetes_canaries_what_staging_serves_and_rolls_back_alone(
    kube: ApiServer,
    ns: str,
    proxy: CountingProxy,
    client: Any,
    agentctl: Any,
    controllers: Callable[..., Proc],
    available: None,
    tmp_path: Path,
) -> None:
    root = repo_with(tmp_path, AGENT, "support-bot.yaml")
    (root / "manifests" / "environments.yaml").write_text(ENVIRONMENTS.format(ns=ns))
    manifests = str(root / "manifests")
    for env in ("dev", "staging"):
        run = agentctl("apply", manifests, "--env", env)
        assert run.code == 0, run.out + run.err
    assert kube.objects(ns, "Deployment") == {}, "dev and staging are not served here"

    # The controller of prod: its namespace (and Lease) from the Environment, no --namespace.
    ctl = controllers(
        "--manifests", manifests, "--env", "prod", "--target", "kubernetes",
        "--kubeconfig", kube.kubeconfig(), "--resync", "1",
        "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.5",
        env={"MLFLOW_TRACKING_URI": proxy.url},
    )  # fmt: skip
    until("prod serves v1", lambda: _weights(kube, ns) == [("support-bot-v1", 100)], 120, (ctl,))
    assert client.get_model_version("support-bot-prod", "1").source == (
        "models:/support-bot-staging/1"
    )
    deployment = kube.objects(ns, "Deployment")["support-bot-v1"]
    assert deployment["spec"]["replicas"] == 3, "the environment's settings over the agent's"
    assert (
        "models:/support-bot-prod/1"
        in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    lease = kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/agentctl-controller-prod"
    )
    assert lease["spec"]["holderIdentity"], "one leader per environment"

    # A second version through dev and staging; prod copies it and walks its own canary.
    agent = root / "agents" / "support_bot" / "agent.py"
    agent.write_text(agent.read_text() + "\n# a second version\n")
    for env in ("dev", "staging"):
        run = agentctl("apply", manifests, "--env", env)
        assert run.code == 0, run.out + run.err
    assert _champion(client, "support-bot-staging") == 2
    seen: set[tuple[tuple[str, int], ...]] = set()

    def promoted() -> bool:
        seen.add(tuple(_weights(kube, ns)))
        return _weights(kube, ns) == [("support-bot-v2", 100)]

    until("prod serves v2", promoted, 120, (ctl,))
    assert (("support-bot-v1", 70), ("support-bot-v2", 30)) in seen, seen
    assert _champion(client, "support-bot-prod") == 2
    assert client.get_model_version("support-bot-prod", "2").source == (
        "models:/support-bot-staging/2"
    )

    # Rollback in prod: back to prod's v1; staging and dev keep serving v2, untouched.
    before = {m: _snapshot(client, m) for m in ("support-bot-dev", "support-bot-staging")}
    rolled = agentctl("rollback", "support-bot", "--env", "prod")
    assert rolled.code == 0 and "roll back to v1" in rolled.out, rolled.out + rolled.err
    until(
        "prod back on v1",
        lambda: (
            _weights(kube, ns) == [("support-bot-v1", 100)]
            and _champion(client, "support-bot-prod") == 1
        ),
        60,
        (ctl,),
    )
    until("a few resyncs", lambda: ctl.text().count("reconcile (resync)") >= 3, 30, (ctl,))
    assert _weights(kube, ns) == [("support-bot-v1", 100)], "the rollback holds"
    assert _champion(client, "support-bot-prod") == 1
    assert {m: _snapshot(client, m) for m in before} == before
    assert _champion(client, "support-bot-staging") == 2
    versions = client.search_model_versions("name='support-bot-prod'")
    assert sorted(int(v.version) for v in versions) == [1, 2], "nothing copied twice"

    status = agentctl("status", "support-bot", "--env", "prod", "-f", "json")
    assert status.code == 0, status.out + status.err
    shown = json.loads(status.out)["agents"]["support-bot"]
    assert shown["model"] == "support-bot-prod"
    assert shown["versions"]["1"]["aliases"] == ["champion"]
    assert (
        shown["rollout"]["phase"] == "Aborted"
        and "(agentctl rollback)" in (shown["rollout"]["message"])
    )
    assert ctl.stop(signal.SIGTERM) == 0
