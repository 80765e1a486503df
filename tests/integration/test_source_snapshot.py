"""What is logged is what was digested: a config edited while apply logs the model (after the
digest check) is not what the registered version holds, against the real MLflow server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.core.state.observed import DIGEST_TAG
from controller.engine.loader import load
from tests.support.controller import one_source
from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

LONG = "First sentence here. " + "Second sentence is much longer than the first one. " * 5
#: What the summarizer keeps of LONG with max_words 30 (the example's config); 5 keeps less.
KEPT = "First sentence here. " + "Second sentence is much longer than the first one. " * 3


def test_a_config_edited_while_logging_is_not_logged_under_the_checked_digest(
    examples: Path,
    agentctl: Any,
    proxy: CountingProxy,
    client: Any,
    mlflow_server: MlflowServer,
    tmp_path: Path,
) -> None:
    import mlflow

    (examples / "support-bot.yaml").unlink()  # one agent of one source: one model logged
    one_source(examples)
    config = examples / "agents" / "summarizer" / "config.yaml"
    original = config.read_text()
    desired, _ = load(examples)
    (summarizer,) = desired.agents
    assert summarizer.source is not None
    digest = summarizer.source.digest

    # The logging process has checked nothing yet when it starts its run; the apply has.
    edited = original.replace("max_words: 30", "max_words: 5")
    proxy.before("runs/create", lambda: config.write_text(edited))
    applied = agentctl("apply", str(examples))
    assert applied.code == 0, applied.err + applied.out
    assert config.read_text() == edited, "the edit happened while apply ran"

    version = client.get_model_version("summarizer", "1")
    assert version.tags[DIGEST_TAG] == digest
    mlflow.set_tracking_uri(mlflow_server.url)
    model_dir = Path(
        mlflow.artifacts.download_artifacts(version.source, dst_path=str(tmp_path / "model"))
    )
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["config"] == yaml.safe_load(original)
    assert (model_dir / "agent.py").is_file(), "the code keeps its name in the model"
    mlflow.tracing.disable()  # answers are the point here, not traces (see test_registry)
    try:
        served = mlflow.pyfunc.load_model("models:/summarizer/1")  # as a model server loads it
        out = served.predict({"input": [{"role": "user", "content": LONG}]})
    finally:
        mlflow.tracing.enable()
    assert out["output"][0]["content"][0]["text"] == "Summary: " + KEPT.strip()  # 30 words

    # The edited file is not registered: plan says so; restored, there is nothing to do.
    plan = agentctl("plan", str(examples), "--format", "json")
    assert any(
        c["address"] == "summarizer.model_version.current" and c["action"] == "create"
        for c in json.loads(plan.out)["changes"]
    ), plan.out
    config.write_text(original)
    again = agentctl("plan", str(examples), "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
