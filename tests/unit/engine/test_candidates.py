"""`agentctl eval`'s engine: the working tree's `current` evaluated from source, never
registered; the champion's figures recorded, shared (same source) or evaluated in the same call;
only agents in scope with spec.evaluation; the evaluator built only when there is work."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.errors import EvaluationError
from controller.core.evaluation.champion import Champion
from controller.core.evaluation.record import Recorded
from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec, ThresholdSpec
from controller.core.manifest.desired import DesiredAgent
from controller.core.state.observed import DIGEST_TAG, ObservedModel, ObservedVersion
from controller.engine.candidates import evaluate_candidates
from controller.ports import Evaluator
from tests.support.builders import D1, D2, agent, desired, model, snapshot
from tests.support.fake_evaluator import FakeEvaluator, figures

SPEC = EvaluationSpec(
    dataset="eval/q.jsonl",
    scorers=(ScorerSpec("pii_detection", builtin="PIIDetection"),),
    thresholds=(ThresholdSpec("pii_detection", min=1.0, max_drop=0.0),),
    rows=({"inputs": {"q": "hi"}},),
    digest="sha256:" + "e" * 64,
)
ALIASED = {"versions": ["current"], "aliases": {"champion": "current"}}


def with_eval(a: DesiredAgent, spec: EvaluationSpec | None = SPEC) -> DesiredAgent:
    return replace(a, evaluation=spec)


def registered(name: str = "bot", digest: str = D2, tags: dict[str, str] | None = None
               ) -> ObservedModel:  # fmt: skip
    m = model(name, aliases={"champion": 1}, versions={1: digest})
    v = ObservedVersion(1, tags={DIGEST_TAG: digest, **(tags or {})}, source="models:/m-abc")
    return replace(m, versions={1: v})


def factory(ev: FakeEvaluator) -> tuple[list[int], object]:
    built: list[int] = []

    def make() -> Evaluator:
        built.append(1)
        return ev

    return built, make


def test_candidate_from_source_and_champion_evaluated_in_the_same_call() -> None:
    ev = FakeEvaluator({"source": figures(pii_detection=0.5), "v1": figures(pii_detection=1.0)})
    report = evaluate_candidates(
        desired(with_eval(agent("bot", **ALIASED))), snapshot(registered()), lambda: ev,
        owner="agentctl", written_by="agentctl 0.1.0",
    )  # fmt: skip
    (request,) = ev.requests
    cand, champ = request.targets
    assert cand.source is not None and cand.version is None
    assert (cand.source.code_path, cand.source.digest, cand.source.owner) == (
        "/r/agent.py",
        D1,
        "agentctl",
    )
    assert (champ.model, champ.version, champ.model_id, champ.source) == ("bot", 1, "m-abc", None)
    assert request.root == "/r" and request.spec is SPEC and request.experiment == "/agentctl/bot"
    (a,) = report.evaluated
    assert a.champion == Champion(1, "alias champion") and a.champion_from == "evaluated"
    assert (a.candidate_run, a.champion_run) == ("run-bot-source", "run-bot-v1")
    assert not report.passed
    assert [(c.threshold, c.result) for c in a.checks] == [("min 1", "fail"), ("maxDrop 0", "fail")]


def test_recorded_figures_for_the_same_evaluation_are_reused() -> None:
    tags = Recorded(SPEC.digest, True, "run-then", {"pii_detection": 1.0}).tags()
    ev = FakeEvaluator({"source": figures(pii_detection=1.0)})
    report = evaluate_candidates(
        desired(with_eval(agent("bot", **ALIASED))), snapshot(registered(tags=tags)),
        lambda: ev, owner="agentctl",
    )  # fmt: skip
    assert [t.label for t in ev.requests[0].targets] == ["current (working tree, agent.py)"]
    (a,) = report.evaluated
    assert (a.champion_from, a.champion_run) == ("recorded", "run-then")
    assert report.passed


def test_a_record_for_another_evaluation_is_not_reused() -> None:
    tags = Recorded("sha256:" + "0" * 64, True, "run-then", {"pii_detection": 1.0}).tags()
    ev = FakeEvaluator({"source": figures(pii_detection=1.0), "v1": figures(pii_detection=1.0)})
    evaluate_candidates(
        desired(with_eval(agent("bot", **ALIASED))), snapshot(registered(tags=tags)),
        lambda: ev, owner="agentctl",
    )  # fmt: skip
    assert [t.version for t in ev.requests[0].targets] == [None, 1]


def test_a_champion_of_the_same_source_is_evaluated_once() -> None:
    ev = FakeEvaluator({"source": figures(pii_detection=1.0)})
    report = evaluate_candidates(
        desired(with_eval(agent("bot", **ALIASED))), snapshot(registered(digest=D1)),
        lambda: ev, owner="agentctl",
    )  # fmt: skip
    assert len(ev.requests[0].targets) == 1
    (a,) = report.evaluated
    assert a.champion_from == "same source" and a.checks[0].champion == 1.0


def test_nothing_registered_evaluates_the_candidate_alone() -> None:
    ev = FakeEvaluator({"source": figures(pii_detection=1.0)})
    report = evaluate_candidates(
        desired(with_eval(agent("bot", **ALIASED))), snapshot(), lambda: ev, owner="agentctl"
    )
    (a,) = report.evaluated
    assert a.champion is None and [c.result for c in a.checks] == ["pass", "skipped"]


def test_another_owner_s_model_is_no_champion() -> None:
    ev = FakeEvaluator({"source": figures(pii_detection=1.0)})
    theirs = replace(registered(), tags={**registered().tags, "agentctl.io/owner": "them"})
    report = evaluate_candidates(
        desired(with_eval(agent("bot", **ALIASED))), snapshot(theirs), lambda: ev, owner="agentctl"
    )
    assert report.evaluated[0].champion is None and len(ev.requests[0].targets) == 1


def test_only_agents_in_scope_with_an_evaluation_and_no_evaluator_without_work() -> None:
    ev = FakeEvaluator({"source": figures(pii_detection=1.0)})
    built, make = factory(ev)
    d = desired(
        with_eval(agent("a", **ALIASED)), with_eval(agent("b", **ALIASED)),
        agent("c", **ALIASED), with_eval(agent("d", digest=None, versions=[3])),
    )  # fmt: skip
    report = evaluate_candidates(d, snapshot(), make, owner="agentctl",  # type: ignore[arg-type]
                                 scope={"b": "b.yaml changed", "c": "c.yaml changed",
                                        "d": "d.yaml changed"})  # fmt: skip
    assert [a.agent for a in report.evaluated] == ["b"]
    assert report.evaluated[0].scope == "b.yaml changed"
    assert dict(report.skipped) == {
        "c": "no spec.evaluation",
        "d": "no spec.source: nothing in the working tree to evaluate",
    }
    assert [r.agent for r in ev.requests] == ["b"] and built == [1]
    built.clear()
    report = evaluate_candidates(d, snapshot(), make, owner="agentctl",  # type: ignore[arg-type]
                                 scope={"c": "c.yaml changed"})  # fmt: skip
    assert report.evaluated == () and report.passed and built == []


def test_an_evaluation_error_goes_up() -> None:
    ev = FakeEvaluator({}, fail=EvaluationError("bot: eval/q.jsonl: line 3: no 'inputs'"))
    with pytest.raises(EvaluationError, match="line 3"):
        evaluate_candidates(
            desired(with_eval(agent("bot", **ALIASED))), snapshot(), lambda: ev, owner="agentctl"
        )
