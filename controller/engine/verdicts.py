"""Apply's evaluations: a version evaluated through the :class:`~controller.ports.Evaluator`,
judged against its thresholds (and its champion's figures), and the verdict recorded on the
version (and the champion's figures on the champion, when they were made too).

The champion's figures come, in this order, from the plan (recorded on it for the same
evaluation digest when the plan was made), from an evaluation made earlier in this apply, or
from evaluating the champion in the same request as the candidate: like for like, once.
The verdict tag is deleted first and written last: a crash part-way leaves no verdict (not an
earlier one beside the new digest), and the next apply evaluates again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.evaluation.record import EVAL_VERDICT_TAG, Recorded
from controller.core.evaluation.verdict import ScorerFigures, Verdict, judge
from controller.core.plan.changes import EvaluationRun
from controller.core.state.observed import experiment_name
from controller.engine.retry import RetryPolicy
from controller.ports import EvalRequest, EvalTarget, Evaluator, Registry

__all__ = ["Evaluated", "Evaluations"]


@dataclass(frozen=True, slots=True)
class Evaluated:
    run_id: str
    figures: Mapping[str, ScorerFigures]

    @property
    def means(self) -> dict[str, float]:
        return {name: f.figure for name, f in self.figures.items()}

    @property
    def summary(self) -> str:
        """``pii_detection 1, answers 0.917 (run 3f2a…)``."""
        shown = ", ".join(f"{n} {f.figure:.3g}" for n, f in self.figures.items())
        return f"{shown} (run {self.run_id})" if self.run_id else shown


class Evaluations:
    """One apply's evaluations (figures made in this apply are remembered, by version and
    evaluation digest)."""

    def __init__(
        self, registry: Registry, policy: RetryPolicy, evaluator: Evaluator, root: str, owner: str
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.evaluator = evaluator
        self.root = root
        self.owner = owner
        self.made: dict[tuple[str, int, str], Evaluated] = {}

    def evaluate(
        self, agent: str, model: str, number: int, run: EvaluationRun
    ) -> tuple[Verdict, Evaluated]:
        """Evaluate version ``number`` of ``model`` as ``run`` says; record the verdict on it.
        Raises what the evaluator raises (nothing is recorded then)."""
        spec = run.spec
        champion_figures = run.champion_figures
        targets = [EvalTarget(f"v{number}", model, number)]
        if run.champion is not None and champion_figures is None:
            earlier = self.made.get((model, run.champion, spec.digest))
            if earlier is not None:
                champion_figures = earlier.means
            else:
                targets.append(EvalTarget(f"v{run.champion}", model, run.champion))
        request = EvalRequest(
            agent, self.root, spec, tuple(targets), experiment_name(model), self.owner
        )
        outcomes = self.policy.call(lambda: self.evaluator.evaluate(request))
        results = [Evaluated(o.run_id, dict(o.figures)) for o in outcomes]
        if len(results) != len(targets):
            raise RuntimeError(f"the evaluator answered {len(results)} of {len(targets)} targets")
        if len(targets) == 2:
            assert run.champion is not None
            theirs = results[1]
            self._record(model, run.champion, spec.digest, judge(theirs.figures, spec.thresholds),
                         theirs)  # fmt: skip
            champion_figures = theirs.means
        mine = results[0]
        verdict = judge(mine.figures, spec.thresholds, champion_figures)
        self._record(model, number, spec.digest, verdict, mine)
        return verdict, mine

    def _record(
        self, model: str, number: int, digest: str, verdict: Verdict, made: Evaluated
    ) -> None:
        self.made[(model, number, digest)] = made
        tags = Recorded(digest, verdict.passed, made.run_id, made.means, verdict.reason).tags()
        r, call = self.registry, self.policy.call
        # The verdict goes first and comes back last: a crash in between leaves no verdict (a
        # version's earlier one must not count for the new digest), and the next apply evaluates.
        call(lambda: r.delete_version_tag(model, number, EVAL_VERDICT_TAG))
        for key, value in tags.items():
            call(lambda k=key, v=value: r.set_version_tag(model, number, k, v))  # type: ignore[misc]
