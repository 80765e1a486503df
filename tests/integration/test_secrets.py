"""Credentials are never printed: the real CLI and controller against the real MLflow server,
through a tracking URI with user info (the test server has no auth; the user info still reaches
it in each request), and the password appears in no output of plan (text, markdown, JSON, the
saved plan file), apply, status, a failing apply or status, nor the controller's log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.controller import AGENT, Proc, repo_with, until
from tests.support.mlflow_server import MlflowServer, free_port
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

PASSWORD = "hunter2-Zq9"


def _with_user(url: str) -> str:
    return url.replace("http://", f"http://alice:{PASSWORD}@", 1)


def test_no_output_of_the_cli_holds_the_tracking_uris_password(
    examples: Path, agentctl: Any, proxy: CountingProxy, tmp_path: Path
) -> None:
    env = {"MLFLOW_TRACKING_URI": _with_user(proxy.url)}
    seen: list[str] = []

    def run(*args: str, code: int = 0, uri: str | None = None) -> Any:
        result = agentctl(*args, env={"MLFLOW_TRACKING_URI": uri} if uri else env)
        seen.extend((result.out, result.err))
        assert result.code == code, (args, result.out[-2000:], result.err[-2000:])
        return result

    for fmt in ("text", "markdown", "json"):
        run("plan", str(examples), "-f", fmt)
    saved = tmp_path / "plan.json"
    run("plan", str(examples), "--out", str(saved))
    seen.append(saved.read_text())
    assert json.loads(saved.read_text())["made"]["tracking_uri"] == proxy.url
    assert proxy.writes() == [], "plan must not write"
    applied = run("apply", str(examples))
    assert "Apply complete" in applied.out
    creates = [r for r in proxy.writes() if r.path.endswith("model-versions/create")]
    # support-bot's current, the summarizer's stable and current, and version 1 of the prompt
    # support-system (prompt versions are created on the same endpoint): the user info stopped
    # none
    assert len(creates) == 4, "the user info did not stop the requests"
    run("apply", str(examples), "-f", "json")
    run("status")
    run("status", "-f", "json")
    missing = run("status", "nobody", code=1)
    assert f"the registry at {proxy.url} or served" in missing.err
    dead = _with_user(f"http://127.0.0.1:{free_port()}")
    refused = run("apply", str(examples), code=1, uri=dead)
    assert "did not answer" in refused.err and "alice" not in refused.err
    run("plan", str(examples), "-f", "json", code=1, uri=dead)
    run("status", code=1, uri=dead)

    everything = "\n".join(seen)
    assert PASSWORD not in everything
    assert "alice:" not in everything


def test_json_and_saved_plans_hold_no_secret_looking_values(
    examples: Path, agentctl: Any, tmp_path: Path
) -> None:
    manifest = examples / "summarizer.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "  tags:\n",
            "  tags:\n    api_token: tok-Zq9-secret\n"
            "    runbook: https://bob:pw-Zq9-secret@wiki.example/agents\n",
            1,
        )
    )
    planned = agentctl("plan", str(examples), "-f", "json")
    assert planned.code == 0, planned.err
    assert "Zq9-secret" not in planned.out + planned.err
    assert '"api_token": "(redacted)"' in planned.out
    saved = tmp_path / "plan.json"
    refused = agentctl("plan", str(examples), "--out", str(saved))
    assert refused.code == 1
    assert "look like secrets" in refused.err and "tags.api_token" in refused.err
    assert "Zq9-secret" not in refused.out + refused.err
    assert not saved.exists(), "nothing saved"


@pytest.mark.timeout(240)
def test_the_controllers_log_never_holds_the_password(
    mlflow_server: MlflowServer,
    client: Any,
    controllers: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    manifest = AGENT.format(name="quiet", description="first").split("  source:")[0]
    root = repo_with(tmp_path, manifest)
    live = controllers(
        "--manifests", str(root / "manifests"), "--target", "registry", "--resync", "1",
        env={"MLFLOW_TRACKING_URI": _with_user(mlflow_server.url)}, name="live",
    )  # fmt: skip
    dead = controllers(
        "--manifests", str(root / "manifests"), "--target", "registry", "--resync", "1",
        env={"MLFLOW_TRACKING_URI": _with_user(f"http://127.0.0.1:{free_port()}")}, name="dead",
    )  # fmt: skip
    until("converged", lambda: client.get_registered_model("quiet").description == "first", 60)
    until("resynced", lambda: live.text().count("in sync") >= 2, 60, (live,))
    until("failing", lambda: dead.text().count("did not answer") >= 2, 60, (dead,))
    for ctl in (live, dead):
        assert ctl.stop() == 0
        assert PASSWORD not in ctl.text() and "alice:" not in ctl.text(), ctl.text()[-3000:]
