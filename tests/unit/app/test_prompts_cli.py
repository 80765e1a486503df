"""`agentctl validate` on Prompt documents: what it validated, prompts included (text and JSON);
a template's mistakes each on its own line with the template's file:line:column and the field,
exit 1; a warning does not fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.app.cli import app
from tests.support.prompt_manifests import (
    BOUND_AGENT,
    CHAT_PROMPT,
    CHAT_TEMPLATE,
    write_prompt_repo,
)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_prompt_repo(tmp_path, agent=BOUND_AGENT)
    (tmp_path / "prompts" / "triage.yaml").write_text(CHAT_TEMPLATE)
    (tmp_path / "prompts" / "triage-prompt.yaml").write_text(CHAT_PROMPT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


def test_validate_counts_agents_and_prompts(repo: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Success: 1 agent(s), 2 prompt(s) valid.\n"
    result = CliRunner().invoke(app, ["validate", ".", "--format", "json"])
    doc = json.loads(result.stdout)
    assert (doc["agents"], doc["prompts"]) == (["bot"], ["support-system", "triage"])


def test_validate_names_each_template_mistake_and_exits_1(repo: Path) -> None:
    (repo / "prompts" / "support-system.txt").write_text("Hi {{ custmer }}\n{{ question\n")
    (repo / "prompts" / "prompt.yaml").write_text(
        (repo / "prompts" / "prompt.yaml").read_text().replace("question]", "question, tone]")
    )
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert lines == [
        "Error: prompts/support-system.txt:1:4: spec.template: unknown variable 'custmer' in the "
        "template; declared: customer, question, tone; did you mean 'customer'?",
        "Error: prompts/support-system.txt:2:1: spec.template: does not parse: '{{' without its "
        "closing '}}'",
    ]
    assert "Success" not in result.stdout


def test_an_unused_variable_warns_and_validates(repo: Path) -> None:
    (repo / "prompts" / "prompt.yaml").write_text(
        (repo / "prompts" / "prompt.yaml").read_text().replace("question]", "question, tone]")
    )
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 0, result.output
    assert (
        "Warning: prompts/prompt.yaml:7:35: spec.variables[2]: variable 'tone' is declared but "
        "the template never uses it"
    ) in result.stderr
