"""The agent's code never runs in agentctl's own process, on the embedded sqlite default too: an
agent that exits, is interrupted or is killed while it is logged fails the apply with the
logging process's exit status, leaves no live run or logged model, and releases the lock."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support.controller import AGENTCTL

pytestmark = pytest.mark.integration

MANIFEST = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata: {name: x}
spec:
  source: {code: agents/x.py, pipRequirements: [mlflow==3.17.2]}
  versions: [current]
"""

GOOD = """\
import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse


class Echo(ResponsesAgent):
    def predict(self, request):
        item = self.create_text_output_item(text="ok", id="1")
        return ResponsesAgentResponse(output=[item])


mlflow.models.set_model(Echo())
"""


def apply(work: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["AGENTCTL_TARGET"] = "registry"
    return subprocess.run(
        [AGENTCTL, "apply", "m", "--lock-timeout", "5"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def repo(tmp_path: Path, code: str) -> Path:
    work = tmp_path / "repo"
    (work / "m" / "agents").mkdir(parents=True)
    (work / "m" / "x.yaml").write_text(MANIFEST)
    (work / "m" / "agents" / "x.py").write_text(textwrap.dedent(code))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    return work


def records(work: Path) -> tuple[list[object], list[object]]:
    """The live runs and logged models of the registry in ``work``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids)), list(client.search_logged_models(ids))


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("import os\nos._exit(0)\n", "exited 0 without an answer"),
        ("import sys\nsys.exit('agent gave up')\n", "exited 1: agent gave up"),
        ("raise KeyboardInterrupt\n", "was killed by SIGINT: "),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "was killed by SIGKILL"),
    ],
    ids=["os._exit(0)", "sys.exit", "KeyboardInterrupt", "SIGKILL"],
)
def test_an_agent_that_ends_its_process_fails_the_apply_and_leaves_nothing_live(
    tmp_path: Path, code: str, status: str
) -> None:
    work = repo(tmp_path, code)
    failed = apply(work)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert (
        "Apply failed after 1 change: x.model_version.current: logging m/agents/x.py: "
        f"the logging process {status}"
    ) in failed.stderr, failed.stderr
    assert "Apply complete" not in failed.stdout + failed.stderr
    assert "/agentctl-source-" not in failed.stderr  # the snapshot's paths are not shown
    assert records(work) == ([], [])

    # The lock was released (a held one would time out after 5 s) and the next apply logs.
    (work / "m" / "agents" / "x.py").write_text(GOOD)
    fixed = apply(work)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "Apply complete" in fixed.stdout


def test_a_syntax_error_names_the_agent_file_and_line_as_the_repository_names_it(
    tmp_path: Path,
) -> None:
    work = repo(tmp_path, "import mlflow\n\ndef f(:\n    pass\n")
    failed = apply(work)
    assert failed.returncode == 1
    assert (
        "x.model_version.current: m/agents/x.py:3: in <module>: SyntaxError: invalid syntax "
        "(while logging m/agents/x.py)"
    ) in failed.stderr, failed.stderr
    assert records(work) == ([], [])


def test_runs_and_logged_models_say_which_agentctl_wrote_them(tmp_path: Path) -> None:
    from controller import __version__

    work = repo(tmp_path, GOOD)
    done = apply(work)
    assert done.returncode == 0, done.stderr
    runs, models = records(work)
    assert len(runs) == 1 and len(models) == 1
    written = f"agentctl {__version__}"
    assert runs[0].data.tags["agentctl.io/written-by"] == written  # type: ignore[attr-defined]
    assert models[0].tags["agentctl.io/written-by"] == written  # type: ignore[attr-defined]
