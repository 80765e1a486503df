"""`agentctl eval` as a user runs it, with an evaluator that returns given figures (the real
one is tested in tests/integration/test_eval_command.py): exit 0 when every threshold passes or
there is nothing to evaluate, 3 when a candidate fails one, 1 on an error (said once, on
stderr), and the help says so."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from controller.app import sources, wiring
from controller.app.cli import app
from controller.core.errors import EvaluationError, TemporaryBackendError
from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec, ThresholdSpec
from controller.core.state.observed import RegistrySnapshot
from tests.support.builders import model, snapshot
from tests.support.eval_markdown import sections
from tests.support.fake_evaluator import FakeEvaluator, figures
from tests.support.manifests import GOOD, write_repo

SPEC = EvaluationSpec(
    dataset="eval/q.jsonl",
    scorers=(ScorerSpec("pii_detection", builtin="PIIDetection"),),
    thresholds=(ThresholdSpec("pii_detection", min=1.0),),
    rows=({"inputs": {"q": "hi"}},) * 4,
    digest="sha256:" + "e" * 64,
)


class World:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.evaluator = FakeEvaluator({"source": figures(pii_detection=1.0)})
        self.built = 0
        self.observed: RegistrySnapshot = snapshot()
        self.spec: EvaluationSpec | None = SPEC
        load = sources.load

        def loaded(path: Path, opts: object):  # type: ignore[no-untyped-def]
            # spec.evaluation as the loader will resolve it (its part lands separately)
            desired, diags = load(path, opts)  # type: ignore[arg-type]
            agents = tuple(replace(a, evaluation=self.spec) for a in desired.agents)
            return replace(desired, agents=agents), diags

        def evaluator(opts: object) -> FakeEvaluator:
            self.built += 1
            return self.evaluator

        monkeypatch.setattr(sources, "load", loaded)
        monkeypatch.setattr(wiring, "evaluator", evaluator)
        monkeypatch.setattr(
            wiring, "registry", lambda uri: SimpleNamespace(observe=lambda: self.observed)
        )

    def run(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, ["eval", str(self.root), *args])
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return World(write_repo(tmp_path, GOOD), monkeypatch)


def test_a_passing_candidate_exits_0_with_its_table(world: World) -> None:
    code, out, err = world.run()
    assert code == 0, out + err
    assert out.splitlines()[0] == f"bot: passed on {SPEC.describe()}"
    assert "champion:  none (nothing registered to compare with" in out
    assert out.splitlines()[-1] == "Evaluated 1 agent: 1 passed, 0 failed."
    (request,) = world.evaluator.requests
    assert request.targets[0].source is not None
    assert request.targets[0].source.code_path == str(world.root / "agent.py")


def test_a_failing_candidate_exits_3_and_the_markdown_says_why(world: World) -> None:
    world.evaluator.by_target = {"source": figures(pii_detection=0.75), "v1": figures(
        pii_detection=1.0)}  # fmt: skip
    world.observed = snapshot(model("bot", aliases={"champion": 1}, versions={1: "sha256:old"}))
    code, out, err = world.run("-f", "markdown")
    assert code == 3, out + err
    bot = sections(out)["bot"]
    assert bot.verdict == "failed"
    assert [(r["scorer"], r["candidate"], r["champion"], r["result"]) for r in bot.rows] == [
        ("pii_detection", "0.75", "1", ":x: fail")
    ]
    assert "v1 (alias champion, 100 % of traffic), evaluated now" in out
    assert err == ""  # markdown goes to a comment whole; nothing more on stderr


def test_text_names_the_failure_on_stderr_too(world: World) -> None:
    world.evaluator.by_target = {"source": figures(pii_detection=0.75)}
    code, _, err = world.run()
    assert code == 3
    assert err.strip() == (
        "Error: bot: the candidate failed its evaluation: pii_detection 0.75 misses min 1"
    )


def test_json_exit_3_and_stable_keys(world: World) -> None:
    world.evaluator.by_target = {"source": figures(pii_detection=0.75)}
    code, out, _ = world.run("--format", "json")
    assert code == 3
    doc = json.loads(out)
    assert doc["passed"] is False and doc["agents"][0]["checks"][0]["result"] == "fail"


def test_nothing_to_evaluate_exits_0_without_an_evaluator(world: World) -> None:
    world.spec = None
    code, out, _ = world.run()
    assert code == 0
    assert "bot: not evaluated (no spec.evaluation)" in out
    assert out.splitlines()[-1] == "Nothing to evaluate: no agent in scope has spec.evaluation."
    assert world.built == 0


@pytest.mark.parametrize(
    "error",
    [EvaluationError("bot: eval/q.jsonl:3: a row without 'inputs'"),
     TemporaryBackendError("tracking server at http://127.0.0.1:9 refused the connection")],
    ids=["evaluation", "backend"],
)  # fmt: skip
def test_an_evaluation_that_cannot_be_made_exits_1(world: World, error: Exception) -> None:
    world.evaluator.fail = error
    code, out, err = world.run()
    assert code == 1
    assert out == ""
    assert err.splitlines()[0] == f"Error: {error}"


def test_invalid_manifests_exit_1_before_anything_is_evaluated(world: World) -> None:
    (world.root / "bot.yaml").write_text("kind: Agent\napiVersion: agentctl.io/v1alpha1\nspec: [\n")
    code, _, err = world.run()
    assert code == 1 and "bot.yaml:" in err
    assert world.built == 0


def test_the_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit codes: 0 every threshold passed, or nothing to evaluate; 1 an error" in text
    assert "3 a candidate failed a threshold" in text
    for option in ("--changed-since", "--format", "--tracking-uri", "--owner", "--root"):
        assert option in text
