"""plan/eval --changed-since scope: an agent is in scope when a file it is evaluated on changed
(its dataset file, a code scorer's file), as when its manifest or source changed."""

from __future__ import annotations

import json
from pathlib import Path

from controller.core.manifest.desired import Desired
from controller.core.plan.scope import select
from controller.core.state.observed import (
    DIGEST_TAG,
    ObservedModel,
    ObservedVersion,
    RegistrySnapshot,
)
from controller.engine.loader import load
from tests.support.manifests import GOOD, write_repo

EVALUATION = """\
  evaluation:
    dataset: eval/questions.jsonl
    scorers:
      - builtin: PIIDetection
      - code: eval/scorers.py:is_answer
      - code: eval/more.py:is_short
"""


def repo(root: Path, manifest: str = GOOD + EVALUATION) -> Desired:
    write_repo(root, manifest)
    (root / "eval").mkdir()
    row = {"inputs": {"question": "What is 2+2?"}}
    (root / "eval" / "questions.jsonl").write_text(json.dumps(row) + "\n")
    (root / "eval" / "scorers.py").write_text("def is_answer(outputs):\n    return True\n")
    (root / "eval" / "more.py").write_text("def is_short(outputs):\n    return True\n")
    return load(root)[0]


def registered(desired: Desired) -> RegistrySnapshot:
    """The registry with each agent's current source registered (as v1)."""
    models = {}
    for agent in desired.agents:
        (source,) = agent.sources
        tags = {DIGEST_TAG: source.digest}
        models[agent.model_name] = ObservedModel(
            agent.model_name, versions={1: ObservedVersion(1, tags=tags)}
        )
    return RegistrySnapshot(models)


def test_an_agent_is_in_scope_when_its_dataset_or_a_code_scorer_file_changed(
    tmp_path: Path,
) -> None:
    desired = repo(tmp_path)
    observed = registered(desired)
    assert select(desired, {"README.md"}, observed) == {}  # registered, nothing of it changed
    assert select(desired, {"eval/questions.jsonl"}, observed) == {
        "bot": "its evaluation dataset eval/questions.jsonl changed"
    }
    assert select(desired, {"eval/scorers.py"}, observed) == {
        "bot": "its code scorer file eval/scorers.py changed"
    }
    assert select(
        desired, {"eval/more.py", "eval/scorers.py", "eval/questions.jsonl"}, observed
    ) == {
        "bot": "its evaluation dataset eval/questions.jsonl and its code scorer files "
        "eval/scorers.py, eval/more.py changed"
    }
    # the manifest's own change says so first
    assert select(desired, {"bot.yaml", "eval/scorers.py"}, observed) == {"bot": "bot.yaml changed"}


def test_an_mlflow_dataset_is_no_file_of_the_repository(tmp_path: Path) -> None:
    desired = repo(
        tmp_path,
        GOOD + EVALUATION.replace("dataset: eval/questions.jsonl", "dataset: {mlflow: golden}"),
    )
    (agent,) = desired.agents
    assert agent.evaluation is not None and agent.evaluation.dataset_file is None
    assert select(desired, {"golden", agent.evaluation.dataset}, registered(desired)) == {}
