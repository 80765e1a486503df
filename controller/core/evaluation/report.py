"""What ``agentctl eval`` found: per agent, the candidate's figures beside the champion's and
each threshold held against them, passed or failed. Pure: built from figures, rendered by
:mod:`controller.core.render.evaluation`.

One :class:`Check` per threshold bound (a threshold with ``min`` and ``maxDrop`` is two checks),
and one for each scorer without a threshold (shown for information; it fails only if the scorer
failed on every row). Each check is decided by :func:`~controller.core.evaluation.verdict.judge`
on that bound alone, and the agent's verdict by ``judge`` on every threshold: the table and the
verdict cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.evaluation.champion import Champion
from controller.core.evaluation.spec import EvaluationSpec, ThresholdSpec
from controller.core.evaluation.verdict import ScorerFigures, Verdict, judge

__all__ = [
    "FAIL",
    "NO_EVALUATION",
    "PASS",
    "SKIPPED",
    "AgentEvaluation",
    "Check",
    "EvalReport",
    "compare",
]

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
#: Why an agent in scope is not evaluated when it has no spec.evaluation.
NO_EVALUATION = "no spec.evaluation"


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the table: a scorer's figures and one of its threshold's bounds."""

    scorer: str
    candidate: float | None  # None: the scorer has no figure (it did not run)
    champion: float | None  # None: no champion, or it has no figure for this scorer
    threshold: str  # "min 0.95", "max 200", "maxDrop 0.05"; "" for a scorer without one
    result: str  # PASS, FAIL, SKIPPED (maxDrop with no champion figure); "" without threshold
    rows: int = 0
    errors: int = 0  # the candidate's rows the scorer could not score (counted as failed)
    note: str = ""  # why it failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "candidate": self.candidate,
            "champion": self.champion,
            "threshold": self.threshold or None,
            "result": self.result or None,
            "rows": self.rows,
            "errors": self.errors,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class AgentEvaluation:
    agent: str
    model: str
    dataset: str  # EvaluationSpec.describe()
    candidate: str  # "current (working tree, src/agent.py)"
    candidate_run: str
    champion: Champion | None
    champion_run: str  # the run its figures come from ("" when none)
    champion_from: str  # "recorded", "evaluated", "same source"; "" without a champion
    checks: tuple[Check, ...]
    verdict: Verdict
    scope: str = ""  # why the agent was evaluated (--changed-since)

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def to_dict(self) -> dict[str, Any]:
        champ = None
        if self.champion is not None:
            champ = {
                "version": self.champion.version,
                "why": self.champion.why,
                "run_id": self.champion_run or None,
                "figures": self.champion_from,
            }
        return {
            "agent": self.agent,
            "model": self.model,
            "dataset": self.dataset,
            "scope": self.scope or None,
            "candidate": {"label": self.candidate, "run_id": self.candidate_run or None},
            "champion": champ,
            "passed": self.passed,
            "reason": self.verdict.reason,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    evaluated: tuple[AgentEvaluation, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (agent, why it was not evaluated)

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.evaluated)

    @property
    def failed(self) -> tuple[AgentEvaluation, ...]:
        return tuple(a for a in self.evaluated if not a.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "agents": [a.to_dict() for a in self.evaluated],
            "skipped": [{"agent": a, "reason": r} for a, r in self.skipped],
        }


def _bounds(t: ThresholdSpec) -> list[tuple[str, ThresholdSpec]]:
    out = []
    if t.min is not None:
        out.append((f"min {t.min:g}", ThresholdSpec(t.scorer, min=t.min)))
    if t.max is not None:
        out.append((f"max {t.max:g}", ThresholdSpec(t.scorer, max=t.max)))
    if t.max_drop is not None:
        out.append((f"maxDrop {t.max_drop:g}", ThresholdSpec(t.scorer, max_drop=t.max_drop)))
    return out


def compare(
    spec: EvaluationSpec,
    candidate: Mapping[str, ScorerFigures],
    champion: Mapping[str, float] | None,
) -> tuple[tuple[Check, ...], Verdict]:
    """The checks of the candidate's figures (against the champion's, None: no champion) and
    the verdict over every threshold."""
    order = list(spec.scorer_names)
    order += sorted(set(candidate) - set(order))
    order += [t.scorer for t in spec.thresholds if t.scorer not in order]
    checks: list[Check] = []
    for name in dict.fromkeys(order):
        f = candidate.get(name)
        mine = {name: f} if f is not None else {}
        best = champion.get(name) if champion is not None else None
        base = Check(
            scorer=name,
            candidate=f.figure if f is not None else None,
            champion=best,
            threshold="",
            result="",
            rows=f.rows if f is not None else 0,
            errors=f.errors if f is not None else 0,
        )
        bounds = [b for t in spec.thresholds if t.scorer == name for b in _bounds(t)]
        if not bounds:
            whole = judge(mine, ())
            checks.append(_with(base, "", whole, informative=True))
            continue
        for label, bound in bounds:
            one = judge(mine, (bound,), champion)
            skipped = bound.max_drop is not None and best is None and one.passed
            checks.append(_with(base, label, one, skipped=skipped))
    return tuple(checks), judge(candidate, spec.thresholds, champion)


def _with(
    base: Check, label: str, verdict: Verdict, *, informative: bool = False, skipped: bool = False
) -> Check:
    if verdict.passed:
        result = "" if informative else SKIPPED if skipped else PASS
        note = "no champion figure to compare with" if skipped else ""
    else:
        result, note = FAIL, verdict.reason
    return Check(
        base.scorer, base.candidate, base.champion, label, result, base.rows, base.errors, note
    )
