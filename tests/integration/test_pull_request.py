"""The pull-request path against real git and a real MLflow server: plan --changed-since plans
only what a change touches, the markdown comment has the right shape, validate annotates."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.controller import EXAMPLES
from tests.support.gitrepo import edit, git

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository holding the examples, one commit."""
    root = tmp_path / "gitrepo"
    shutil.copytree(EXAMPLES, root / "manifests")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "agents")
    return root


def line_col(path: Path, line_start: str) -> tuple[int, int]:
    """1-based line and column of the key on the first line that starts with ``line_start``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith(line_start):
            return number, len(line) - len(line.lstrip()) + 1
    raise AssertionError(f"{line_start!r} not in {path}")


def test_only_the_changed_agent_is_planned(repo: Path, agentctl: Any) -> None:
    manifests = repo / "manifests"
    assert agentctl("apply", str(manifests)).code == 0
    edit(manifests / "summarizer.yaml", "percent: 90", "percent: 80")
    edit(manifests / "summarizer.yaml", "percent: 10", "percent: 20")
    git(repo, "commit", "-q", "-am", "summarizer: 80/20")

    # A traffic-only change: nothing for the registry, but the comment shows the move.
    md = agentctl("plan", str(manifests), "--changed-since", "HEAD~1", "-f", "markdown").out
    assert re.findall(r"<summary><b>([^<]+)</b>", md) == ["summarizer"]
    assert re.search(r"^\| alias champion \| 90% \| 80% \|$", md, re.M)
    assert "no registry changes" in md

    edit(manifests / "summarizer.yaml", "team: knowledge", "team: search")
    git(repo, "commit", "-q", "-am", "summarizer: team")

    result = agentctl("plan", str(manifests), "--changed-since", "HEAD~2", "-f", "json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["agents"] == ["summarizer"]
    assert {c["agent"] for c in plan["changes"]} == {"summarizer"}
    (view,) = plan["views"]
    assert view["scope"] == "manifests/summarizer.yaml changed"
    assert view["traffic_before"] == [
        {"target": "alias champion", "percent": 90},
        {"target": "alias challenger", "percent": 10},
    ]
    assert view["traffic_after"][0] == {"target": "alias champion", "percent": 80}

    md = agentctl("plan", str(manifests), "--changed-since", "HEAD~2", "-f", "markdown").out
    assert md.startswith("<!-- agentctl-plan -->")
    summaries = re.findall(r"<summary><b>([^<]+)</b>", md)
    assert summaries == ["summarizer"]
    assert re.search(r"^\| alias champion \| 90% \| 80% \|$", md, re.M)
    assert "**Plan: 0 to add, 1 to change, 0 to destroy.**" in md

    # Without --changed-since every agent is compared (and support-bot has nothing to do).
    full = json.loads(agentctl("plan", str(manifests), "-f", "json").out)
    assert full["agents"] == ["summarizer", "support-bot"]


def test_unregistered_sources_are_planned_even_when_untouched(repo: Path, agentctl: Any) -> None:
    manifests = repo / "manifests"
    edit(manifests / "support-bot.yaml", 'tier: "1"', 'tier: "2"')
    git(repo, "commit", "-q", "-am", "support-bot: tier 2")
    plan = json.loads(
        agentctl("plan", str(manifests), "--changed-since", "HEAD~1", "-f", "json").out
    )
    scopes = {v["agent"]: v["scope"] for v in plan["views"]}
    assert scopes == {
        "summarizer": "its source digest is not registered yet",
        "support-bot": "manifests/support-bot.yaml changed",
    }


def test_uncommitted_and_untracked_changes_count(repo: Path, agentctl: Any) -> None:
    manifests = repo / "manifests"
    assert agentctl("apply", str(manifests)).code == 0
    edit(manifests / "agents" / "summarizer" / "config.yaml", "max_words: 30", "max_words: 40")
    plan = json.loads(agentctl("plan", str(manifests), "--changed-since", "HEAD", "-f", "json").out)
    assert plan["agents"] == ["summarizer"]
    assert plan["views"][0]["scope"] == "manifests/agents/summarizer/config.yaml changed"

    new_agent = (
        (manifests / "support-bot.yaml").read_text().replace("name: support-bot", "name: helper")
    )
    (manifests / "helper.yaml").write_text(
        new_agent.replace("registeredModel: support-bot", "registeredModel: helper")
    )
    plan = json.loads(agentctl("plan", str(manifests), "--changed-since", "HEAD", "-f", "json").out)
    assert plan["agents"] == ["helper", "summarizer"]


def test_an_unknown_ref_is_a_clear_error(repo: Path, agentctl: Any) -> None:
    result = agentctl("plan", str(repo / "manifests"), "--changed-since", "no-such-branch")
    assert result.code == 1
    assert "'no-such-branch' is not a commit" in result.err


def test_validate_annotates_each_error_with_file_line_and_column(repo: Path, agentctl: Any) -> None:
    manifests = repo / "manifests"
    edit(manifests / "summarizer.yaml", "percent: 10", "percent: 15")  # traffic sums to 105
    edit(manifests / "support-bot.yaml", "  tags:\n", "  tagz:\n")  # an unknown field
    # The workspace is above the repository (actions/checkout with `path:`): paths must still
    # be relative to the repository root, which is what GitHub matches against the diff.
    result = agentctl(
        "validate",
        str(manifests),
        env={"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(repo.parent)},
    )
    assert result.code == 1
    found = set(
        re.findall(
            r"^::error file=([^,]+),line=(\d+),col=(\d+),title=[^:]+::(.*)$", result.out, re.M
        )
    )
    where = {(f, int(line), int(col)) for f, line, col, _ in found}
    assert where == {
        ("manifests/summarizer.yaml", *line_col(manifests / "summarizer.yaml", "    traffic:")),
        ("manifests/support-bot.yaml", *line_col(manifests / "support-bot.yaml", "  tagz:")),
    }
    messages = " ".join(m for *_, m in found)
    assert "sum to 105" in messages and "unknown field 'tagz'" in messages
    # Outside GitHub Actions, no workflow commands.
    assert "::error" not in agentctl("validate", str(manifests)).out


def test_a_deleted_manifest_shows_the_prune(repo: Path, agentctl: Any) -> None:
    manifests = repo / "manifests"
    assert agentctl("apply", str(manifests)).code == 0
    git(repo, "rm", "-q", "manifests/summarizer.yaml")
    git(repo, "commit", "-q", "-m", "retire the summarizer")
    warned = agentctl("plan", str(manifests), "--changed-since", "HEAD~1", "-f", "markdown")
    assert "no manifest declares it any more" in warned.out
    assert "**No changes to apply, but 1 agent needs attention:**" in warned.out
    assert "#### Needs attention" in warned.out
    pruned = agentctl(
        "plan", str(manifests), "--changed-since", "HEAD~1", "--prune", "-f", "markdown"
    )
    assert "**Plan: 0 to add, 0 to change, 1 to destroy.**" in pruned.out
    assert re.findall(r"<summary><b>([^<]+)</b>", pruned.out) == ["summarizer"]


def test_symlinks_and_a_new_manifests_directory(repo: Path, agentctl: Any) -> None:
    (repo / "tools").symlink_to("/usr/bin")
    git(repo, "add", "tools")
    git(repo, "commit", "-q", "-m", "a link out of the repository")
    shutil.move(repo / "manifests", repo / "deploy")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "manifests move to deploy/")
    result = agentctl("plan", str(repo / "deploy"), "--changed-since", "HEAD~1", "-f", "json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["agents"] == ["summarizer", "support-bot"]
    # deploy/ did not exist at the base: every agent is new, and had no traffic before.
    assert all(v["traffic_before"] == [] for v in plan["views"])


def test_path_outside_the_root_is_a_clear_error(repo: Path, agentctl: Any) -> None:
    manifests = repo / "manifests"
    result = agentctl(
        "plan", str(manifests), "--root", str(manifests / "agents"), "--changed-since", "HEAD"
    )
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "is outside the root" in result.err


def test_an_empty_tracking_uri_is_refused(repo: Path, agentctl: Any) -> None:
    result = agentctl("plan", str(repo / "manifests"), "--tracking-uri", " ")
    assert result.code == 1 and "tracking URI is empty" in result.err


def test_the_comment_of_a_change_shows_each_environment_and_its_open_gates(
    repo: Path, agentctl: Any
) -> None:
    """With Environment manifests the action plans `--env all`: one comment, per environment,
    what the change would do and what each promotion waits for."""
    from tests.support.environment_manifests import support_environments

    manifests = repo / "manifests"
    for name in ("summarizer.yaml", "serving-defaults.yaml"):
        (manifests / name).unlink()
    (manifests / "environments.yaml").write_text(support_environments(0))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "environments")
    for env in ("dev", "staging"):
        done = agentctl("apply", str(manifests), "--env", env)
        assert done.code == 0, done.out + done.err
    edit(manifests / "agents" / "support_bot" / "agent.py", '"""', '"""A second version. ')
    git(repo, "commit", "-q", "-am", "support-bot: v2")

    # As .github/actions/plan runs it when the manifests declare environments.
    run = agentctl("plan", str(manifests), "--changed-since", "HEAD~1", "--format", "markdown",
                   "--detailed-exitcode", "--target", "registry", "--env", "all")  # fmt: skip
    assert run.code == 2, run.out + run.err
    md = run.out
    assert md.count("<!-- agentctl-plan -->") == 1 and md.startswith("<!-- agentctl-plan -->")
    sections = re.split(r"(?m)^### ", md)
    assert any(s.startswith("agentctl plan") and "dev" in s.splitlines()[0] for s in sections), md
    assert "Promotions into prod" in md, md
    prod = md[md.index("Promotions into prod") :]
    assert "support-bot-staging/1" in prod and "approval" in prod, prod
    assert "agent.py changed (its versions come into prod by promotion)" in prod, prod
