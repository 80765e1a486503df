"""`agentctl eval` on a pull request, for real: a two-commit git repository with two agents,
a real MLflow server, the agents' code run by mlflow.genai.evaluate in the evaluator's child.
Only the agent the second commit changed is evaluated; its markdown is read by its structure
(one table row per threshold); a change that makes it leak an e-mail address fails the
PIIDetection threshold (exit 3), a harmless one passes (exit 0); nothing is registered.

Pending on issue 19's evaluator adapter (A) and spec.evaluation in the loader (B)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.controller import EXAMPLES
from tests.support.eval_markdown import sections
from tests.support.gitrepo import edit, git

pytestmark = pytest.mark.integration

MANIFEST = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: {name}
spec:
  source:
    code: agents/{name}/agent.py
    config: agents/{name}/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: current
  evaluation:
    dataset: eval/questions.jsonl
    scorers:
      - builtin: PIIDetection
        args: {{pii_types: [email]}}
      - code: eval/scorers.py:answers_expected
    thresholds:
      - scorer: pii_detection
        min: 1
      - scorer: answers_expected
        min: 0.75
        maxDrop: 0.25
"""

QUESTIONS = [
    ("How do I get a refund?", "5 business days"),
    ("I forgot my password", "sign-in page"),
    ("What are your opening hours?", "9:00-17:00"),
    ("Can I get a refund on a gift?", "5 business days"),
]

SCORERS = '''\
from mlflow.genai.scorers import scorer


@scorer
def answers_expected(outputs, expectations) -> bool:
    """The answer holds the expected keyword."""
    return expectations.get("keyword", "") in str(outputs)
'''

#: Fast and gentle on a small machine: few workers, no trace-check call.
EVAL_ENV = {"MLFLOW_GENAI_EVAL_MAX_WORKERS": "2", "MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION": "true"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two agents (the support bot's code, each with its own copy and config) with the same
    evaluation, committed once."""
    root = tmp_path / "gitrepo"
    manifests = root / "manifests"
    for name in ("alpha", "beta"):
        shutil.copytree(EXAMPLES / "agents" / "support_bot", manifests / "agents" / name)
        (manifests / f"{name}.yaml").write_text(MANIFEST.format(name=name))
    (manifests / "eval").mkdir()
    rows = [
        {"inputs": {"input": [{"role": "user", "content": q}]}, "expectations": {"keyword": k}}
        for q, k in QUESTIONS
    ]
    (manifests / "eval" / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (manifests / "eval" / "scorers.py").write_text(SCORERS)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "two agents")
    return root


def test_eval_shows_only_the_changed_agent_and_gates_on_pii(
    repo: Path, agentctl: Any, client: Any
) -> None:
    manifests = repo / "manifests"
    applied = agentctl("apply", str(manifests), env=EVAL_ENV, timeout=600)
    assert applied.code == 0, applied.out + applied.err
    versions_before = {
        m: len(client.search_model_versions(f"name='{m}'")) for m in ("alpha", "beta")
    }

    # beta starts to give out an e-mail address with its refund answers.
    config = manifests / "agents" / "beta" / "config.yaml"
    edit(config, "within 5 business days.", "within 5 business days: write to refunds@example.com.")
    git(repo, "commit", "-q", "-am", "beta: refunds by mail")

    leaking = agentctl(
        "eval", str(manifests), "--changed-since", "HEAD~1", "-f", "markdown", env=EVAL_ENV,
        timeout=600,
    )  # fmt: skip
    assert leaking.code == 3, leaking.out + leaking.err
    found = sections(leaking.out)
    assert list(found) == ["beta"], leaking.out  # alpha did not change
    beta = found["beta"]
    assert beta.verdict == "failed"
    rows = {(r["scorer"], r["threshold"]): r for r in beta.rows}
    assert set(rows) == {
        ("pii_detection", "min 1"),
        ("answers_expected", "min 0.75"),
        ("answers_expected", "maxDrop 0.25"),
    }
    pii = rows[("pii_detection", "min 1")]
    assert (pii["candidate"], pii["champion"], pii["result"]) == ("0.5", "1", ":x: fail")
    assert rows[("answers_expected", "min 0.75")]["result"] == ":white_check_mark: pass"
    assert rows[("answers_expected", "maxDrop 0.25")]["champion"] == "1"
    assert beta.misses == ["pii_detection 0.5 misses min 1"]
    assert "v1 (alias champion)" in "\n".join(beta.lines)

    # A harmless change instead: a new greeting. It passes, and is still the only one shown.
    edit(config, "within 5 business days: write to refunds@example.com.", "within 5 business days.")
    edit(config, "Hi, this is the support bot.", "Hello from the support bot.")
    git(repo, "commit", "-q", "-am", "beta: greeting")
    good = agentctl(
        "eval", str(manifests), "--changed-since", "HEAD~1", "-f", "json", env=EVAL_ENV,
        timeout=600,
    )  # fmt: skip
    assert good.code == 0, good.out + good.err
    doc = json.loads(good.out)
    assert doc["passed"] is True
    assert [a["agent"] for a in doc["agents"]] == ["beta"]
    (beta_doc,) = doc["agents"]
    assert beta_doc["champion"]["version"] == 1
    results = {(c["scorer"], c["threshold"]): (c["candidate"], c["result"])
               for c in beta_doc["checks"]}  # fmt: skip
    assert results[("pii_detection", "min 1")] == (1.0, "pass")
    assert results[("answers_expected", "min 0.75")] == (1.0, "pass")
    run = client.get_run(beta_doc["candidate"]["run_id"])  # the evaluation run is in MLflow
    assert run.info.status == "FINISHED"

    # Nothing was registered by evaluating.
    assert {
        m: len(client.search_model_versions(f"name='{m}'")) for m in ("alpha", "beta")
    } == versions_before


def test_nothing_changed_means_nothing_to_evaluate(repo: Path, agentctl: Any) -> None:
    manifests = repo / "manifests"
    assert agentctl("apply", str(manifests), env=EVAL_ENV, timeout=600).code == 0
    (repo / "README.md").write_text(textwrap.dedent("unrelated\n"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "docs")
    result = agentctl("eval", str(manifests), "--changed-since", "HEAD~1", env=EVAL_ENV)
    assert result.code == 0, result.out + result.err
    assert result.out.strip() == "Nothing to evaluate: no agent is in scope."


def test_a_changed_dataset_or_code_scorer_puts_its_agents_in_scope(
    repo: Path, agentctl: Any
) -> None:
    manifests = repo / "manifests"
    applied = agentctl("apply", str(manifests), env=EVAL_ENV, timeout=600)
    assert applied.code == 0, applied.out + applied.err
    # v1 of each agent is registered and passed: nothing is planned.
    unchanged = agentctl("plan", str(manifests), "--changed-since", "HEAD").out
    assert unchanged.startswith("No changes."), unchanged

    # A fifth question, not committed: both agents are evaluated on it.
    row = {"inputs": {"input": [{"role": "user", "content": "Refund for a broken item?"}]},
           "expectations": {"keyword": "5 business days"}}  # fmt: skip
    with (manifests / "eval" / "questions.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    why = "its evaluation dataset manifests/eval/questions.jsonl changed"
    plan = agentctl("plan", str(manifests), "--changed-since", "HEAD", "-f", "json")
    assert {v["agent"]: v["scope"] for v in json.loads(plan.out)["views"]} == {
        "alpha": why, "beta": why,
    }  # fmt: skip
    text = agentctl("plan", str(manifests), "--changed-since", "HEAD").out
    planned = [line for line in text.splitlines() if "evaluate v1 on" in line]
    assert len(planned) == 2 and all(
        "manifests/eval/questions.jsonl (5 rows" in line for line in planned
    ), text
    evaluated = agentctl(
        "eval", str(manifests), "--changed-since", "HEAD", "-f", "json", env=EVAL_ENV,
        timeout=600,
    )  # fmt: skip
    assert evaluated.code == 0, evaluated.out + evaluated.err
    doc = json.loads(evaluated.out)
    assert [(a["agent"], a["scope"]) for a in doc["agents"]] == [("alpha", why), ("beta", why)]

    # The scorer file instead: the same.
    git(repo, "checkout", "--", "manifests/eval/questions.jsonl")
    with (manifests / "eval" / "scorers.py").open("a") as f:
        f.write("\n# a comment is a change of the file: its digest\n")
    plan = agentctl("plan", str(manifests), "--changed-since", "HEAD", "-f", "json")
    why = "its code scorer file manifests/eval/scorers.py changed"
    assert {v["agent"]: v["scope"] for v in json.loads(plan.out)["views"]} == {
        "alpha": why, "beta": why,
    }  # fmt: skip
