"""Drift: a change the world made, not the manifests. Pure data.

The controller remembers, per agent, the digest of the desired state it last converged to. A
plan that changes an agent whose desired state has not moved since is drift: someone moved an
alias, edited a tag, scaled a Deployment or edited a route by hand. Anything else (a new or
edited manifest, an agent being pruned, an agent not yet converged) is a deployment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from controller.desired import Desired, DesiredAgent
from controller.plan import Plan

__all__ = ["agent_digest", "drifted"]


def agent_digest(agent: DesiredAgent, desired: Desired, mark: str = "") -> str:
    """What an agent's desired state is made of: its manifest, its source's content, the
    ServingDefaults it serves under and (``mark``) where its rollout stands."""
    parts = [
        agent.manifest.model_dump_json(),
        agent.source.digest if agent.source else "",
        desired.defaults.model_dump_json() if desired.defaults else "",
        mark,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def drifted(
    plan: Plan,
    desired: Desired,
    converged: Mapping[str, str],
    marks: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Agent -> the addresses of its planned changes, for each agent whose changes are drift.
    ``marks`` (agent -> what its rollout asks this round) count as part of the desired state:
    a rollout that moves is a deployment."""
    agents = {a.name: a for a in desired.agents}
    out: dict[str, list[str]] = {}
    for change in plan.changes:
        agent = agents.get(change.agent)
        if agent is None:
            continue
        digest = agent_digest(agent, desired, (marks or {}).get(change.agent, ""))
        if converged.get(change.agent) != digest:
            continue
        out.setdefault(change.agent, []).append(change.address)
    return out
