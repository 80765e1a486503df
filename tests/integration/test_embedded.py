"""The embedded default: with no MLFLOW_TRACKING_URI, agentctl uses sqlite:///mlflow.db in the
working directory, as `make run` does on a laptop."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.controller import AGENTCTL

pytestmark = pytest.mark.integration


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["AGENTCTL_TARGET"] = "registry"  # serving on the embedded default: test_local_serving
    return subprocess.run(
        [AGENTCTL, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_apply_on_the_embedded_default_then_nothing_to_do(examples: Path, tmp_path: Path) -> None:
    work = tmp_path / "laptop"
    work.mkdir()
    first = run(work, "apply", str(examples))
    assert first.returncode == 0, first.stderr
    assert (work / "mlflow.db").is_file()
    second = run(work, "plan", str(examples), "--detailed-exitcode")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "No changes" in second.stdout

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    aliases = client.get_registered_model("support-bot").aliases
    assert {k: int(v) for k, v in aliases.items()} == {"champion": 1}


def test_plan_does_not_create_the_embedded_database(examples: Path, tmp_path: Path) -> None:
    work = tmp_path / "fresh"
    work.mkdir()
    result = run(work, "plan", str(examples), "--detailed-exitcode")
    assert result.returncode == 2, result.stderr
    assert "Plan: 11 to add" in result.stdout
    assert not (work / "mlflow.db").exists()


def test_an_unsupported_tracking_uri_is_a_clear_error(examples: Path, tmp_path: Path) -> None:
    result = run(tmp_path, "plan", str(examples), "--tracking-uri", "foo://bar")
    assert result.returncode == 1
    assert "cannot use the tracking URI 'foo://bar'" in result.stderr
    assert "Traceback" not in result.stderr


def test_artifacts_of_a_sqlite_registry_go_beside_its_database(
    examples: Path, tmp_path: Path
) -> None:
    """Run from another directory, apply logs into mlartifacts/ beside the database, not into
    ./mlruns of wherever it runs; what a model server loads (models:/NAME/VERSION) is there."""
    db_dir, work = tmp_path / "registry", tmp_path / "elsewhere"
    db_dir.mkdir()
    work.mkdir()
    uri = f"sqlite:///{db_dir / 'mlflow.db'}"
    first = run(work, "apply", str(examples), "--tracking-uri", uri)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in work.iterdir()) == [], "apply wrote into its working directory"
    assert sorted(p.name for p in db_dir.iterdir()) == ["mlartifacts", "mlflow.db"]
    assert sorted(p.name for p in (db_dir / "mlartifacts").iterdir()) == [
        "agentctl-summarizer",
        "agentctl-support-bot",
    ]

    import mlflow

    mlflow.set_tracking_uri(uri)
    got = Path(
        mlflow.artifacts.download_artifacts("models:/support-bot/1", dst_path=str(tmp_path / "dl"))
    )
    assert (got / "MLmodel").is_file()
    location = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("/agentctl/support-bot")
    assert location is not None
    assert Path(location.artifact_location.removeprefix("file://")) == (
        db_dir / "mlartifacts" / "agentctl-support-bot"
    )
