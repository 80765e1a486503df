"""The plan as a value: ordered changes, each with action, before, after and reason. Pure data.

Borrowed from Terraform's ``internal/plans``: a plan is computed once, shown, and applied as
shown; it serialises to JSON with a format version, and reads back with :meth:`Plan.from_dict`.
A value that apply will only learn (the number of a version it is about to create) is written as
``{"version": null, "digest": "sha256:…"}``: "known after apply".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.core.diagnostics import Diagnostic, Diagnostics, Location, Severity

__all__ = [
    "FORMAT_VERSION",
    "SERVING_KINDS",
    "Action",
    "AgentView",
    "Change",
    "Kind",
    "Pending",
    "Plan",
    "Share",
]

FORMAT_VERSION = "1"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"
    NOOP = "no-op"


class Kind(StrEnum):
    REGISTERED_MODEL = "registered_model"
    MODEL_VERSION = "model_version"
    ALIAS = "alias"
    SERVED_VERSION = "served_version"  # a model server for one version
    TRAFFIC = "traffic"  # the agent's route: version -> percent of live traffic
    SHADOW = "shadow"  # the version that receives copies of requests
    ROLLOUT = "rollout"  # a canary rollout's state, recorded as registry tags on the model


#: The kinds a serving target carries out; the others are the registry's.
SERVING_KINDS = frozenset({Kind.SERVED_VERSION, Kind.TRAFFIC, Kind.SHADOW})


@dataclass(frozen=True, slots=True)
class Pending:
    """A version apply will create: its number is known after apply, its digest now."""

    digest: str


@dataclass(frozen=True, slots=True)
class Change:
    agent: str
    model: str
    kind: Kind
    name: str  # the object within the agent: "", a version ref ("current", "3"), an alias name
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str

    @property
    def address(self) -> str:
        suffix = f".{self.name}" if self.name else ""
        return f"{self.agent}.{self.kind.value}{suffix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "agent": self.agent,
            "model": self.model,
            "kind": self.kind.value,
            "name": self.name,
            "action": self.action.value,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(
            agent=data["agent"],
            model=data["model"],
            kind=Kind(data["kind"]),
            name=data["name"],
            action=Action(data["action"]),
            before=data["before"],
            after=data["after"],
            reason=data["reason"],
        )


#: A share of traffic: (target, percent), the target written "alias champion" or "version 3".
Share = tuple[str, int]


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent as a reviewer wants to see it: aliases and traffic, before and after.

    Alias "after" is a version number, ``"new"`` (the version this apply creates) or None
    (removed). Traffic "before" is what the base revision declared (``plan --changed-since``),
    None when unknown.
    """

    agent: str
    model: str
    scope: str = ""  # why the agent is in the plan, with --changed-since
    aliases: tuple[tuple[str, int | None, int | str | None], ...] = ()
    traffic_before: tuple[Share, ...] | None = None
    traffic_after: tuple[Share, ...] = ()
    shadow_before: Share | None = None
    shadow_after: Share | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "model": self.model,
            "scope": self.scope,
            "aliases": [{"alias": a, "before": b, "after": c} for a, b, c in self.aliases],
            "traffic_before": _shares(self.traffic_before),
            "traffic_after": _shares(self.traffic_after),
            "shadow_before": _share(self.shadow_before),
            "shadow_after": _share(self.shadow_after),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentView:
        def shares(raw: Any) -> tuple[Share, ...] | None:
            return None if raw is None else tuple((x["target"], x["percent"]) for x in raw)

        def share(raw: Any) -> Share | None:
            return None if raw is None else (raw["target"], raw["percent"])

        return cls(
            agent=data["agent"],
            model=data["model"],
            scope=data.get("scope", ""),
            aliases=tuple((x["alias"], x["before"], x["after"]) for x in data["aliases"]),
            traffic_before=shares(data["traffic_before"]),
            traffic_after=shares(data["traffic_after"]) or (),
            shadow_before=share(data["shadow_before"]),
            shadow_after=share(data["shadow_after"]),
        )


def _shares(shares: tuple[Share, ...] | None) -> list[dict[str, Any]] | None:
    return None if shares is None else [{"target": t, "percent": p} for t, p in shares]


def _share(share: Share | None) -> dict[str, Any] | None:
    return None if share is None else {"target": share[0], "percent": share[1]}


@dataclass(frozen=True, slots=True)
class Plan:
    owner: str
    changes: tuple[Change, ...] = ()
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    agents: tuple[str, ...] = ()
    unchanged: int = 0  # objects compared and found as desired
    views: tuple[AgentView, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def has_errors(self) -> bool:
        return self.diagnostics.has_errors

    def summary(self) -> dict[str, int]:
        """Terraform's "N to add, N to change, N to destroy"."""
        add = sum(c.action in (Action.CREATE, Action.REPLACE) for c in self.changes)
        change = sum(c.action is Action.UPDATE for c in self.changes)
        destroy = sum(c.action in (Action.DELETE, Action.REPLACE) for c in self.changes)
        return {"add": add, "change": change, "destroy": destroy}

    def for_agent(self, agent: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.agent == agent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "owner": self.owner,
            "summary": self.summary(),
            "unchanged": self.unchanged,
            "agents": list(self.agents),
            "changes": [c.to_dict() for c in self.changes],
            "views": [v.to_dict() for v in self.views],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"plan format {data.get('format_version')!r} is not {FORMAT_VERSION!r}"
            )
        diags = []
        for d in data.get("diagnostics", []):
            loc = Location(d["file"], d["line"], d["column"] or 1) if d.get("file") else None
            diags.append(
                Diagnostic(
                    Severity(d["severity"]),
                    d["message"],
                    loc,
                    d.get("field") or "",
                    d.get("agent") or "",
                )
            )
        return cls(
            owner=data["owner"],
            changes=tuple(Change.from_dict(c) for c in data["changes"]),
            diagnostics=Diagnostics.of(diags),
            agents=tuple(data.get("agents", ())),
            unchanged=int(data.get("unchanged", 0)),
            views=tuple(AgentView.from_dict(v) for v in data.get("views", ())),
        )
