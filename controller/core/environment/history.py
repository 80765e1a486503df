"""An agent's audit trail, read from the registry alone: each version in each environment (its
commit and digest, its evaluation verdict, where it was promoted from, who approved it), and a
timeline of what happened when (versions registered, aliases moved as agentctl recorded them,
approvals, the last rollout and whether it was rolled back). Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.core.environment.record import (
    PROMOTED_FROM_TAG,
    aliased_at,
    aliases_moved,
    approval_of,
    iso,
)
from controller.core.evaluation import record
from controller.core.manifest.desired import Desired
from controller.core.rollout import codec
from controller.core.state.observed import COMMIT_TAG, ObservedModel, RegistrySnapshot

__all__ = ["Event", "History", "VersionRow", "history"]


@dataclass(frozen=True, slots=True)
class VersionRow:
    env: str  # "" without environments
    model: str
    version: int
    created: float | None
    digest: str
    commit: str
    verdict: str  # passed | failed | ""
    promoted_from: str
    approvals: tuple[tuple[str, str, str, float | None], ...]  # (env, approved|rejected, by, at)
    aliases: tuple[str, ...]  # the aliases it holds now

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.env or None,
            "model": self.model,
            "version": self.version,
            "created": iso(self.created) if self.created is not None else None,
            "digest": self.digest or None,
            "commit": self.commit or None,
            "evaluation": self.verdict or None,
            "promoted_from": self.promoted_from or None,
            "approvals": [
                {"environment": e, "decision": d, "by": b, "at": iso(a) if a else None}
                for e, d, b, a in self.approvals
            ],
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True, slots=True)
class Event:
    at: float | None
    env: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at) if self.at is not None else None, "environment": self.env or None,
                "event": self.text}  # fmt: skip


@dataclass(frozen=True, slots=True)
class History:
    agent: str
    versions: tuple[VersionRow, ...]
    events: tuple[Event, ...]
    missing: tuple[str, ...] = ()  # environments where the agent has no model yet

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "versions": [v.to_dict() for v in self.versions],
            "events": [e.to_dict() for e in self.events],
            "missing": list(self.missing),
        }


def history(
    desired: Desired,
    observed: RegistrySnapshot,
    agent: str,
    env: str | None = None,
    by_env: Mapping[str, RegistrySnapshot] | None = None,
) -> History:
    """``agent``'s trail in every environment (in promotion order), or in ``env`` only; without
    environments, in its one registered model. The agent must be declared in ``desired``.
    ``by_env``: an environment's own registry, where it lives elsewhere than ``observed``."""
    found = next(a for a in desired.agents if a.name == agent)
    places: list[tuple[str, str]] = [
        (e.name, e.manifest.model_of(agent))
        for e in desired.environments
        if env is None or e.name == env
    ]
    if not desired.environments:
        places = [("", found.model_name)]
    envs = [e.name for e in desired.environments]
    rows: list[VersionRow] = []
    events: list[Event] = []
    missing: list[str] = []
    for name, model_name in places:
        model = (by_env or {}).get(name, observed).models.get(model_name)
        if model is None:
            missing.append(name or model_name)
            continue
        _trail(name, model, envs, rows, events)
    # A copy shows the decision that let it in (recorded on the version it was copied from).
    after = {e.name: e.manifest.spec.after for e in desired.environments}
    for i, row in enumerate(rows):
        before = after.get(row.env)
        if not row.promoted_from or before is None:
            continue
        source, _, number = row.promoted_from.removeprefix("models:/").rpartition("/")
        held = (by_env or {}).get(before, observed).models.get(source)
        version = held.versions.get(int(number)) if held and number.isdigit() else None
        decision = approval_of(version.tags, row.env) if version is not None else None
        if decision is not None:
            entry = (row.env, decision.word, decision.by, decision.at)
            if entry not in row.approvals:
                rows[i] = replace(row, approvals=(*row.approvals, entry))
    events.sort(key=lambda e: (e.at is None, int(e.at or 0)))  # (records are to the second)
    return History(agent, tuple(rows), tuple(events), tuple(missing))


def _trail(
    env: str, model: ObservedModel, envs: list[str], rows: list[VersionRow], events: list[Event]
) -> None:
    holding: dict[int, list[str]] = {}
    for alias, number in sorted(model.aliases.items()):
        holding.setdefault(number, []).append(alias)
    for number in sorted(model.versions):
        v = model.versions[number]
        verdict = record.read(v.tags)
        approvals = []
        for target in envs:
            decision = approval_of(v.tags, target)
            if decision is not None:
                approvals.append((target, decision.word, decision.by, decision.at))
                who = f" by {decision.by}" if decision.by else ""
                events.append(Event(decision.at, env, f"{model.name}/{number} {decision.word} "
                                    f"for {target}{who}"))  # fmt: skip
        origin = v.tags.get(PROMOTED_FROM_TAG, "")
        commit = v.tags.get(COMMIT_TAG, "")
        rows.append(
            VersionRow(
                env,
                model.name,
                number,
                v.created,
                v.digest or "",
                commit,
                ("passed" if verdict.passed else "failed") if verdict else "",
                origin,
                tuple(approvals),
                tuple(holding.get(number, ())),
            )
        )
        how = f"copied from {origin}" if origin else (
            f"logged from commit {commit[:12]}" if commit else "registered"
        )  # fmt: skip
        judged = f"; evaluation {'passed' if verdict.passed else 'failed'}" if verdict else ""
        events.append(Event(v.created, env, f"{model.name}/{number} {how}{judged}"))
        for alias in aliases_moved(v.tags):
            events.append(Event(aliased_at(v.tags, alias), env,
                                    f"{model.name}@{alias} -> {number}"))  # fmt: skip
    state = codec.read(model.tags).state
    if state is not None:
        back = (
            f", rolled back to {state.stable}"
            if state.phase in (codec.Phase.ABORTED, codec.Phase.FAILED)
            else ""
        )
        text = f"rollout of {model.name}/{state.canary} over {state.stable}: {state.phase.value}"
        text += back + (f" ({state.message})" if state.message else "")
        events.append(Event(state.step_started or None, env, text))
