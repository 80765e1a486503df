"""What `agentctl eval` prints: the candidate beside the champion per scorer, each threshold
passed or failed, in text, markdown (read by its structure) and JSON (stable keys); the table
and the verdict agree, and secrets in a scorer's error are redacted."""

from __future__ import annotations

import json

import pytest

from controller.core.evaluation.champion import Champion
from controller.core.evaluation.report import (
    FAIL,
    PASS,
    SKIPPED,
    AgentEvaluation,
    EvalReport,
    compare,
)
from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec, ThresholdSpec
from controller.core.evaluation.verdict import ScorerFigures
from controller.core.render.evaluation import EVAL_MARKER, render_eval, summary
from tests.support.eval_markdown import not_evaluated, sections
from tests.support.fake_evaluator import figures

SPEC = EvaluationSpec(
    dataset="eval/questions.jsonl",
    scorers=(
        ScorerSpec("pii_detection", builtin="PIIDetection"),
        ScorerSpec("answers", code="eval/scorers.py", function="answers"),
        ScorerSpec("length", builtin="ResponseLength", args={"max_length": 200}),
    ),
    thresholds=(
        ThresholdSpec("pii_detection", min=1.0),
        ThresholdSpec("answers", min=0.8, max_drop=0.05),
    ),
    rows=({"inputs": {"question": "hi"}},) * 12,
    digest="sha256:" + "e" * 64,
)


CHAMP = Champion(3, "alias champion")


def agent_eval(name: str, candidate: dict[str, ScorerFigures], champion: dict[str, float] | None,
               champ: Champion | None = CHAMP) -> AgentEvaluation:  # fmt: skip
    checks, verdict = compare(SPEC, candidate, champion)
    return AgentEvaluation(
        name, name, SPEC.describe(), "current (working tree, agent.py)", "run-c", champ,
        "run-old" if champ else "", "recorded" if champ else "", checks, verdict,
        scope=f"{name}.yaml changed",
    )  # fmt: skip


def test_one_check_per_threshold_bound_and_the_verdict_agrees() -> None:
    leaking = figures(pii_detection=0.75, answers=0.9, length=1.0)
    checks, verdict = compare(SPEC, leaking, {"pii_detection": 1.0, "answers": 1.0})
    got = [(c.scorer, c.threshold, c.result) for c in checks]
    assert got == [
        ("pii_detection", "min 1", FAIL),
        ("answers", "min 0.8", PASS),
        ("answers", "maxDrop 0.05", FAIL),
        ("length", "", ""),
    ]
    assert not verdict.passed
    assert {m.scorer for m in verdict.misses} == {"pii_detection", "answers"}
    assert checks[0].note == "pii_detection 0.75 misses min 1"
    assert "champion's 1" in checks[2].note


def test_max_drop_without_a_champion_is_skipped_not_passed_silently() -> None:
    checks, verdict = compare(SPEC, figures(pii_detection=1.0, answers=0.9, length=1.0), None)
    drop = next(c for c in checks if c.threshold.startswith("maxDrop"))
    assert drop.result == SKIPPED and drop.champion is None
    assert verdict.passed


def test_a_scorer_that_failed_on_every_row_fails_even_without_a_threshold() -> None:
    cand = figures(pii_detection=1.0, answers=0.9)
    cand["length"] = ScorerFigures("length", 0.0, 12, 12, "boom: judge unreachable")
    checks, verdict = compare(SPEC, cand, None)
    length = next(c for c in checks if c.scorer == "length")
    assert (length.result, length.errors) == (FAIL, 12)
    assert "failed on every row (boom: judge unreachable)" in length.note
    assert not verdict.passed


def test_a_threshold_on_a_scorer_with_no_figure_fails() -> None:
    checks, verdict = compare(SPEC, figures(answers=0.9, length=1.0), None)
    pii = next(c for c in checks if c.scorer == "pii_detection")
    assert pii.candidate is None and pii.result == FAIL
    assert "has no figure" in verdict.reason


def test_markdown_by_structure() -> None:
    report = EvalReport(
        (
            agent_eval("leaky", figures(pii_detection=0.75, answers=0.9, length=1.0),
                       {"pii_detection": 1.0, "answers": 0.92, "length": 1.0}),
            agent_eval("good", figures(pii_detection=1.0, answers=0.95, length=1.0), None, None),
        ),
        (("quiet", "no spec.evaluation"),),
    )  # fmt: skip
    text = render_eval(report, "markdown")
    assert text.splitlines()[0] == EVAL_MARKER
    found = sections(text)
    assert list(found) == ["leaky", "good"]
    leaky = found["leaky"]
    assert leaky.verdict == "failed"
    assert [(r["scorer"], r["threshold"], r["result"]) for r in leaky.rows] == [
        ("pii_detection", "min 1", ":x: fail"),
        ("answers", "min 0.8", ":white_check_mark: pass"),
        ("answers", "maxDrop 0.05", ":white_check_mark: pass"),
        ("length", "—", "—"),
    ]
    assert leaky.rows[0]["candidate"] == "0.75" and leaky.rows[0]["champion"] == "1"
    assert leaky.misses == ["pii_detection 0.75 misses min 1"]
    good = found["good"]
    assert good.verdict == "passed" and good.misses == []
    assert {r["champion"] for r in good.rows} == {"—"}
    assert [r["result"] for r in good.rows if r["threshold"] == "maxDrop 0.05"] == ["skipped"]
    assert "quiet (no spec.evaluation)" in not_evaluated(text)
    assert "**Evaluated 2 agents: 1 passed, 1 failed.**" in text.splitlines()


def test_a_name_cannot_break_the_table() -> None:
    spec_name = "a|b`c\nd"
    checks, verdict = compare(SPEC, {spec_name: ScorerFigures(spec_name, 1.0, 1)}, None)
    a = AgentEvaluation("x", "x", "d", "c", "", None, "", "", checks, verdict)
    rows = sections(render_eval(EvalReport((a,)), "markdown"))["x"].rows
    assert spec_name.replace("\n", " ") in [r["scorer"] for r in rows]


def test_text_is_a_table_and_names_what_failed() -> None:
    report = EvalReport((agent_eval("leaky", figures(pii_detection=0.75, answers=0.9, length=1.0),
                                    {"pii_detection": 1.0, "answers": 0.9}),))  # fmt: skip
    text = render_eval(report, "text")
    lines = text.splitlines()
    assert lines[0] == f"leaky: failed on {SPEC.describe()}"
    assert "champion:  v3 (alias champion), figures recorded on the version (run run-old)" in text
    header = next(line for line in lines if line.split()[:2] == ["scorer", "candidate"])
    row = lines[lines.index(header) + 1].split()
    assert row == ["pii_detection", "0.75", "1", "min", "1", "FAIL"]
    assert "=> pii_detection 0.75 misses min 1" in text
    assert lines[-1] == "Evaluated 1 agent: 0 passed, 1 failed."


def test_json_has_stable_keys() -> None:
    report = EvalReport(
        (agent_eval("leaky", figures(pii_detection=0.75, answers=0.9, length=1.0),
                    {"pii_detection": 1.0}),),
        (("quiet", "no spec.evaluation"),),
    )  # fmt: skip
    doc = json.loads(render_eval(report, "json"))
    assert set(doc) == {"passed", "agents", "skipped"} and doc["passed"] is False
    (a,) = doc["agents"]
    assert set(a) == {"agent", "model", "dataset", "scope", "candidate", "champion", "passed",
                      "reason", "checks"}  # fmt: skip
    assert a["champion"] == {"version": 3, "why": "alias champion", "run_id": "run-old",
                             "figures": "recorded"}  # fmt: skip
    assert a["candidate"] == {"label": "current (working tree, agent.py)", "run_id": "run-c"}
    first = a["checks"][0]
    assert first == {"scorer": "pii_detection", "candidate": 0.75, "champion": 1.0,
                     "threshold": "min 1", "result": "fail", "rows": 10, "errors": 0,
                     "note": "pii_detection 0.75 misses min 1"}  # fmt: skip
    assert doc["skipped"] == [{"agent": "quiet", "reason": "no spec.evaluation"}]


def test_nothing_to_evaluate_says_so() -> None:
    report = EvalReport((), (("quiet", "no spec.evaluation"),))
    assert report.passed
    assert summary(report) == "Nothing to evaluate: no agent in scope has spec.evaluation."
    assert render_eval(report, "text").splitlines()[-1] == summary(report)
    assert sections(render_eval(report, "markdown")) == {}


@pytest.mark.parametrize(
    ("skipped", "said"),
    [
        ((), "Nothing to evaluate: no agent is in scope."),
        ((("quiet", "no spec.evaluation"), ("also", "no spec.evaluation")),
         "Nothing to evaluate: no agent in scope has spec.evaluation."),
        ((("bot", "spec.source is read at git revision v1.2"),),
         "Nothing to evaluate: the one agent in scope was not evaluated (why is listed)."),
        ((("quiet", "no spec.evaluation"), ("bot", "no spec.source: nothing in the working tree "
                                                   "to evaluate")),
         "Nothing to evaluate: none of the 2 agents in scope was evaluated (why is listed)."),
    ],
    ids=["none-in-scope", "none-with-evaluation", "one-skipped-otherwise", "mixed"],
)  # fmt: skip
def test_nothing_to_evaluate_says_what_is_true(
    skipped: tuple[tuple[str, str], ...], said: str
) -> None:
    report = EvalReport((), skipped)
    assert summary(report) == said
    text = render_eval(report, "text").splitlines()
    assert text[-1] == said
    for agent, why in skipped:
        assert f"{agent}: not evaluated ({why})" in text
    assert f"**{said}**" in render_eval(report, "markdown")


def test_a_secret_in_a_scorer_error_is_redacted_everywhere() -> None:
    cand = figures(pii_detection=1.0, answers=0.9)
    cand["length"] = ScorerFigures(
        "length", 0.0, 2, 2, "cannot reach https://user:hunter2@judge.example/v1"
    )
    report = EvalReport((agent_eval("x", cand, None, None),))
    for fmt in ("text", "markdown", "json"):
        assert "hunter2" not in render_eval(report, fmt), fmt
