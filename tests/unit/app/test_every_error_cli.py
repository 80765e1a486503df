"""The commands that load manifests report every problem of every file in one run, sorted by
file and line, and exit 1 before any server is asked: as text, as JSON and as GitHub
annotations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.app.cli import app
from tests.support.manifests import MANY_ERRORS_REPORTED, write_many_errors

#: Nothing listens here; a command that asked the registry would fail differently.
NOWHERE = "http://127.0.0.1:9"


def expected_lines() -> list[str]:
    return [
        f"{file}:{line}:{column}: {field}: "
        for file, line, column, field, _ in MANY_ERRORS_REPORTED
    ]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error: ")]


def assert_every_error_in_order(lines: list[str]) -> None:
    assert len(lines) == len(MANY_ERRORS_REPORTED), "\n".join(lines)
    for line, start, (*_, fragments) in zip(
        lines, expected_lines(), MANY_ERRORS_REPORTED, strict=True
    ):
        assert line.removeprefix("Error: ").startswith(start), line
        assert all(f in line for f in fragments), line


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_many_errors(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "."],
        ["plan", ".", "--tracking-uri", NOWHERE],
        ["apply", ".", "--tracking-uri", NOWHERE],
        ["eval", ".", "--tracking-uri", NOWHERE],
        ["up", ".", "--detach", "--tracking-uri", NOWHERE, "--run-dir", "run"],
    ],
    ids=lambda a: a[0],
)
def test_every_error_of_every_file_and_exit_1(broken: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert_every_error_in_order(error_lines(result.stderr))
    assert not (broken / "mlflow.db").exists() and not (broken / "run").exists()


def test_every_error_as_json(broken: Path) -> None:
    result = CliRunner().invoke(app, ["validate", ".", "--format", "json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    got = [(d["file"], d["line"], d["column"], d["field"]) for d in payload["diagnostics"]]
    assert got == [r[:4] for r in MANY_ERRORS_REPORTED]
    assert {d["severity"] for d in payload["diagnostics"]} == {"error"}


def test_every_error_as_a_github_annotation(broken: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 1
    commands = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    where = [re.match(r"::error file=([^,]+),line=(\d+),col=(\d+)", c) for c in commands]
    assert [(m.group(1), int(m.group(2)), int(m.group(3))) for m in where if m] == [
        r[:3] for r in MANY_ERRORS_REPORTED
    ]


def test_a_yaml_error_and_the_next_file_s_error_are_two_lines_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyYAML says "token found": not a credential, and the next diagnostic stays its own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    (tmp_path / ".git").mkdir()
    (tmp_path / "m").mkdir()
    head = "apiVersion: agentctl.io/v1alpha1\nkind: Agent\n"
    (tmp_path / "m/b.yaml").write_text(f"{head}metadata: {{name: b}}\nspec: {{tags: {{a: b}}}}\n"
                                       "---\n\tbad: tab\n")  # fmt: skip
    (tmp_path / "m/c.yaml").write_text(f"{head}metadata: {{name: c}}\nspec: {{tags: {{a: 1}}}}\n")
    result = CliRunner().invoke(app, ["validate", "m"])
    assert result.exit_code == 1
    lines = error_lines(result.stderr)
    assert [line.split(": ", 2)[1] for line in lines] == ["m/b.yaml:6:1", "m/c.yaml:4:15"], lines
    assert "token found character" in lines[0] and "(redacted)" not in result.stderr
    as_json = CliRunner().invoke(app, ["validate", "m", "--format", "json"])
    messages = [d["message"] for d in json.loads(as_json.stdout)["diagnostics"]]
    assert len(messages) == 2 and "token found character" in messages[0]
