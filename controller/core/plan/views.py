"""An agent as a reviewer wants to see it in a plan: aliases and traffic, before and after.
Pure data (part of :class:`~controller.core.plan.changes.Plan`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AgentView", "Share"]

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
