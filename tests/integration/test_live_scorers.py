"""The ``source: scorers`` rollout gate end to end: real model servers of the example support bot
behind the real router, the real MLflow server (the traces the served versions write, the
feedback agentctl logs on them), the installed `agentctl apply --wait`, callers sending requests.

- a canary whose answers leak an e-mail address is rolled back at 10 % by a PIIDetection gate,
  before the 50 % step; the results are feedback assessments on the canary's (and the stable's)
  traces, visible through MlflowClient;
- a good canary passes a code scorer's gate and is promoted; a trace is scored once, however
  many measurements see it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import rollout_bench
from tests.support.local import LOCAL
from tests.support.rollout_bench import MANIFEST, Bench, Calls, new_version, rollout

pytestmark = pytest.mark.integration

bench = rollout_bench.bench

EVALUATION = """\
  evaluation:
    dataset: eval/questions.jsonl
    scorers:
      - builtin: PIIDetection
        args: {pii_types: [email]}
      - code: eval/scorers.py:on_topic
"""

SCORERS = '''\
import json


def on_topic(outputs) -> bool:
    """The answer to a refund question says how refunds work."""
    return "Refunds are issued" in json.dumps(outputs)
'''


def with_evaluation(b: Bench) -> None:
    (b.root / "eval").mkdir(exist_ok=True)
    (b.root / "eval" / "questions.jsonl").write_text(
        json.dumps({"inputs": {"input": [{"role": "user", "content": "how do I get a refund?"}]}})
        + "\n"
    )
    (b.root / "eval" / "scorers.py").write_text(SCORERS)


def run(b: Bench, name: str, timeout: float) -> tuple[int, str]:
    calls = Calls()
    callers = b.call_while(calls, threads=2)
    try:
        p = b.apply_wait(name)
        code = p.wait(timeout)
    finally:
        calls.stop.set()
        for t in callers:
            t.join(40)
    return code, b.log(name)


def traces_of(b: Bench, version: int, scorer: str) -> list[Any]:
    """The served traces of ``version`` (by its logged model; not its evaluation's, made before
    traffic) that carry feedback named ``scorer``, with their assessments."""
    mv = b.client.get_model_version("support-bot", str(version))
    model_id = mv.source.removeprefix("models:/")
    exp = b.client.get_experiment_by_name("/agentctl/support-bot")
    return list(
        b.client.search_traces(
            locations=[exp.experiment_id],
            filter_string=f"metadata.`mlflow.modelId` = '{model_id}' "
            f"AND feedback.{scorer} IS NOT NULL AND metadata.`mlflow.sourceRun` IS NULL",
            max_results=500,
            include_spans=False,
        )
    )


def agentctl_feedback(trace: Any, name: str) -> list[Any]:
    return [
        a
        for a in trace.info.assessments
        if a.name == name
        and a.source.source_id == "agentctl"
        and str(getattr(a.source.source_type, "value", a.source.source_type)) == "CODE"
    ]


def test_a_canary_that_leaks_an_email_address_is_rolled_back_at_10_percent(bench: Bench) -> None:
    b = bench
    with_evaluation(b)
    new_version(b, "v2 says hi: write to help@example.com.")
    gates = """\
        - name: no-pii
          metric: passRate
          source: scorers
          scorer: pii_detection
          min: 0.95
          sample: 20
          minSamples: 5
"""
    steps = """\
      - weight: 10
        pause: 120s
      - weight: 50
        pause: 30s
      - weight: 100
"""
    b.manifest.write_text(MANIFEST + EVALUATION + rollout(steps, gates))
    code, text = run(b, "leaking", 400)
    assert code == 1, text
    assert "the rollout of support-bot failed and was rolled back" in text
    assert "50%" not in text
    state = b.state()
    assert state is not None and state.phase.value == "Failed" and state.step == 0, state
    # The canary's pass rate under min, and the stable's beside it (it leaks nothing).
    assert "rolled back: no-pii " in state.message and " < 0.95" in state.message
    assert b.champion() == 1 and b.weights() == {1: 100}
    # Each scored canary trace carries agentctl's feedback: it failed the privacy check.
    canary = [
        fb for t in traces_of(b, 2, "pii_detection") for fb in agentctl_feedback(t, "pii_detection")
    ]
    assert len(canary) >= 5, canary
    assert {fb.value for fb in canary} == {"no"}
    assert {fb.metadata["agentctl.io/gate"] for fb in canary} == {"no-pii"}
    assert {fb.metadata["agentctl.io/rollout-step"] for fb in canary} == {"1"}
    assert {fb.metadata["agentctl.io/version"] for fb in canary} == {"2"}
    assert all("email" in (fb.rationale or "") for fb in canary), canary[0].rationale
    # The stable's traces of the same interval are scored for comparison, as far as they are
    # written yet (a busy server writes its traces late): what was scored passed.
    stable = [
        fb for t in traces_of(b, 1, "pii_detection") for fb in agentctl_feedback(t, "pii_detection")
    ]
    assert {fb.value for fb in stable} <= {"yes"}
    assert ("(stable: 1)" in state.message) == bool(stable), state.message


def test_a_good_canary_passes_its_code_scorer_gate_and_each_trace_is_scored_once(
    bench: Bench,
) -> None:
    b = bench
    with_evaluation(b)
    new_version(b, "v2 says hi.")
    gates = """\
        - name: on-topic
          metric: passRate
          source: scorers
          scorer: on_topic
          min: 0.9
          sample: 50
          minSamples: 3
"""
    steps = """\
      - weight: 30
        pause: 30s
      - weight: 100
"""
    b.manifest.write_text(MANIFEST + EVALUATION + rollout(steps, gates))
    code, text = run(b, "good", 400)
    assert code == 0, text
    state = b.state()
    assert state is not None and state.phase.value == "Promoted", state
    assert b.champion() == 2
    scored = traces_of(b, 2, "on_topic")
    assert len(scored) >= 3
    for t in scored:
        # Measured every 3 s over the step's newest 50 traces: overlapping samples, yet each
        # trace has the one result of the first measurement that saw it.
        (fb,) = agentctl_feedback(t, "on_topic")
        assert fb.value is True and fb.metadata["agentctl.io/gate"] == "on-topic"
    # The stable's answers were scored beside the canary's (its traces reach MLflow a few
    # seconds after its answers: the 30 s step leaves them time), and are on topic too.
    stable = [fb for t in traces_of(b, 1, "on_topic") for fb in agentctl_feedback(t, "on_topic")]
    assert stable and {fb.value for fb in stable} == {True}
    status = b.agentctl("status", "support-bot", env=LOCAL)
    assert status.code == 0 and "Promoted" in status.out, status.out
