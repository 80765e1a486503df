"""``apply``'s last word covers the whole run: with --wait, the summary (and a failure's count)
sums every round; with --format json, a failed apply is a JSON document on stdout too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from controller.app import cli
from controller.core.errors import ApplyFailed, BackendError
from controller.core.plan.changes import Plan
from controller.core.plan.changeset import ChangeSet, Entry, Verb
from controller.engine.reconcile import Result

ROUND_1 = ChangeSet((
    Entry("echo.model_version.current", Verb.CREATED, "version 2"),
    Entry("echo.rollout", Verb.CONFIGURED, "step 1/2"),
    Entry("echo.traffic", Verb.CONFIGURED, "80/20"),
))  # fmt: skip
ROUND_2 = ChangeSet((
    Entry("echo.alias.champion", Verb.CONFIGURED, "2"),
    Entry("echo.served_version.1", Verb.DELETED, "1"),
))  # fmt: skip


def rounds(monkeypatch: pytest.MonkeyPatch, *outcomes: Result | BaseException) -> None:
    """Each reconcile of the CLI's session returns (or raises) the next outcome, as a real
    session would round after round; the CLI's own code runs unchanged."""
    left: Iterator[Result | BaseException] = iter(outcomes)

    def reconcile(self: Any, **_: Any) -> Result:
        out = next(left)
        if isinstance(out, BaseException):
            raise out
        return out

    monkeypatch.setattr(cli._Session, "reconcile", reconcile)
    monkeypatch.setattr(cli.time, "sleep", lambda _: None)


def run(tmp_path: Path, *extra: str) -> Any:
    (tmp_path / "m.yaml").write_text("")
    args = ["apply", str(tmp_path / "m.yaml"), "--target", "registry", "--wait", *extra]
    return CliRunner().invoke(cli.app, args)


def test_the_wait_summary_counts_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds(
        monkeypatch,
        Result(Plan("agentctl"), ROUND_1, requeue_after=1.0),
        Result(Plan("agentctl"), ROUND_2, requeue_after=None),
    )
    result = run(tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "Apply complete: 1 created, 3 configured, 1 deleted."


def test_the_wait_summary_in_json_has_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds(
        monkeypatch,
        Result(Plan("agentctl"), ROUND_1, requeue_after=1.0),
        Result(Plan("agentctl"), ROUND_2, requeue_after=None),
    )
    result = run(tmp_path, "--format", "json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)["changeset"]["entries"]
    assert [e["address"] for e in entries] == [e.address for e in ROUND_1.entries + ROUND_2.entries]


def failing_second_round(monkeypatch: pytest.MonkeyPatch) -> None:
    done = ChangeSet((Entry("echo.alias.champion", Verb.CONFIGURED, "2"),))
    boom = BackendError("connection refused")
    failure = ApplyFailed("echo.served_version.1: connection refused", done, boom,
                          "echo.served_version.1")  # fmt: skip
    rounds(monkeypatch, Result(Plan("agentctl"), ROUND_1, requeue_after=1.0), failure)


def test_a_failure_under_wait_counts_the_earlier_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_second_round(monkeypatch)
    result = run(tmp_path)
    assert result.exit_code == 1
    assert ("Apply failed after 4 changes: echo.served_version.1: connection refused"
            in result.stderr)  # fmt: skip
    assert "  echo.model_version.current: created (version 2)" in result.stderr
    assert "Apply complete" not in result.output


def test_a_failed_apply_in_json_prints_a_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_second_round(monkeypatch)
    result = run(tmp_path, "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["applied"] is False
    assert doc["error"] == "echo.served_version.1: connection refused"
    assert doc["failed_change"] == "echo.served_version.1"
    assert len(doc["changeset"]["entries"]) == 4
