"""Environment manifests for tests: dev -> staging -> prod over the valid agent of
tests.support.manifests, and a repository holding them."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.manifests import GOOD, write_repo

DEV = """\
apiVersion: agentctl.io/v1alpha1
kind: Environment
metadata:
  name: dev
"""

STAGING = """\
apiVersion: agentctl.io/v1alpha1
kind: Environment
metadata:
  name: staging
spec:
  after: dev
  promotion:
    soak: 30m
  serving:
    kubernetes: {replicas: 2}
  agents:
    bot:
      tags: {tier: silver}
"""

PROD = """\
apiVersion: agentctl.io/v1alpha1
kind: Environment
metadata:
  name: prod
spec:
  after: staging
  registeredModel: main.prod.{agent}
  promotion: {approval: true}
  agents:
    bot:
      description: The bot, in production.
"""


def write_env_repo(root: Path, *docs: str, agent: str = GOOD) -> Path:
    """A repository with the agent (bot.yaml) and the environments (envs.yaml, one stream)."""
    write_repo(root, agent)
    text = "---\n".join(textwrap.dedent(d) for d in (docs or (DEV, STAGING, PROD)))
    (root / "envs.yaml").write_text(text)
    return root


def support_environments(soak: float) -> str:
    """dev -> staging (a soak of ``soak`` seconds, tier 2) -> prod (an approval) for the
    example support bot (manifests/)."""
    return f"""\
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
  promotion:
    soak: {soak:g}s
  agents:
    support-bot:
      tags: {{tier: "2"}}
---
apiVersion: agentctl.io/v1alpha1
kind: Environment
metadata:
  name: prod
spec:
  after: staging
  promotion:
    approval: true
  agents:
    support-bot:
      description: The support bot, in production.
"""
