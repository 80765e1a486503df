"""The evaluator adapter against the real MLflow server: ``mlflow.genai.evaluate`` in a child
process, predicting with a registered version (logged by the real logging child) or with a
source that is never registered, and agentctl's own figures from the result table."""

from __future__ import annotations

import http.server
import json
import textwrap
import threading
from pathlib import Path

import pytest

from controller.adapters.mlflow.evaluator import ChildEvaluator
from controller.adapters.mlflow.rest import RestRegistry
from controller.core.errors import EvaluationError
from controller.core.evaluation.spec import (
    EvaluationSpec,
    ScorerSpec,
    ThresholdSpec,
    evaluation_digest,
)
from controller.ports import EvalRequest, EvalTarget, VersionSource
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

# Answers "Answer: you said <message>"; with ``leak: true`` in its config it adds an e-mail
# address; it raises on "boom".
AGENT = """\
import os

import mlflow
from mlflow.models import ModelConfig
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse


DEV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "good.yaml")


class Echo(ResponsesAgent):
    def __init__(self):
        self.leak = ModelConfig(development_config=DEV).to_dict().get("leak", False)

    def predict(self, request):
        said = request.input[-1].content
        if said == "boom":
            raise ValueError("the agent blew up")
        text = f"Answer: you said {said}"
        if self.leak:
            text += " (write to alice@example.com)"
        item = self.create_text_output_item(text=text, id="1")
        return ResponsesAgentResponse(output=[item])


mlflow.models.set_model(Echo())
"""

SCORERS = """\
from mlflow.genai.scorers import scorer


def text_of(outputs):
    return outputs["output"][-1]["content"][0]["text"] if outputs else ""


def is_answer(outputs):
    return text_of(outputs).startswith("Answer:")


@scorer
def says_keyword(outputs, expectations):
    return expectations.get("keyword", "") in text_of(outputs)


def picky(inputs, outputs):
    if "second" in str(inputs):
        raise RuntimeError("picky cannot score this row")
    return True


def always(outputs):
    return True
"""


def row(text: str, keyword: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"inputs": {"input": [{"role": "user", "content": text}]}}
    if keyword is not None:
        out["expectations"] = {"keyword": keyword}
    return out


ROWS = (row("first", "first"), row("second", "second"), row("third", "third"), row("fourth"))


def spec(*scorers: ScorerSpec, rows=ROWS, thresholds=(), dataset_name=None) -> EvaluationSpec:  # type: ignore[no-untyped-def]
    digest = evaluation_digest(tuple(rows), dataset_name, tuple(scorers), tuple(thresholds))
    return EvaluationSpec(
        "eval/questions.jsonl", tuple(scorers), tuple(thresholds), tuple(rows), dataset_name, digest
    )


def code(name: str, function: str | None = None) -> ScorerSpec:
    return ScorerSpec(name, code="eval/scorers.py", function=function or name)


PII = ScorerSpec("pii_detection", builtin="PIIDetection", args={"pii_types": ["email"]})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "agents").mkdir()
    (tmp_path / "eval").mkdir()
    (tmp_path / "agents" / "echo.py").write_text(AGENT)
    (tmp_path / "agents" / "good.yaml").write_text("leak: false\n")
    (tmp_path / "agents" / "leaky.yaml").write_text("leak: true\n")
    (tmp_path / "eval" / "scorers.py").write_text(SCORERS)
    return tmp_path


def source(repo: Path, config: str) -> VersionSource:
    return VersionSource(
        agent="echo",
        code_path=str(repo / "agents" / "echo.py"),
        config_path=str(repo / "agents" / config),
        pip_requirements=("mlflow==3.17.2",),
        digest=f"sha256:{config}",
        code_ref="agents/echo.py",
    )


def register(server: MlflowServer, repo: Path, config: str) -> int:
    registry = RestRegistry(server.url)
    registry.create_model("echo", None, {})  # succeeds when it exists
    return registry.log_version("echo", source(repo, config), {}, None)


def version_target(version: int) -> EvalTarget:
    return EvalTarget(label=f"v{version}", model="echo", version=version)


def test_a_good_version_passes_and_a_leaking_one_fails_pii_detection_on_the_record(
    mlflow_server: MlflowServer, client, repo: Path
) -> None:  # type: ignore[no-untyped-def]
    good = register(mlflow_server, repo, "good.yaml")
    leaky = register(mlflow_server, repo, "leaky.yaml")
    the_spec = spec(
        PII,
        code("is_answer"),
        code("says_keyword"),
        thresholds=(ThresholdSpec("pii_detection", min=1.0),),
    )
    evaluator = ChildEvaluator(mlflow_server.url, written_by="agentctl test")
    outcomes = evaluator.evaluate(
        EvalRequest(
            "echo", str(repo), the_spec, (version_target(good), version_target(leaky)),
            experiment="agentctl-evaluations-test", owner="team-a",
        )
    )  # fmt: skip

    assert [o.target.version for o in outcomes] == [good, leaky]
    passed, leaked = (o.figures for o in outcomes)
    assert {n: f.figure for n, f in passed.items()} == {
        "pii_detection": 1.0,
        "is_answer": 1.0,
        "says_keyword": 1.0,  # the row without expectations: "" is in every answer
    }
    assert leaked["pii_detection"].figure == 0.0
    assert leaked["pii_detection"].rows == 4 and leaked["pii_detection"].errors == 0
    assert leaked["is_answer"].figure == 1.0

    for outcome, version in zip(outcomes, (good, leaky), strict=True):
        run = client.get_run(outcome.run_id)
        assert run.data.tags["agentctl.io/agent"] == "echo"
        assert run.data.tags["agentctl.io/owner"] == "team-a"
        assert run.data.tags["agentctl.io/written-by"] == "agentctl test"
        assert run.data.tags["agentctl.io/eval-digest"] == the_spec.digest
        assert run.info.run_name == f"eval-echo-v{version}"
        assert run.data.tags["mlflow.runType"] == "genai_evaluate"
        model_id = client.get_model_version("echo", str(version)).source.removeprefix("models:/")
        metrics = {
            m.key: m.value
            for m in client.get_logged_model(model_id).metrics
            if m.run_id == outcome.run_id
        }
        want = 1.0 if version == good else 0.0
        assert metrics["pii_detection/mean"] == pytest.approx(want)
        assert metrics["is_answer/mean"] == pytest.approx(1.0)
    traces = client.search_traces(
        locations=[client.get_run(outcomes[1].run_id).info.experiment_id],
        run_id=outcomes[1].run_id,
    )
    assert len(traces) == 4


def test_agentctls_figures_are_logged_beside_mlflows_on_the_run_and_the_logged_model(
    mlflow_server: MlflowServer, client, repo: Path
) -> None:  # type: ignore[no-untyped-def]
    version = register(mlflow_server, repo, "good.yaml")
    the_spec = spec(code("picky"), code("always"))
    (outcome,) = ChildEvaluator(mlflow_server.url).evaluate(
        EvalRequest("echo", str(repo), the_spec, (version_target(version),))
    )
    assert outcome.figures["picky"].figure == pytest.approx(3 / 4)

    # MLflow's own mean leaves the row picky raised on out; agentctl's counts it as failed.
    want = {
        "picky/mean": 1.0,
        "agentctl/picky": 0.75,
        "agentctl/picky/errors": 1.0,
        "always/mean": 1.0,
        "agentctl/always": 1.0,
        "agentctl/always/errors": 0.0,
    }
    run_metrics = client.get_run(outcome.run_id).data.metrics
    assert {k: run_metrics.get(k) for k in want} == pytest.approx(want)
    model_id = client.get_model_version("echo", str(version)).source.removeprefix("models:/")
    on_model = {
        m.key: m.value
        for m in client.get_logged_model(model_id).metrics
        if m.run_id == outcome.run_id
    }
    assert {k: on_model.get(k) for k in want} == pytest.approx(want)


def test_a_raising_scorer_and_a_raising_agent_count_as_failed_rows_from_source_unregistered(
    mlflow_server: MlflowServer, client, repo: Path
) -> None:  # type: ignore[no-untyped-def]
    rows = (*ROWS, row("boom"))
    the_spec = spec(code("picky"), code("always"), rows=rows)
    target = EvalTarget(label="current (working tree)", source=source(repo, "good.yaml"))
    (outcome,) = ChildEvaluator(mlflow_server.url).evaluate(
        EvalRequest("echo", str(repo), the_spec, (target,))
    )

    picky, always = outcome.figures["picky"], outcome.figures["always"]
    # picky raised on "second"; the agent raised on "boom": 3 of 5 rows pass
    assert (picky.figure, picky.rows, picky.errors) == (pytest.approx(3 / 5), 5, 2)
    assert "picky cannot score this row" in picky.first_error
    # `always` passes whatever it is given, but not a row the agent gave no answer for
    assert (always.figure, always.errors) == (pytest.approx(4 / 5), 1)
    assert always.first_error == "the agent raised: ValueError: the agent blew up"
    # nothing registered; the run is in the default experiment, without a logged model
    assert client.search_registered_models() == []
    run = client.get_run(outcome.run_id)
    assert run.info.run_name == "eval-echo-source"
    assert client.get_experiment(run.info.experiment_id).name == "agentctl-evaluations"
    assert run.inputs.model_inputs in (None, [])
    # agentctl's figures are on the run all the same
    assert run.data.metrics["agentctl/picky"] == pytest.approx(3 / 5)
    assert run.data.metrics["agentctl/picky/errors"] == 2.0


def test_a_missing_scorer_function_or_dataset_is_an_evaluation_error_naming_it(
    mlflow_server: MlflowServer, client, repo: Path
) -> None:  # type: ignore[no-untyped-def]
    target = EvalTarget(label="current", source=source(repo, "good.yaml"))
    evaluator = ChildEvaluator(mlflow_server.url)
    with pytest.raises(EvaluationError) as info:
        evaluator.evaluate(EvalRequest("echo", str(repo), spec(code("nope")), (target,)))
    assert str(info.value) == (
        "echo: scorer nope (eval/scorers.py:nope): eval/scorers.py defines no 'nope'"
    )
    named = spec(code("always"), rows=(), dataset_name="golden-questions")
    with pytest.raises(EvaluationError) as info:
        evaluator.evaluate(EvalRequest("echo", str(repo), named, (target,)))
    assert str(info.value).startswith("echo: MLflow evaluation dataset 'golden-questions': ")
    assert "not found" in str(info.value)


def test_a_scorer_that_returns_several_feedbacks_is_judged_by_the_names_it_gives(
    mlflow_server: MlflowServer, client, repo: Path
) -> None:  # type: ignore[no-untyped-def]
    with (repo / "eval" / "scorers.py").open("a") as f:
        f.write(
            textwrap.dedent("""
            from mlflow.entities import Feedback

            def multi(outputs):
                return [Feedback(name="has_you", value="you" in text_of(outputs)),
                        Feedback(name="short", value=len(text_of(outputs)) < 10)]
            """)
        )
    the_spec = spec(code("multi"), thresholds=(ThresholdSpec("has_you", min=1.0),))
    target = EvalTarget(label="current", source=source(repo, "good.yaml"))
    (outcome,) = ChildEvaluator(mlflow_server.url).evaluate(
        EvalRequest("echo", str(repo), the_spec, (target,))
    )
    assert set(outcome.figures) == {"multi", "has_you"}
    assert outcome.figures["has_you"].figure == 1.0
    multi = outcome.figures["multi"]
    assert multi.all_failed
    assert multi.first_error == (
        "no row has a result named 'multi' (the results are named: has_you, keyword, short)"
    )


class RefusingJudge(http.server.BaseHTTPRequestHandler):
    """An OpenAI stand-in that refuses every key, quoting it back (as OpenAI's 401 does)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_judge_that_refuses_fails_every_row_and_its_key_is_never_shown(
    mlflow_server: MlflowServer, client, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    key = "sk-agentctl-test-0123456789abcdef"
    judge_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusingJudge)
    threading.Thread(target=judge_server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{judge_server.server_port}/v1")
    judge = ScorerSpec(
        "polite", builtin="Guidelines", args={"guidelines": "Be polite."},
        model="openai:/gpt-4o-mini",
    )  # fmt: skip
    target = EvalTarget(label="current", source=source(repo, "good.yaml"))
    try:
        (outcome,) = ChildEvaluator(mlflow_server.url).evaluate(
            EvalRequest("echo", str(repo), spec(judge, code("always")), (target,))
        )
    finally:
        judge_server.shutdown()
    polite = outcome.figures["polite"]
    assert (polite.figure, polite.errors, polite.rows) == (0.0, 4, 4)
    assert "Incorrect API key provided: (redacted)" in polite.first_error
    assert outcome.figures["always"].figure == 1.0
    assert key not in repr(outcome)


def test_a_tracking_server_that_is_down_is_a_temporary_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.core.errors import TemporaryBackendError
    from tests.support.mlflow_server import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = f"http://user:hunter2@127.0.0.1:{free_port()}"
    target = EvalTarget(label="v1", model="echo", version=1)
    with pytest.raises(TemporaryBackendError) as info:
        ChildEvaluator(down).evaluate(
            EvalRequest("echo", str(repo), spec(code("always")), (target,))
        )
    assert str(info.value).startswith("evaluating echo: the tracking server failed: ")
    assert "hunter2" not in str(info.value)
