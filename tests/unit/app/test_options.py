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
    request, over the shell's MLFLOW_WORKSPACE (as spec.trackingUri over MLFLOW_TRACKING_URI);
    an environment without one clears what the one before set (plan --env all)."""
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
    assert mine.env["MLFLOW_WORKSPACE"] == "agents" == os.environ["MLFLOW_WORKSPACE"]

    write_env_repo(tmp_path, DEV, STAGING)
    plain, _ = load(tmp_path)
    shell = env_options(replace(plain, environment="dev"), Options(env={"MLFLOW_WORKSPACE": "me"}))
    assert shell.env["MLFLOW_WORKSPACE"] == "me", "an environment without one: the shell's"
    opts = env_options(replace(plain, environment="dev"), Options(env={}))
    assert "MLFLOW_WORKSPACE" not in opts.env and "MLFLOW_WORKSPACE" not in os.environ
    assert "X-MLFLOW-WORKSPACE" not in MlflowHttp("http://127.0.0.1:9")._http.headers


def test_an_environment_before_in_another_registry_is_read_there(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """env_options says where the environment before lives when it is not where this one does
    (another spec.trackingUri or spec.workspace; one that names neither is where the command
    points); approvals and history read it there too."""
    from dataclasses import replace

    from controller.app.sources import env_options, location_of
    from controller.engine.loader import load
    from tests.support.environment_manifests import DEV, STAGING, write_env_repo

    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    cmd = Options(tracking_uri="http://127.0.0.1:5000", env={})
    write_env_repo(tmp_path, DEV, STAGING)
    same, _ = load(tmp_path)
    assert env_options(replace(same, environment="staging"), cmd).upstream is None
    slash = STAGING.replace("after: dev\n", "after: dev\n  trackingUri: http://127.0.0.1:5000/\n")
    write_env_repo(tmp_path, DEV, slash)
    spelled, _ = load(tmp_path)
    assert env_options(replace(spelled, environment="staging"), cmd).upstream is None, "one server"
    elsewhere = STAGING.replace(
        "after: dev\n", "after: dev\n  trackingUri: http://127.0.0.1:5001\n"
    )
    write_env_repo(tmp_path, DEV, elsewhere)
    desired, diags = load(tmp_path)
    assert not diags.errors, [str(d) for d in diags.errors]
    opts = env_options(replace(desired, environment="staging"), cmd)
    assert opts.tracking_uri == "http://127.0.0.1:5001"
    assert opts.upstream == ("http://127.0.0.1:5000", None)
    assert location_of(desired, "staging", cmd) == ("http://127.0.0.1:5001", None)
    in_workspace = STAGING.replace("after: dev\n", "after: dev\n  workspace: qa\n")
    write_env_repo(tmp_path, DEV, in_workspace)
    desired, _ = load(tmp_path)
    opts = env_options(replace(desired, environment="staging"), cmd)
    assert opts.upstream == ("http://127.0.0.1:5000", None)
    assert env_options(replace(desired, environment="dev"), cmd).upstream is None


def test_a_tracking_uri_flag_beats_the_manifest_which_beats_mlflow_tracking_uri(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from controller.app import sources

    seen: list[Options] = []
    monkeypatch.setattr(sources, "env_options", lambda d, o: seen.append(o) or o)
    from tests.support.environment_manifests import DEV, STAGING, write_env_repo

    write_env_repo(tmp_path, DEV, STAGING)
    runner = CliRunner()
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9/"}
    runner.invoke(app, ["plan", str(tmp_path), "--env", "dev"], env=env)
    runner.invoke(app, ["plan", str(tmp_path), "--env", "dev", "--tracking-uri",
                        "http://127.0.0.1:8/"], env=env)  # fmt: skip
    by_env, by_flag = seen[0], seen[1]
    assert "tracking_uri" in by_env.given and "tracking_uri" in by_env.from_env
    assert "tracking_uri" in by_flag.given and "tracking_uri" not in by_flag.from_env


def test_each_environment_is_served_locally_in_a_directory_and_on_a_port_of_its_own(
    tmp_path: Path,
) -> None:
    """Local serving of dev, staging and prod side by side: each its own run directory (its
    router and model servers) and router port, in promotion order, unless --run-dir or
    --router-port is given; `down --env` and `status --env` find the same directory."""
    from dataclasses import replace

    from controller.app.sources import env_options, env_run_dir
    from controller.engine.loader import load
    from tests.support.environment_manifests import DEV, PROD, STAGING, write_env_repo

    write_env_repo(tmp_path, DEV, STAGING, PROD)
    desired, _ = load(tmp_path)
    base = Options(run_dir=Path("/r"), router_port=8765, env={})
    seen = {
        name: env_options(replace(desired, environment=name), replace(base, environment=name))
        for name in ("dev", "staging", "prod")
    }
    assert {n: (str(o.run_dir), o.router_port) for n, o in seen.items()} == {
        "dev": ("/r/environments/dev", 8765),
        "staging": ("/r/environments/staging", 8766),
        "prod": ("/r/environments/prod", 8767),
    }
    again = env_options(replace(desired, environment="prod"), seen["prod"])
    assert (again.run_dir, again.router_port) == (seen["prod"].run_dir, 8767), "applied once"
    assert seen["dev"].before_run_dir is None
    assert str(again.before_run_dir) == "/r/environments/staging", "router gates read staging's"
    assert env_run_dir(replace(base, environment="prod")).run_dir == seen["prod"].run_dir
    flagged = replace(base, environment="prod", given=frozenset({"run_dir", "router_port"}))
    mine = env_options(replace(desired, environment="prod"), flagged)
    assert (str(mine.run_dir), mine.router_port) == ("/r", 8765)
    by_env_var = replace(flagged, from_env=frozenset({"run_dir"}))
    assert str(env_run_dir(by_env_var).run_dir) == "/r/environments/prod"
    any_port = env_options(replace(desired, environment="prod"), replace(base, router_port=0))
    assert any_port.router_port == 0
