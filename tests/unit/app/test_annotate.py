"""Inside GitHub Actions, each diagnostic is also a workflow command that names its file: relative
to the git work tree that holds it, else as given (relative to the working directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.app.output import annotate
from controller.core.diagnostics import Diagnostic, Location, Severity


def _files(out: str) -> list[str]:
    return re.findall(r"^::error file=([^,]+),line=3,col=5,", out, re.M)


@pytest.fixture
def actions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")


def _error(file: Path | str) -> Diagnostic:
    return Diagnostic(Severity.ERROR, "bad", Location(str(file), 3, 5), field="spec.x")


@pytest.mark.usefixtures("actions")
def test_outside_a_git_work_tree_the_file_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not any((p / ".git").exists() for p in (tmp_path, *tmp_path.parents))
    manifest = tmp_path / "manifests" / "bot.yaml"
    manifest.parent.mkdir()
    manifest.write_text("x: 1\n")
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path.parent / "other.yaml"  # not under the working directory: as given
    annotate([_error(manifest), _error("manifests/bot.yaml"), _error(elsewhere)])
    assert _files(capsys.readouterr().out) == [
        "manifests/bot.yaml",
        "manifests/bot.yaml",
        str(elsewhere).replace(":", "%3A").replace(",", "%2C"),
    ]


@pytest.mark.usefixtures("actions")
def test_in_a_git_work_tree_the_file_is_relative_to_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "manifests").mkdir()
    manifest = tmp_path / "repo" / "manifests" / "bot.yaml"
    manifest.write_text("x: 1\n")
    monkeypatch.chdir(tmp_path / "repo" / "manifests")
    annotate([_error(manifest), _error("bot.yaml")])
    assert _files(capsys.readouterr().out) == ["manifests/bot.yaml", "manifests/bot.yaml"]


def test_outside_github_actions_nothing_is_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    annotate([_error("bot.yaml")])
    assert capsys.readouterr().out == ""
