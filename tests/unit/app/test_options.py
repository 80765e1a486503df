"""Options are declared once and each command takes the ones it names, with their flags,
environment variables and defaults, as one Options value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from controller.app.cli import app
from controller.app.options import Options, Target, takes


def params(command: str) -> dict[str, Any]:
    group: Any = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params if p.name}


def test_shared_options_keep_their_flags_env_vars_and_per_command_defaults() -> None:
    for command in ("plan", "apply", "status", "controller", "promote", "up"):
        assert params(command)["tracking_uri"].envvar == "MLFLOW_TRACKING_URI"
    assert params("apply")["ready_timeout"].default == 120.0
    assert params("controller")["ready_timeout"].default == 0.0
    assert params("controller")["target"].default == Target.kubernetes
    assert params("plan")["target"].default == Target.local
    assert "--namespace" in params("plan")["namespace"].opts
    assert "parallelism" not in params("plan") and "parallelism" in params("apply")


def test_a_command_receives_its_options_as_one_value(tmp_path: Path) -> None:
    seen: list[Options] = []
    tiny = typer.Typer()

    @tiny.command()
    @takes("tracking_uri", "owner", owner="team-a")
    def show(name: str, *, opts: Options) -> None:
        seen.append(opts)

    result = CliRunner().invoke(tiny, ["x", "--tracking-uri", "http://127.0.0.1:1"], env={})
    assert result.exit_code == 0, result.output
    assert seen[0].tracking_uri == "http://127.0.0.1:1" and seen[0].owner == "team-a"
    assert seen[0].target is Target.local  # not taken: its default
