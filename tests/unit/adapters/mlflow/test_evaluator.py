"""The evaluator's pure parts: figures from a result table (as ``result_df`` gives it, column by
column), the names figures are made for, the child's environment, and a child that dies (a real
child, which fails before importing mlflow)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from controller.adapters.mlflow.evaluator import (
    ChildEvaluator,
    child_env,
    figure_metrics,
    figures_from_table,
    listed_names,
    run_name,
)
from controller.core.errors import EvaluationError
from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec, ThresholdSpec
from controller.ports import EvalRequest, EvalTarget

NAN = math.nan


def test_figures_count_errors_and_unusable_values_as_failed_rows() -> None:
    table: dict[str, list[Any]] = {
        "trace_id": ["t1", "t2", "t3", "t4"],
        "is_answer/value": [np.bool_(True), None, True, False],
        "is_answer/error_message": [NAN, "scorer blew up", NAN, NAN],
        "pii_detection/value": ["yes", "no", "yes", "yes"],
        "n_chars/value": [np.float64(10.0), np.int64(20), "thirty", NAN],
        "state": ["OK", "OK", "OK", "OK"],
    }
    got = figures_from_table(table, ["is_answer", "pii_detection", "n_chars"], rows=4)
    assert (got["is_answer"].figure, got["is_answer"].errors) == (0.5, 1)
    assert got["is_answer"].first_error == "scorer blew up"
    assert (got["pii_detection"].figure, got["pii_detection"].errors) == (0.75, 0)
    assert (got["n_chars"].figure, got["n_chars"].errors) == (7.5, 2)
    assert got["n_chars"].first_error == "no usable value ('thirty')"


def test_a_row_the_agent_raised_on_fails_every_scorer_even_one_that_passes_anything() -> None:
    table = {
        "always/value": [True, True, True],
        "state": ["OK", "ERROR", "TraceState.ERROR"],
    }
    got = figures_from_table(table, ["always"], rows=3, predict_error="ValueError: boom")
    assert (got["always"].figure, got["always"].errors) == (pytest.approx(1 / 3), 2)
    assert got["always"].first_error == "the agent raised: ValueError: boom"


def test_rows_missing_from_the_table_and_a_missing_table_count_as_failed() -> None:
    got = figures_from_table({"ok/value": [True, True], "state": ["OK", "OK"]}, ["ok"], rows=4)
    assert (got["ok"].figure, got["ok"].rows, got["ok"].errors) == (0.5, 4, 2)
    assert "recorded no trace" in got["ok"].first_error
    empty = figures_from_table({}, ["ok"], rows=3)
    assert empty["ok"].all_failed and empty["ok"].rows == 3
    assert empty["ok"].first_error == "no row has a result named 'ok' (the results are named: none)"


def test_a_name_without_a_column_says_which_results_there_are() -> None:
    table = {"has_you/value": [True], "len_ok/value": [True], "state": ["OK"]}
    got = figures_from_table(table, ["multi", "has_you"], rows=1)
    assert got["multi"].all_failed
    assert got["multi"].first_error == (
        "no row has a result named 'multi' (the results are named: has_you, len_ok)"
    )
    assert got["has_you"].figure == 1.0


def test_a_secret_in_a_scorer_error_is_redacted() -> None:
    table = {
        "polite/value": [None],
        "polite/error_message": ["401: Incorrect API key provided: sk-abcdefghijklmnop1234"],
    }
    got = figures_from_table(table, ["polite"], rows=1)
    assert "sk-abcdefghijklmnop1234" not in got["polite"].first_error
    assert "(redacted)" in got["polite"].first_error


def test_figures_are_made_for_each_scorer_and_each_threshold_name() -> None:
    spec = EvaluationSpec(
        "d.jsonl",
        (ScorerSpec("multi", code="s.py", function="multi"), ScorerSpec("pii", builtin="PIIDetection")),
        (ThresholdSpec("has_you", min=1.0), ThresholdSpec("pii", min=1.0)),
    )  # fmt: skip
    assert listed_names(spec) == ["multi", "pii", "has_you"]


def test_agentctls_figures_as_metrics_with_names_mlflow_accepts() -> None:
    from mlflow.utils.validation import _validate_metric_name

    figures = figures_from_table(
        {"Odd_name.v-2/value": [True, None], "Odd_name.v-2/error_message": [None, "boom"]},
        ["Odd_name.v-2"],
        rows=2,
    )
    metrics = figure_metrics(figures)
    assert metrics == {"agentctl/Odd_name.v-2": 0.5, "agentctl/Odd_name.v-2/errors": 1.0}
    for key in metrics:
        _validate_metric_name(key)  # raises on a name MLflow refuses


def test_run_names() -> None:
    assert run_name("bot", EvalTarget("v4", model="bot", version=4)) == "eval-bot-v4"
    assert run_name("bot", EvalTarget("current (working tree)")) == "eval-bot-source"


def test_the_child_env_sets_mlflow_for_a_gate_and_an_explicit_setting_wins() -> None:
    env = child_env(4, {"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["MLFLOW_GENAI_EVAL_MAX_WORKERS"] == "4"
    assert env["MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION"] == "true"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["MLFLOW_GENAI_EVAL_PREDICT_RATE_LIMIT"] == "0"
    assert env["PYTHONSAFEPATH"] == "1"
    mine = child_env(4, {"MLFLOW_GENAI_EVAL_MAX_WORKERS": "2"})
    assert mine["MLFLOW_GENAI_EVAL_MAX_WORKERS"] == "2"


def test_a_child_that_dies_is_an_evaluation_error_with_its_status_and_redacted_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The child reads its request from stdin: one that is not JSON makes it die at once,
    # before mlflow is imported; its traceback is the stderr the message quotes.
    import controller.adapters.mlflow.evaluator as evaluator

    monkeypatch.setattr(
        evaluator, "json", SimpleNamespace(dumps=lambda v: "not json", load=json.load)
    )
    spec = EvaluationSpec("d.jsonl", (ScorerSpec("ok", code="s.py", function="ok"),))
    request = EvalRequest("bot", "/nowhere", spec, (EvalTarget("v1", model="bot", version=1),))
    with pytest.raises(EvaluationError) as info:
        ChildEvaluator("http://127.0.0.1:1").evaluate(request)
    text = str(info.value)
    assert text.startswith("bot: evaluating on d.jsonl: the evaluating process exited 1: ")
    assert "JSONDecodeError" in text
