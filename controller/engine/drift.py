"""Drift: a change the world made, not the manifests. Pure data.

The controller remembers, per agent, the digest of the desired state it last converged to. A
plan that changes an agent whose desired state has not moved since is drift: someone moved an
alias, edited a tag, scaled a Deployment or edited a route by hand. Anything else (a new or
edited manifest, an agent being pruned, an agent not yet converged) is a deployment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from controller.core.manifest.desired import Desired, DesiredAgent, DesiredPrompt
from controller.core.plan.changes import Plan

__all__ = ["agent_digest", "drifted", "marked", "prompt_digest"]


def agent_digest(agent: DesiredAgent, desired: Desired) -> str:
    """What an agent's desired state is made of: its manifest, its source's content and the
    ServingDefaults it serves under."""
    parts = [
        agent.manifest.model_dump_json(),
        agent.source.digest if agent.source else "",
        *(f"{name}={s.digest}" for name, s in agent.named.items()),
        desired.defaults.model_dump_json() if desired.defaults else "",
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def prompt_digest(prompt: DesiredPrompt) -> str:
    """What a Prompt document's desired state is made of: its manifest and its template's
    content (an alias moved or a version tag edited by hand, with neither changed, is drift)."""
    parts = [prompt.manifest.model_dump_json(), prompt.content.digest]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def marked(digest: str, mark: str) -> str:
    """An agent's digest with where its rollout stands (``mark``, from
    :data:`controller.core.rollout.progress.Progress`): a rollout that moves is a deployment."""
    return hashlib.sha256(f"{digest}\0{mark}".encode()).hexdigest() if mark else digest


def drifted(
    plan: Plan, digests: Mapping[str, str], converged: Mapping[str, str]
) -> dict[str, list[str]]:
    """Agent -> the addresses of its planned changes, for each agent whose changes are drift:
    its desired state (``digests``, agent -> digest) is the one it last converged to."""
    out: dict[str, list[str]] = {}
    for change in plan.changes:
        digest = digests.get(change.agent)
        if digest is None or converged.get(change.agent) != digest:
            continue
        out.setdefault(change.agent, []).append(change.address)
    return out
