"""``agentctl status`` as a view: each agent's versions, aliases, weights, servers and rollout,
built from the observed snapshots, rendered as a text table or JSON. Pure data: no I/O.

Only one owner's agents are shown: the models it manages, and what is served of them (a served
agent whose model another owner manages is not shown; one whose model the registry does not
hold is, since status cannot tell whose it is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.core.evaluation import record
from controller.core.plan.planner import DEFAULT_OWNER
from controller.core.rollout import codec
from controller.core.rollout.codec import RolloutState
from controller.core.secrets import redact_lines, redact_tree
from controller.core.state.observed import (
    AgentServing,
    ObservedModel,
    RegistrySnapshot,
    ServingSnapshot,
)

__all__ = [
    "AgentStatus",
    "RolloutStatus",
    "StatusView",
    "VersionStatus",
    "known_agents",
    "status_view",
]


@dataclass(frozen=True, slots=True)
class VersionStatus:
    aliases: tuple[str, ...] = ()
    weight: int | None = None
    server: str | None = None  # "ready", "not ready", or None: not served
    shadow: int | None = None  # percent of requests copied to it
    evaluation: str | None = None  # "passed" / "failed" (its latest evaluation), None: none


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    canary: int
    stable: int
    phase: str
    step: int  # 1-based
    message: str
    gates: Mapping[str, str] = field(default_factory=dict)
    failures: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, state: RolloutState) -> RolloutStatus:
        return cls(
            state.canary, state.stable, state.phase.value, state.step + 1, state.message,
            {g: v.value for g, v in sorted(state.verdicts.items())},
            dict(sorted(state.failures.items())),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AgentStatus:
    model: str
    versions: Mapping[int, VersionStatus]
    rollout: RolloutStatus | None = None
    #: Header routes (header, value, version) and conversation affinity (header, cookie).
    headers: tuple[tuple[str, str, int], ...] = ()
    affinity: tuple[str | None, str | None] | None = None


@dataclass(frozen=True, slots=True)
class StatusView:
    endpoint: str
    agents: Mapping[str, AgentStatus]
    #: The version of the agentctl showing it (given by the shell); "" shows none.
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "agentctl": self.version,
            "endpoint": self.endpoint,
            "agents": {
                name: {
                    "model": a.model,
                    "versions": {
                        str(v): {
                            "aliases": list(s.aliases),
                            "weight": s.weight,
                            "server": s.server,
                            "shadow": s.shadow,
                            "evaluation": s.evaluation,
                        }
                        for v, s in a.versions.items()
                    },
                    "routes": [{"header": h, "value": v, "version": n} for h, v, n in a.headers],
                    "affinity": None
                    if a.affinity is None
                    else {"header": a.affinity[0], "cookie": a.affinity[1]},
                    "rollout": None
                    if a.rollout is None
                    else {
                        "canary": a.rollout.canary,
                        "stable": a.rollout.stable,
                        "phase": a.rollout.phase,
                        "step": a.rollout.step,
                        "message": a.rollout.message,
                        "gates": dict(a.rollout.gates),
                        "failures": dict(a.rollout.failures),
                    },
                }
                for name, a in self.agents.items()
            },
        }

    def render(self, fmt: str = "text") -> str:
        if fmt == "json":
            return json.dumps(redact_tree(self.to_dict()), indent=2)
        footer = [f"agentctl {self.version}"] if self.version else []
        if not self.agents:
            return "\n".join(["No agents in the registry or served.", *footer])
        rows: list[Sequence[str]] = []
        for name, a in self.agents.items():
            roles = {a.rollout.canary: "canary", a.rollout.stable: "stable"} if a.rollout else {}
            for i, (v, s) in enumerate(a.versions.items()):
                weight = "" if s.weight is None else f"{s.weight}%"
                if s.shadow is not None:
                    weight = (weight + " " if weight else "") + f"shadow {s.shadow}%"
                rows.append((
                    name if i == 0 else "", a.model if i == 0 else "", str(v),
                    ",".join(s.aliases), weight, s.server or "", s.evaluation or "",
                    roles.get(v, ""),
                ))  # fmt: skip
        lines = _table(
            ("AGENT", "MODEL", "VERSION", "ALIASES", "WEIGHT", "SERVER", "EVAL", "ROLLOUT"), rows
        )
        if self.endpoint:
            lines.append(f"Serving at {self.endpoint}")
        for name, a in self.agents.items():
            said = [f"{h}: {v} -> v{n}" for h, v, n in a.headers]
            if a.affinity is not None:
                where = ["context.conversation_id"]
                where += [f"header {a.affinity[0]}"] if a.affinity[0] else []
                where += [f"cookie {a.affinity[1]}"] if a.affinity[1] else []
                said.append(f"conversations kept on one version ({', '.join(where)})")
            if said:
                lines.append(f"{name}: routes: {'; '.join(said)}")
        for name, a in self.agents.items():
            r = a.rollout
            if r is None:
                continue
            gates = ", ".join(
                f"{g} {v} ({r.failures.get(g, 0)} failed)" for g, v in r.gates.items()
            ) or "none measured at this step"  # fmt: skip
            lines.append(
                f"{name}: rollout v{r.canary} over v{r.stable}: {r.phase}, step {r.step}: "
                f"{r.message}; gates: {gates}"
            )
        return redact_lines("\n".join([*lines, *footer]))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in (header, *rows)]  # fmt: skip


def status_view(
    registry: RegistrySnapshot | None,
    served: ServingSnapshot,
    agent: str | None = None,
    owner: str = DEFAULT_OWNER,
    version: str = "",
    environment: str | None = None,
) -> StatusView:
    """Every agent ``owner`` manages in the registry (in ``environment``) or a target serves for
    it (or only ``agent``, which the caller has checked is one of them); ``version``:
    agentctl's."""
    models = _managed(registry, owner, environment)
    serves = _served(registry, served, owner)
    names = [agent] if agent is not None else sorted(set(models) | set(serves))
    out: dict[str, AgentStatus] = {}
    for name in names:
        model = models.get(name)
        serving = serves.get(name)
        state = codec.read(model.tags).state if model is not None else None
        numbers = sorted(
            set(model.versions if model is not None else ())
            | set(serving.versions if serving is not None else ())
        )
        versions = {
            v: VersionStatus(
                aliases=tuple(
                    sorted(a for a, n in (model.aliases.items() if model else ()) if n == v)
                ),
                weight=serving.weights.get(v) if serving is not None else None,
                server=(
                    ("ready" if serving.versions[v].ready else "not ready")
                    if serving is not None and v in serving.versions
                    else None
                ),
                shadow=serving.shadow[1]
                if serving is not None and serving.shadow and serving.shadow[0] == v
                else None,
                evaluation=_verdict(model, v),
            )
            for v in numbers
        }
        out[name] = AgentStatus(
            model.name if model is not None else serving.model if serving else "",
            versions,
            RolloutStatus.of(state) if state is not None else None,
            serving.headers if serving is not None else (),
            serving.affinity if serving is not None else None,
        )
    return StatusView(served.endpoint, out, version)


def _verdict(model: ObservedModel | None, number: int) -> str | None:
    if model is None or number not in model.versions:
        return None
    found = record.read(model.versions[number].tags)
    return None if found is None else ("passed" if found.passed else "failed")


def known_agents(
    registry: RegistrySnapshot | None,
    served: ServingSnapshot,
    owner: str = DEFAULT_OWNER,
    environment: str | None = None,
) -> set[str]:
    """The agents status can show ``owner``: managed by it in the registry, or served for it."""
    return set(_managed(registry, owner, environment)) | set(_served(registry, served, owner))


def _managed(
    registry: RegistrySnapshot | None, owner: str, environment: str | None = None
) -> dict[str, ObservedModel]:
    """Agent -> the registered model ``owner`` manages for it (in ``environment``)."""
    return registry.agents(owner, environment) if registry is not None else {}


def _served(
    registry: RegistrySnapshot | None, served: ServingSnapshot, owner: str
) -> dict[str, AgentServing]:
    """Agent -> its serving, unless its model is one another owner manages."""
    models = registry.models if registry is not None else {}
    return {
        name: s
        for name, s in served.agents.items()
        if s.model not in models or models[s.model].owner in (None, owner)
    }
