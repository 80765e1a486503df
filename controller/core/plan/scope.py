"""Which agents a change touches, for ``plan --changed-since``. Pure data: no I/O.

An agent is in scope when its manifest or any of its source files changed, when it serves and the
ServingDefaults file changed, or when its source digest is not registered (the registry is behind the manifests, whatever the diff says).
"""

from __future__ import annotations

from collections.abc import Set

from controller.core.manifest.desired import Desired
from controller.core.state.observed import RegistrySnapshot

__all__ = ["select"]


def select(desired: Desired, changed: Set[str], observed: RegistrySnapshot) -> dict[str, str]:
    """Agent name -> why it is in scope."""
    scope: dict[str, str] = {}
    for agent in desired.agents:
        if agent.manifest_ref in changed:
            scope[agent.name] = f"{agent.manifest_ref} changed"
            continue
        if desired.defaults_ref in changed and agent.manifest.spec.serving is not None:
            scope[agent.name] = f"{desired.defaults_ref} changed"
            continue
        refs = {r: None for s in agent.sources if s.commit is None for r in s.refs}
        touched = [r for r in refs if r in changed]
        if touched:
            scope[agent.name] = f"{', '.join(touched)} changed"
            continue
        model = observed.models.get(agent.model_name)
        if any(model is None or model.version_with_digest(s.digest) is None for s in agent.sources):
            scope[agent.name] = "its source digest is not registered yet"
    return scope
