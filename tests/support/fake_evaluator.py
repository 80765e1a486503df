"""An Evaluator for unit tests: each target's figures come from a table the test gives (by the
target's label, or ``"source"`` / ``"v<N>"``), and each request is kept. The real one, a child
process running mlflow.genai.evaluate, is tested against a real MLflow server in
tests/integration."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.evaluation.verdict import ScorerFigures
from controller.ports import EvalOutcome, EvalRequest, EvalTarget


def figures(rows: int = 10, errors: int = 0, **figure: float) -> dict[str, ScorerFigures]:
    """``figures(pii_detection=0.9)``: each scorer's figure over ``rows`` rows."""
    return {name: ScorerFigures(name, value, rows, errors) for name, value in figure.items()}


class FakeEvaluator:
    def __init__(
        self, by_target: Mapping[str, Mapping[str, ScorerFigures]], fail: Exception | None = None
    ) -> None:
        self.by_target = by_target
        self.fail = fail
        self.requests: list[EvalRequest] = []

    @staticmethod
    def key(target: EvalTarget) -> str:
        return "source" if target.source is not None else f"v{target.version}"

    def evaluate(self, request: EvalRequest) -> list[EvalOutcome]:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail
        return [
            EvalOutcome(t, f"run-{request.agent}-{self.key(t)}", self.by_target[self.key(t)])
            for t in request.targets
        ]


class VersionEvaluator:
    """Figures by (model, version), ``default`` for the others; every request is kept."""

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
