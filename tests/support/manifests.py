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
