"""Small builders for planner and executor tests: desired agents and observed models as data."""

from __future__ import annotations

from typing import Any

from controller.core.manifest.desired import Desired, DesiredAgent, ResolvedSource
from controller.core.manifest.schema import AgentManifest
from controller.core.state.observed import (
    AGENT_TAG,
    DIGEST_TAG,
    MANAGED_ALIASES_TAG,
    MANAGED_TAGS_TAG,
    OWNER_TAG,
    ObservedModel,
    ObservedVersion,
    RegistrySnapshot,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def agent(name: str = "bot", digest: str | None = D1, **spec: Any) -> DesiredAgent:
    spec = dict(spec)
    if digest is not None:
        spec.setdefault("source", {"code": "agent.py", "pipRequirements": ["mlflow==3.17.2"]})
    manifest = AgentManifest.model_validate(
        {
            "apiVersion": "agentctl.io/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": name},
            "spec": spec,
        }
    )
    source = None
    if digest is not None:
        source = ResolvedSource("/r/agent.py", None, "agent.py", None, ("mlflow==3.17.2",), digest)
    return DesiredAgent(manifest, f"{name}.yaml", source)


def desired(*agents: DesiredAgent) -> Desired:
    return Desired(tuple(agents), "/r")


def model(
    name: str = "bot",
    *,
    owner: str | None = "agentctl",
    tags: dict[str, str] | None = None,
    aliases: dict[str, int] | None = None,
    versions: dict[int, str | None] | None = None,
    description: str = "",
    managed_tags: str | None = None,
) -> ObservedModel:
    all_tags = dict(tags or {})
    if owner is not None:
        all_tags[OWNER_TAG] = owner
        all_tags[AGENT_TAG] = name
        all_tags[MANAGED_TAGS_TAG] = (
            managed_tags if managed_tags is not None else ",".join(sorted(tags or {}))
        )
        all_tags[MANAGED_ALIASES_TAG] = ",".join(sorted(aliases or {}))
    observed_versions = {
        n: ObservedVersion(n, tags={DIGEST_TAG: d} if d else {})
        for n, d in (versions or {}).items()
    }
    return ObservedModel(name, description, all_tags, dict(aliases or {}), observed_versions)


def snapshot(*models: ObservedModel) -> RegistrySnapshot:
    return RegistrySnapshot({m.name: m for m in models})
