"""The GitHub Action and example workflows pass actionlint (built from the Go module proxy by
hack/tools.sh), and the pre-commit hooks file passes pre-commit's own schema."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.fixture(scope="module")
def actionlint() -> str:
    done = subprocess.run(
        [str(REPO / "hack" / "tools.sh"), "actionlint"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def lint(actionlint: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    files = sorted(str(p) for p in (cwd / ".github" / "workflows").glob("*.yml"))
    return subprocess.run(
        [actionlint, "-color=false", *files], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_the_workflows_are_the_plan_and_apply_examples() -> None:
    names = [p.name for p in WORKFLOWS]
    assert names == ["agentctl-apply.yml", "agentctl-plan.yml"]
    assert (
        "uses: ./.github/actions/plan" in (REPO / ".github/workflows/agentctl-plan.yml").read_text()
    )


def test_workflows_and_the_action_pass_actionlint(actionlint: str) -> None:
    result = lint(actionlint, REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_wrong_input_to_the_action(actionlint: str, tmp_path: Path) -> None:
    """A negative control: the lint above would fail on a broken workflow."""
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    plan = tmp_path / ".github" / "workflows" / "agentctl-plan.yml"
    plan.write_text(plan.read_text().replace("tracking-uri:", "trackin-uri:"))
    result = lint(actionlint, tmp_path)
    assert result.returncode == 1
    assert "trackin-uri" in result.stdout and "tracking-uri" in result.stdout


def test_pre_commit_hooks_file_is_valid() -> None:
    from pre_commit.clientlib import load_manifest

    (hook,) = load_manifest(str(REPO / ".pre-commit-hooks.yaml"))
    assert hook["id"] == "agentctl-validate"
    assert hook["entry"].split()[0] == "agentctl" and hook["pass_filenames"] is False
    entry = subprocess.run(
        [shutil.which("agentctl") or str(Path(__import__("sys").executable).with_name("agentctl")),
         *hook["entry"].split()[1:], *hook["args"]],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert entry.returncode == 0, entry.stderr
