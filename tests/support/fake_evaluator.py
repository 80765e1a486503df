"""An in-memory Evaluator: each version's figures come from a table the test sets (by model
and version), and every request is kept."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.evaluation.verdict import ScorerFigures
from controller.ports import EvalOutcome, EvalRequest

__all__ = ["FakeEvaluator"]


class FakeEvaluator:
    def __init__(self, default: Mapping[str, float] | None = None) -> None:
        #: (model, version) -> scorer -> figure; unset versions get ``default``.
        self.figures: dict[tuple[str, int], dict[str, float]] = {}
        self.default = dict(default or {})
        self.requests: list[EvalRequest] = []
        self.failure: Exception | None = None

    @property
    def evaluated(self) -> list[int | None]:
        """The versions evaluated, in order."""
        return [t.version for r in self.requests for t in r.targets]

    def evaluate(self, request: EvalRequest) -> list[EvalOutcome]:
        self.requests.append(request)
        if self.failure is not None:
            raise self.failure
        out = []
        for i, t in enumerate(request.targets):
            assert t.version is not None
            table = self.figures.get((t.model, t.version), self.default)
            figures = {
                s.name: ScorerFigures(s.name, table.get(s.name, 1.0), len(request.spec.rows))
                for s in request.spec.scorers
            }
            out.append(EvalOutcome(t, f"run-{len(self.requests)}-{i}", figures))
        return out
