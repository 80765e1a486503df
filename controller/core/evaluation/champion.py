"""The champion: the registered version a candidate would take the place of, whose figures on
the same dataset a ``maxDrop`` threshold is held against. Pure.

The rule, first that applies:

1. with ``spec.rollout``: the version at its ``promoteAlias`` (the stable version a canary
   replaces);
2. with ``spec.serving.traffic``: the version carrying the largest declared share (the first
   entry on a tie; none at 0 %) that the registry can name: an alias set on the model, or a number;
3. the version at the first alias of ``spec.aliases`` that is set on the model;
4. none (no registered model, or no alias set yet: a first version has nothing to be compared
   with, and ``maxDrop`` is skipped).

Only what the registry records is read (aliases, numbers), never what is served: ``agentctl
eval`` on a pull request and ``apply`` choose the same champion, with or without a serving
target.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.manifest.schema import AgentManifest
from controller.core.state.observed import ObservedModel

__all__ = ["Champion", "champion"]


@dataclass(frozen=True, slots=True)
class Champion:
    version: int
    why: str  # "alias champion", "the rollout's promote alias stable", "70 % of traffic"

    @property
    def label(self) -> str:
        """``v3 (alias champion)``."""
        return f"v{self.version} ({self.why})"


def champion(manifest: AgentManifest, model: ObservedModel | None) -> Champion | None:
    """The version the agent's candidate would replace in ``model`` (what the registry holds
    for the agent; None: nothing registered yet), by the rule above."""
    if model is None:
        return None
    spec = manifest.spec

    def existing(number: int | None) -> int | None:
        return number if number is not None and number in model.versions else None

    if spec.rollout is not None:
        alias = spec.rollout.promote_alias
        found = existing(model.aliases.get(alias))
        if found is not None:
            return Champion(found, f"the rollout's promote alias {alias}")
    if spec.serving is not None:
        ranked = sorted(enumerate(spec.serving.traffic), key=lambda t: (-t[1].percent, t[0]))
        for _, target in ranked:
            if target.percent == 0:
                continue
            if target.alias is not None:
                found = existing(model.aliases.get(target.alias))
                why = f"alias {target.alias}, {target.percent} % of traffic"
            elif isinstance(target.version, int):
                found = existing(target.version)
                why = f"{target.percent} % of traffic"
            else:
                continue  # 'current' or a named version: the candidate itself, or not yet known
            if found is not None:
                return Champion(found, why)
    for alias in spec.aliases:
        found = existing(model.aliases.get(alias))
        if found is not None:
            return Champion(found, f"alias {alias}")
    return None
