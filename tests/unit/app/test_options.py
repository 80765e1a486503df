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


def test_an_environment_s_workspace_is_used_unless_mlflow_workspace_is_set(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The Environment's spec.workspace goes to this process (the MLflow client and the children
    read MLFLOW_WORKSPACE), to the model servers' environment and, as a header, to every REST
    request; the user's MLFLOW_WORKSPACE wins, as --tracking-uri over spec.trackingUri; an
    environment without one clears what the one before set (plan --env all)."""
    from dataclasses import replace

    from controller.adapters.mlflow.transport import MlflowHttp
    from controller.app.sources import env_options
    from controller.engine.loader import load
    from tests.support.environment_manifests import DEV, STAGING, write_env_repo

    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    dev = DEV.replace("  name: dev\n", "  name: dev\nspec:\n  workspace: agents\n")
    write_env_repo(
        tmp_path, dev, STAGING.replace("after: dev\n", "after: dev\n  workspace: agents\n")
    )
    desired, diags = load(tmp_path)
    assert not diags.errors
    opts = env_options(replace(desired, environment="dev"), Options(env={}))
    assert opts.env["MLFLOW_WORKSPACE"] == "agents"
    import os

    assert os.environ["MLFLOW_WORKSPACE"] == "agents"
    http = MlflowHttp("http://127.0.0.1:9")
    assert http._http.headers["X-MLFLOW-WORKSPACE"] == "agents"
    mine = env_options(replace(desired, environment="dev"), Options(env={"MLFLOW_WORKSPACE": "me"}))
    assert mine.env["MLFLOW_WORKSPACE"] == "me" == os.environ["MLFLOW_WORKSPACE"]

    write_env_repo(tmp_path, DEV, STAGING)
    plain, _ = load(tmp_path)
    opts = env_options(replace(plain, environment="dev"), Options(env={}))
    assert "MLFLOW_WORKSPACE" not in opts.env and "MLFLOW_WORKSPACE" not in os.environ
    assert "X-MLFLOW-WORKSPACE" not in MlflowHttp("http://127.0.0.1:9")._http.headers
