"""spec.evaluation through reconcile, with an in-memory registry, serving and evaluator: a
version is evaluated after it is registered and before any alias or traffic moves to it; a
failed one keeps no alias and gets no traffic, and is not evaluated again for the same inputs;
the champion's figures are reused when recorded, made once otherwise; a rollout's canary waits
for its evaluation and does not start when it fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.errors import ApplyFailed
from controller.core.evaluation.record import EVAL_DIGEST_TAG, EVAL_RUN_TAG, EVAL_VERDICT_TAG
from controller.core.evaluation.spec import (
    EvaluationSpec,
    ScorerSpec,
    ThresholdSpec,
    evaluation_digest,
)
from controller.core.manifest.desired import Desired
from controller.core.plan.changes import EvaluationRun, Kind, Plan
from controller.core.plan.changeset import Verb
from controller.core.render.formats import render_plan
from controller.core.rollout.progress import Hold
from controller.engine.loader import load
from controller.engine.retry import RetryPolicy
from tests.support.engine import Result, reconcile
from tests.support.fake_evaluator import VersionEvaluator
from tests.support.fake_registry import FakeRegistry
from tests.support.fake_serving import FakeServing
from tests.support.manifests import GOOD, ROLLOUT, write_repo

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=lambda s: None)
ROWS = ({"inputs": {"input": [{"role": "user", "content": "hi"}]}},) * 3


def spec(answers_min: float = 0.8, max_drop: float | None = None) -> EvaluationSpec:
    scorers = (
        ScorerSpec("pii_detection", builtin="PIIDetection"),
        ScorerSpec("answers", code="scorers.py", function="answers", code_digest="sha256:ab"),
    )
    thresholds = (
        ThresholdSpec("pii_detection", min=1.0),
        ThresholdSpec("answers", min=answers_min, max_drop=max_drop),
    )
    return EvaluationSpec(
        "eval.jsonl", scorers, thresholds, ROWS, None,
        evaluation_digest(ROWS, None, scorers, thresholds),
    )  # fmt: skip


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.reg = FakeRegistry()
        self.serving = FakeServing()
        self.evaluator = VersionEvaluator()
        self.spec: EvaluationSpec | None = spec()
        self.now = 1_000_000.0

    def desired(self) -> Desired:
        loaded, _ = load(self.root)
        return replace(
            loaded, agents=tuple(replace(a, evaluation=self.spec) for a in loaded.agents)
        )

    def apply(self, dt: float = 0.0) -> Result:
        self.now += dt
        return reconcile(
            self.desired(), self.reg, apply=True, policy=NO_WAIT, serving=self.serving,
            evaluator=self.evaluator, wall=lambda: self.now,
        )  # fmt: skip

    def plan(self) -> Plan:
        return reconcile(self.desired(), self.reg, apply=False, serving=self.serving).plan

    def tags(self, version: int) -> dict[str, str]:
        return dict(self.reg.models["bot"].versions[version].tags)

    @property
    def aliases(self) -> dict[str, int]:
        return dict(self.reg.models["bot"].aliases)

    @property
    def weights(self) -> dict[int, int]:
        return self.serving.weights.get("bot", {})


def test_a_new_version_is_evaluated_before_its_alias_and_traffic_and_only_once(
    tmp_path: Path,
) -> None:
    w = World(write_repo(tmp_path, GOOD))
    planned = w.plan()
    kinds = [c.kind for c in planned.changes]
    at = kinds.index(Kind.EVALUATION)
    assert (
        kinds.index(Kind.MODEL_VERSION) < at < kinds.index(Kind.ALIAS) < kinds.index(Kind.TRAFFIC)
    )
    assert planned.summary()["evaluate"] == 1
    text = render_plan(planned)
    assert (
        "evaluate current (known after apply) on eval.jsonl (3 rows, pii_detection, answers)"
        in text
    )
    assert "1 to evaluate" in text
    first = w.apply()
    assert first.changeset is not None
    assert [e.verb for e in first.changeset.entries if ".evaluation." in e.address] == [Verb.PASSED]
    assert w.evaluator.evaluated == [1]
    tags = w.tags(1)
    assert tags[EVAL_VERDICT_TAG] == "passed" and tags[EVAL_DIGEST_TAG] == w.spec.digest  # type: ignore[union-attr]
    assert tags[EVAL_RUN_TAG] == "run-1-0"
    assert w.aliases == {"champion": 1} and w.weights == {1: 100}
    again = w.apply()
    assert not again.plan.has_changes and again.plan.reached
    assert w.evaluator.evaluated == [1]  # the same inputs are not evaluated again


def test_a_failed_version_keeps_no_alias_gets_no_traffic_and_is_not_evaluated_again(
    tmp_path: Path,
) -> None:
    w = World(write_repo(tmp_path, GOOD))
    w.evaluator.figures[("bot", 1)] = {"pii_detection": 0.5, "answers": 1.0}
    first = w.apply()
    assert first.changeset is not None
    failed = first.changeset.failed_evaluations
    assert len(failed) == 1
    assert "pii_detection 0.5 misses min 1" in failed[0].detail
    assert "run-1-0" in failed[0].detail
    skipped = {e.address for e in first.changeset.entries if e.verb is Verb.SKIPPED}
    assert "bot.alias.champion" in skipped and "bot.traffic" in skipped
    assert w.aliases == {} and w.weights == {} and "bot" not in w.serving.servers
    assert w.tags(1)[EVAL_VERDICT_TAG] == "failed"
    # The next plan withholds the alias and the traffic, and needs attention; nothing to do.
    later = w.plan()
    assert [c.kind for c in later.changes] == []
    assert [(g.agent, g.version) for g in later.gated] == [("bot", 1)]
    assert not later.reached
    assert "version 1 failed its evaluation: pii_detection 0.5 misses min 1" in render_plan(later)
    w.apply()
    assert w.evaluator.evaluated == [1] and w.aliases == {}
    # New inputs (a looser threshold on the other scorer: a new digest) evaluate it again.
    w.spec = spec(answers_min=0.5)
    w.evaluator.figures[("bot", 1)] = {"pii_detection": 1.0, "answers": 1.0}
    w.apply()
    assert w.evaluator.evaluated == [1, 1] and w.aliases == {"champion": 1}


def test_the_champion_s_recorded_figures_are_reused_else_made_once(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    w = World(root)
    w.spec = spec(max_drop=0.05)
    w.evaluator.figures[("bot", 1)] = {"answers": 0.9}
    w.apply()
    assert w.aliases == {"champion": 1}
    # A new source: v2 is compared with v1 (the version at the alias, serving all traffic),
    # whose figures are recorded for the same inputs: only v2 is evaluated.
    (root / "config.yaml").write_text("greeting: hello\n")
    w.evaluator.figures[("bot", 2)] = {"answers": 0.82}
    planned = w.plan()
    run = next(c for c in planned.changes if c.kind is Kind.EVALUATION).after
    assert isinstance(run, EvaluationRun) and run.champion == 1
    assert run.champion_figures is not None and run.champion_figures["answers"] == 0.9
    result = w.apply()
    assert w.evaluator.evaluated == [1, 2]
    assert result.changeset is not None
    (entry,) = result.changeset.failed_evaluations
    assert "answers 0.82 misses maxDrop 0.05 from the champion's 0.9" in entry.detail
    assert w.aliases == {"champion": 1} and w.weights == {1: 100}
    # Other inputs: the champion's figures are not recorded for them; it is evaluated in the
    # same request as the candidate (like for like), and both verdicts are recorded.
    (root / "config.yaml").write_text("greeting: hey\n")
    w.spec = spec(max_drop=0.1)
    w.evaluator.figures[("bot", 3)] = {"answers": 0.85}
    w.apply()
    assert [t.version for t in w.evaluator.requests[-1].targets] == [3, 1]
    assert w.tags(1)[EVAL_DIGEST_TAG] == w.tags(3)[EVAL_DIGEST_TAG] == w.spec.digest
    assert w.aliases == {"champion": 3}


def test_an_evaluation_error_moves_nothing_and_the_next_apply_evaluates(tmp_path: Path) -> None:
    from controller.core.errors import EvaluationError

    w = World(write_repo(tmp_path, GOOD))
    w.evaluator.failure = EvaluationError("bot: scorer answers (scorers.py:answers): boom")
    try:
        w.apply()
    except EvaluationError as exc:
        assert "scorer answers" in str(exc)
    else:
        raise AssertionError("the evaluation error was swallowed")
    assert w.aliases == {} and w.weights == {}
    assert EVAL_VERDICT_TAG not in w.tags(1)
    w.evaluator.failure = None
    w.apply()
    assert w.aliases == {"champion": 1} and w.evaluator.evaluated == [1, 1]


def test_a_rollout_canary_waits_for_its_evaluation_and_does_not_start_when_it_fails(
    tmp_path: Path,
) -> None:
    root = write_repo(tmp_path, GOOD)
    w = World(root)
    w.apply()
    assert w.aliases == {"champion": 1} and w.weights == {1: 100}
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT)
    w.evaluator.figures[("bot", 2)] = {"pii_detection": 0.0}
    first = w.apply()
    assert isinstance(first.progress["bot"], Hold)
    assert first.changeset is not None and first.changeset.failed_evaluations
    later = w.apply(10)
    hold = later.progress["bot"]
    assert isinstance(hold, Hold) and hold.gate == "failed"
    assert "v2 failed its evaluation: the rollout does not start" in hold.reason
    assert later.requeue_after is None
    assert w.aliases == {"champion": 1} and w.weights == {1: 100}
    assert set(w.serving.servers["bot"]) == {1}  # the failed canary is not started
    assert [g.version for g in later.plan.gated] == [2]


def test_a_rollout_canary_that_passes_starts_its_steps(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    w = World(root)
    w.apply()
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT)
    first = w.apply()
    assert isinstance(first.progress["bot"], Hold) and w.weights == {1: 100, 2: 0}
    assert w.tags(2)[EVAL_VERDICT_TAG] == "passed"
    w.apply(1)
    assert w.weights == {1: 80, 2: 20}


def test_a_plan_with_an_evaluation_reads_back_from_json_as_it_was(tmp_path: Path) -> None:
    w = World(write_repo(tmp_path, GOOD))
    planned = w.plan()
    assert Plan.from_dict(planned.to_dict()) == planned


def test_a_crash_while_recording_a_verdict_leaves_none_and_the_next_apply_evaluates(
    tmp_path: Path,
) -> None:
    """An earlier verdict must not count for new inputs: it is deleted before the new record is
    written, so a crash in between leaves the version unevaluated, not passed."""
    from controller.core.errors import TemporaryBackendError

    w = World(write_repo(tmp_path, GOOD))
    w.apply()
    assert w.tags(1)[EVAL_VERDICT_TAG] == "passed"
    w.spec = spec(answers_min=0.99)  # new inputs; v1 now misses them
    w.evaluator.figures[("bot", 1)] = {"answers": 0.9}
    real = w.reg.set_version_tag
    calls = []

    def crash_on_verdict(name: str, version: int, key: str, value: str) -> None:
        calls.append(key)
        if key == EVAL_VERDICT_TAG:
            raise TemporaryBackendError("the server went away")
        real(name, version, key, value)

    w.reg.set_version_tag = crash_on_verdict  # type: ignore[method-assign]
    with pytest.raises(ApplyFailed):
        w.apply()
    w.reg.set_version_tag = real  # type: ignore[method-assign]
    assert EVAL_VERDICT_TAG not in w.tags(1)
    assert w.tags(1)[EVAL_DIGEST_TAG] == w.spec.digest  # type: ignore[union-attr]
    assert [c.kind for c in w.plan().changes] == [Kind.EVALUATION]  # evaluated again
    w.apply()
    assert w.tags(1)[EVAL_VERDICT_TAG] == "failed"


TWO = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: bot
spec:
  source:
    code: agent.py
    config: config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions:
    - version: stable
      source: {{config: stable.yaml}}
    - current
  aliases:
    champion: stable
  serving:
    traffic:
      - {{version: stable, percent: {stable}}}
      - {{version: current, percent: {current}}}
"""


def test_traffic_may_leave_a_failed_version_but_never_grows_on_it(tmp_path: Path) -> None:
    root = write_repo(tmp_path, TWO.format(stable=0, current=100))
    (root / "stable.yaml").write_text("greeting: hello\n")
    w = World(root)
    w.spec = None  # served before the agent had an evaluation
    w.apply()
    versions = set(w.reg.models["bot"].versions)
    assert len(versions) == 2
    stable = w.aliases["champion"]
    (current,) = versions - {stable}
    assert w.weights.get(current) == 100
    # The evaluation arrives; the version serving everything fails it.
    w.spec = spec()
    w.evaluator.figures[("bot", current)] = {"pii_detection": 0.0}
    w.apply()
    assert [g.version for g in w.plan().gated] == [current]
    # Taking traffic away from it goes through...
    (root / "bot.yaml").write_text(TWO.format(stable=90, current=10))
    w.apply()
    assert w.weights == {stable: 90, current: 10}
    # ...giving it more does not: the split is withheld, and the plan says why.
    (root / "bot.yaml").write_text(TWO.format(stable=50, current=50))
    result = w.apply()
    assert w.weights == {stable: 90, current: 10}
    assert [g.version for g in result.plan.gated] == [current]
