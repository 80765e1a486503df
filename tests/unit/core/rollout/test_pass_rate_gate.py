"""The ``source: scorers`` gate in the manifest and the machine: a passRate gate takes min (not
max) and names a scorer of spec.evaluation, each mistake reported with file, line and field;
the pass rate counts a scorer's error as a failed sample; a canary under min is rolled back
with the stable version's figure in the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.rollout.analysis import pass_rate
from controller.core.rollout.codec import Phase
from controller.core.rollout.gates import Gate, Measurement, Verdict, judge
from controller.core.rollout.machine import Step, advance, from_spec, start
from controller.engine.loader import load
from tests.support.manifests import GOOD, errors_of, write_repo

LIVE = (
    GOOD
    + """\
  evaluation:
    dataset: eval.jsonl
    scorers:
      - builtin: PIIDetection
      - code: scorers.py:polite
  rollout:
    canary:
      alias: champion
    promoteAlias: champion
    steps:
      - weight: 10
        pause: 60s
      - weight: 100
    analysis:
      interval: 10s
      gates:
        - name: no-pii
          metric: passRate
          source: scorers
          scorer: pii_detection
          min: 0.95
          sample: 40
          minSamples: 10
"""
)


def repo(tmp_path: Path, text: str = LIVE) -> Path:
    root = write_repo(tmp_path, text)
    (root / "eval.jsonl").write_text('{"inputs": {"question": "hi"}}\n')
    (root / "scorers.py").write_text("def polite(outputs):\n    return True\n")
    return root


def test_a_scorers_gate_loads_as_a_gate_with_a_lower_bound(tmp_path: Path) -> None:
    desired, _ = load(repo(tmp_path))
    (agent,) = desired.agents
    assert agent.manifest.spec.rollout is not None
    _, gates = from_spec(agent.manifest.spec.rollout)
    assert gates == [Gate("no-pii", None, 10, 1, min_value=0.95)]
    gate = agent.manifest.spec.rollout.analysis.gates[0]  # type: ignore[union-attr]
    assert (gate.scorer, gate.sample) == ("pii_detection", 40)


def test_a_code_scorer_goes_by_its_function_name_or_its_own_name(tmp_path: Path) -> None:
    load(repo(tmp_path, LIVE.replace("scorer: pii_detection", "scorer: polite")))
    named = LIVE.replace(
        "- code: scorers.py:polite", "- code: scorers.py:polite\n        name: kind"
    )
    load(repo(tmp_path, named.replace("scorer: pii_detection", "scorer: kind")))


@pytest.mark.parametrize(
    ("edit", "line", "field", "fragment"),
    [
        (("scorer: pii_detection", "scorer: pii"), 36, "spec.rollout.analysis.gates[0].scorer",
         "scorer 'pii' is not listed in spec.evaluation.scorers (listed: pii_detection, polite)"),
        (("min: 0.95", "max: 0.95"), 37, "spec.rollout.analysis.gates[0].max",
         "a passRate gate takes min (the least pass rate the canary keeps), not max"),
        (("          min: 0.95\n", ""), 33, "spec.rollout.analysis.gates[0]",
         "a passRate gate needs min"),
        (("min: 0.95", "min: 1.5"), 37, "spec.rollout.analysis.gates[0].min",
         "less than or equal to 1"),
        (("source: scorers", "source: traces"), 35, "spec.rollout.analysis.gates[0].source",
         "a passRate gate is measured by scorers (source: scorers), not traces"),
        (("metric: passRate", "metric: errorRate"), 34, "spec.rollout.analysis.gates[0].metric",
         "a scorers gate measures passRate, not errorRate"),
        (("          scorer: pii_detection\n", ""), 33, "spec.rollout.analysis.gates[0]",
         "a scorers gate needs scorer"),
        (("sample: 40", "sample: 5"), 38, "spec.rollout.analysis.gates[0].sample",
         "sample (5) is under minSamples (10)"),
        (("metric: passRate", "metric: passrate"), 34, "spec.rollout.analysis.gates[0].metric",
         "'passRate'"),
    ],
)  # fmt: skip
def test_bad_scorers_gates_name_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], line: int, field: str, fragment: str
) -> None:
    assert edit[0] in LIVE
    # The field is named once (a gate that is wrong in several ways says each on its field).
    [err] = [e for e in errors_of(repo(tmp_path, LIVE.replace(*edit))) if e.field == field]
    assert (err.field, err.location and err.location.line) == (field, line), err
    assert fragment in err.message, err.message


def test_a_scorers_gate_needs_spec_evaluation(tmp_path: Path) -> None:
    start_, end = LIVE.index("  evaluation:\n"), LIVE.index("  rollout:\n")
    [err] = errors_of(repo(tmp_path, LIVE[:start_] + LIVE[end:]))
    assert err.field == "spec.rollout.analysis.gates[0].scorer"
    assert "must be listed in spec.evaluation.scorers, but spec.evaluation is not set" in (
        err.message
    )


ERRORS = (
    GOOD.replace("versions: [current]", "versions: [current]") + LIVE[LIVE.index("  rollout:") :]
)


@pytest.mark.parametrize(
    ("gate", "field", "fragment"),
    [
        ("- {name: e, metric: errorRate}", "spec.rollout.analysis.gates[0]",
         "an errorRate gate needs max: the most the canary may show (a ratio)"),
        ("- {name: e, metric: latencyP95, min: 0.5, max: 900}", "spec.rollout.analysis.gates[0].min",
         "only a passRate gate takes min; latencyP95 takes max"),
        ("- {name: e, metric: errorRate, max: 0.1, scorer: x}",
         "spec.rollout.analysis.gates[0].scorer", "only a scorers gate takes scorer, not traces"),
        ("- {name: e, metric: errorRate, max: 0.1, source: router, sample: 9}",
         "spec.rollout.analysis.gates[0].sample", "only a scorers gate takes sample, not router"),
    ],
)  # fmt: skip
def test_other_gates_take_max_and_nothing_of_scorers(
    tmp_path: Path, gate: str, field: str, fragment: str
) -> None:
    head = LIVE[: LIVE.index("        - name: no-pii")]
    [err] = errors_of(repo(tmp_path, head + f"        {gate}\n"))
    assert err.field == field and fragment in err.message, err


def test_the_pass_rate_counts_errors_and_unusable_values_as_failed_samples() -> None:
    assert pass_rate([]) == Measurement(None, 0)
    assert pass_rate([True, "yes", False, "no"]) == Measurement(0.5, 4)
    # A scorer that raised passes nothing, whatever value is beside its error.
    assert pass_rate([True, True, True, True], [None, None, None, "boom"]) == Measurement(0.75, 4)
    assert pass_rate([True, None, {"x": 1}, "maybe"]) == Measurement(0.25, 4)


def test_a_lower_bound_fails_under_min_and_names_the_stable_figure() -> None:
    gate = Gate("no-pii", None, 5, 1, min_value=0.95)
    assert judge(gate, Measurement(0.95, 5)) is Verdict.SUCCESSFUL
    assert judge(gate, Measurement(0.5, 4)) is Verdict.INCONCLUSIVE
    assert judge(gate, Measurement(0.9, 20)) is Verdict.FAILED
    assert judge(Gate("errors", 0.1, 5), Measurement(0.2, 20)) is Verdict.FAILED
    assert judge(Gate("errors", 0.1, 5), Measurement(0.0, 20)) is Verdict.SUCCESSFUL
    steps = [Step(10, 60.0), Step(50, 60.0), Step(100, 0.0)]
    d = advance(steps, [gate], start(2, 1, "d", 0.0), 10.0, {"no-pii": Measurement(0.4, 20, 1.0)})
    assert d.state.phase is Phase.FAILED and d.weights == {1: 100}
    assert (
        d.reason == "rolled back: no-pii 0.4 < 0.95 (stable: 1) (1 failed measurement(s), limit 1)"
    )
