"""Several versions from source against the real MLflow server: a new agent with a champion and a
challenger from two sources gets both in one apply, and a version can be built from a git
revision of the manifests' repository; a second plan is empty."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.adapters.git.history import GitHistory
from controller.core.state.observed import DIGEST_TAG
from controller.engine.loader import load
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


def logged_config(client: Any, server: MlflowServer, version: str, dest: Path) -> Any:
    import mlflow

    mlflow.set_tracking_uri(server.url)
    source = client.get_model_version("summarizer", version).source
    model_dir = Path(mlflow.artifacts.download_artifacts(source, dst_path=str(dest)))
    return yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"][
        "config"
    ]


def test_a_champion_and_a_challenger_from_two_sources_in_one_apply(
    examples: Path, agentctl: Any, client: Any, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    (examples / "support-bot.yaml").unlink()
    (summarizer,) = load(examples)[0].agents
    assert summarizer.source is not None
    stable, current = summarizer.named["stable"].digest, summarizer.source.digest

    plan = agentctl("plan", str(examples))
    assert plan.code == 0, plan.err
    assert 'model version "summarizer" (stable)' in plan.out
    assert 'model version "summarizer" (current)' in plan.out
    assert "agents/summarizer/config-stable.yaml" in plan.out

    applied = agentctl("apply", str(examples))
    assert applied.code == 0, applied.err + applied.out
    versions = {
        v.version: v.tags[DIGEST_TAG] for v in client.search_model_versions("name='summarizer'")
    }
    assert versions == {"1": stable, "2": current}  # in declaration order
    assert client.get_registered_model("summarizer").aliases == {"champion": "1", "challenger": "2"}
    assert logged_config(client, mlflow_server, "1", tmp_path / "m1")["max_words"] == 20
    assert logged_config(client, mlflow_server, "2", tmp_path / "m2")["max_words"] == 30

    again = agentctl("plan", str(examples), "--detailed-exitcode")
    assert again.code == 0, again.err + again.out


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True, capture_output=True,
    )  # fmt: skip


PREVIOUS = """\
  versions:
    - version: previous
      source:
        revision: v1
    - current
  aliases:
    champion: previous
    challenger: current
"""


def test_a_version_from_a_git_revision(
    examples: Path, agentctl: Any, client: Any, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    repo = examples.parent
    shutil.rmtree(repo / ".git")  # a real repository: two commits of the summarizer's config
    (examples / "support-bot.yaml").unlink()
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    config = examples / "agents" / "summarizer" / "config.yaml"
    v1_config = config.read_text()
    config.write_text(v1_config.replace("max_words: 30", "max_words: 12"))
    manifest = examples / "summarizer.yaml"
    text = manifest.read_text()
    start, end = text.index("  versions:"), text.index("  serving:")
    manifest.write_text(text[:start] + PREVIOUS + text[end:])
    git(repo, "commit", "-qam", "v2: fewer words; v1 stays the champion")

    (summarizer,) = load(examples, history=GitHistory())[0].agents
    previous = summarizer.named["previous"]
    plan = agentctl("plan", str(examples), "--format", "json")
    assert plan.code == 0, plan.err
    (create,) = [c for c in json.loads(plan.out)["changes"]
                 if c["address"] == "summarizer.model_version.previous"]  # fmt: skip
    assert "at revision v1" in create["reason"] and create["after"]["commit"] == previous.commit

    applied = agentctl("apply", str(examples))
    assert applied.code == 0, applied.err + applied.out
    version = client.get_model_version("summarizer", "1")
    assert version.tags[DIGEST_TAG] == previous.digest
    assert client.get_registered_model("summarizer").aliases == {"champion": "1", "challenger": "2"}
    assert logged_config(client, mlflow_server, "1", tmp_path / "m1") == yaml.safe_load(v1_config)
    assert logged_config(client, mlflow_server, "2", tmp_path / "m2")["max_words"] == 12
    assert agentctl("plan", str(examples), "--detailed-exitcode").code == 0
