"""Manifests and repositories for tests: a valid agent, ServingDefaults, a rollout, and a
repository laid out as the loader expects (a .git marker, agent code and config)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controller.core.diagnostics import Diagnostic
from controller.core.errors import InvalidInput
from controller.engine.loader import load

GOOD = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: bot
spec:
  source:
    code: agent.py
    config: config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: current
  serving:
    traffic:
      - alias: champion
        percent: 100
"""

DEFAULTS = """\
apiVersion: agentctl.io/v1alpha1
kind: ServingDefaults
metadata:
  name: defaults
spec:
  kubernetes:
    image: team/agents:1
    replicas: 3
"""

#: A canary rollout of the champion alias, gated on the router's error rate.
ROLLOUT = """\
  rollout:
    canary:
      alias: champion
    promoteAlias: champion
    steps:
      - weight: 20
        pause: 60s
      - weight: 50
        pause: 60s
      - weight: 100
    scaleDownDelay: 30s
    analysis:
      interval: 10s
      gates:
        - name: errors
          metric: errorRate
          source: router
          max: 0.1
          minSamples: 10
          failureLimit: 2
"""


def write_repo(root: Path, manifest: str, name: str = "bot.yaml") -> Path:
    (root / ".git").mkdir(parents=True, exist_ok=True)
    (root / "agent.py").write_text("print('never run by plan')\n")
    (root / "config.yaml").write_text("greeting: hi\n")
    (root / name).write_text(textwrap.dedent(manifest))
    return root


def errors_of(path: Path) -> list[Diagnostic]:
    with pytest.raises(InvalidInput) as info:
        load(path)
    return list(info.value.diagnostics.errors)


#: Three documents with several problems each, schema and semantic, within and across files.
MANY_ERRORS = {
    "a.yaml": """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: bot
  labelz: {team: a}
spec:
  source:
    code: agent.py
    config: config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: 4
  serving:
    traffic:
      - alias: champion
        percent: 90
""",
    "b.yaml": """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: bot
spec:
  source:
    code: agent.py
    config: missing.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current, 0]
  aliases:
    latest: current
  serving:
    traffic:
      - alias: latest
        percent: "100"
""",
    "c-defaults.yaml": """\
apiVersion: agentctl.io/v1alpha1
kind: ServingDefaults
metadata:
  name: defaults
  labelz: {}
spec:
  kubernetes:
    replicas: 0
""",
}

#: Every error of MANY_ERRORS, in the order reported: (file, line, column, field, fragments of the
#: message).
MANY_ERRORS_REPORTED = [
    ("a.yaml", 5, 3, "metadata.labelz", ("unknown field 'labelz'; did you mean 'labels'?",)),
    ("a.yaml", 13, 5, "spec.aliases.champion", ("version 4 is not declared in spec.versions",)),
    ("a.yaml", 15, 5, "spec.serving.traffic", ("traffic percents sum to 90",)),
    ("b.yaml", 4, 3, "metadata.name", ("agent 'bot' is defined twice; first at ", "a.yaml:4:3")),
    ("b.yaml", 8, 5, "spec.source.config", ("'missing.yaml' (",)),
    ("b.yaml", 10, 23, "spec.versions[1]", ("expected one of: Input should be greater than",)),
    ("b.yaml", 12, 5, "spec.aliases.latest", ("alias 'latest' is reserved by MLflow",)),
    ("b.yaml", 16, 9, "spec.serving.traffic[0].percent", ("Input should be a valid integer",)),
    ("c-defaults.yaml", 5, 3, "metadata.labelz", ("unknown field 'labelz'",)),
    ("c-defaults.yaml", 8, 5, "spec.kubernetes.replicas", ("replicas 0, which agent bot takes,",)),
]


def write_many_errors(root: Path) -> Path:
    """A repository holding MANY_ERRORS."""
    write_repo(root, MANY_ERRORS["a.yaml"], "a.yaml")
    for name, text in MANY_ERRORS.items():
        (root / name).write_text(text)
    return root
