"""`agentctl validate` on spec.evaluation: its mistakes, in the manifest and in the dataset file,
each on its own line with file:line and field, exit 1; a good evaluation validates, and its
scorer file is only parsed (a file that would exit on running is not run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.app.cli import app
from controller.core.evaluation.spec import JUDGES
from tests.support.manifests import GOOD, write_repo

EVALUATION = """\
  evaluation:
    dataset: eval/questions.jsonl
    scorers:
      - builtin: PIIDetection
      - code: eval/scorers.py:is_answer
    thresholds:
      - scorer: pii_detection
        min: 1.0
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_repo(tmp_path, GOOD + EVALUATION)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "questions.jsonl").write_text(
        json.dumps({"inputs": {"question": "hi"}}) + "\n"
    )
    (tmp_path / "eval" / "scorers.py").write_text(
        "import sys\nsys.exit(7)\n\ndef is_answer(outputs):\n    return True\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


def test_a_good_evaluation_validates(repo: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 0, result.output


def test_validate_names_each_evaluation_mistake_and_exits_1(repo: Path) -> None:
    (repo / "bot.yaml").write_text(
        GOOD + EVALUATION.replace("PIIDetection", "PIIDetector").replace(":is_answer", ":is_ans")
    )
    (repo / "eval" / "questions.jsonl").write_text('{"inputs": {"q": 1}}\n{"question": "hi"}\n')
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert lines == [
        "Error: bot.yaml:20:9: spec.evaluation.scorers[0].builtin: unknown built-in scorer "
        "'PIIDetector'; did you mean 'PIIDetection'? (without an LLM: RegexMatch, PIIDetection, "
        "ResponseLength; LLM judges: " + ", ".join(JUDGES) + ")",
        "Error: bot.yaml:21:9: spec.evaluation.scorers[1].code: eval/scorers.py defines no "
        "top-level function 'is_ans'; did you mean 'is_answer'? (it defines: is_answer)",
        "Error: eval/questions.jsonl:2:1: spec.evaluation.dataset: unknown field 'question' in a "
        "row (allowed: inputs, expectations, tags)",
        "Error: eval/questions.jsonl:2:1: spec.evaluation.dataset: a row without inputs (the "
        "agent's arguments): inputs is required",
    ]
