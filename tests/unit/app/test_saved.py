"""Which files ``agentctl apply`` takes for a saved plan: a JSON manifest is still a manifest."""

from __future__ import annotations

import json
from pathlib import Path

from controller.app.saved import is_saved_plan
from controller.app.wiring import registry_identity


def test_a_json_manifest_is_a_manifest_and_a_json_plan_file_is_a_plan(tmp_path: Path) -> None:
    manifest = tmp_path / "bot.json"
    manifest.write_text(json.dumps({"apiVersion": "agentctl.io/v1alpha1", "kind": "Agent"}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"kind": "agentctl-saved-plan", "format_version": "1"}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    folder = tmp_path / "dir.json"
    folder.mkdir()
    yaml = tmp_path / "bot.yaml"
    yaml.write_text("{}")
    assert not is_saved_plan(manifest) and is_saved_plan(plan) and is_saved_plan(broken)
    assert not is_saved_plan(folder) and not is_saved_plan(yaml)
    assert not is_saved_plan(tmp_path / "missing.json")


def test_a_registry_is_named_without_credentials_and_relative_files_made_absolute(
    tmp_path: Path,
) -> None:
    assert registry_identity("http://u:p@127.0.0.1:5000/x") == "http://127.0.0.1:5000/x"
    assert registry_identity("https://mlflow.example") == "https://mlflow.example"
    assert registry_identity("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert registry_identity("sqlite:///mlflow.db").startswith("sqlite:////")
