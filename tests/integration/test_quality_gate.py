"""Quality gates end to end: the example support bot with its evaluation (a dataset of
questions and what each answer must mention, PIIDetection and a code scorer), applied by the
installed `agentctl` to the real MLflow server with real model servers behind the router.

A good version passes and takes its alias and traffic; a version whose config answers wrongly
(expectations missed) and one that leaks an e-mail address (PIIDetection) are each evaluated
after they are registered and stopped before any alias or traffic moves to them: apply exits 1
naming the agent, the scorer, the figure and the threshold; the evaluation run, its metrics on
the version's logged model and the verdict tags are in MLflow; a second apply evaluates nothing
again. A version that passes afterwards moves on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.local import LOCAL

pytestmark = pytest.mark.integration

MANIFEST = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: support-bot
spec:
  source:
    code: agents/support_bot/agent.py
    config: agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: current
  serving:
    traffic:
      - alias: champion
        percent: 100
  evaluation:
    dataset: agents/support_bot/eval/questions.jsonl
    scorers:
      - builtin: PIIDetection
      - code: agents/support_bot/eval/scorers.py:mentions_expected
    thresholds:
      - scorer: pii_detection
        min: 1.0
      - scorer: mentions_expected
        min: 0.9
"""


def eval_runs(client: Any) -> list[Any]:
    """Every evaluation run agentctl made, in every experiment."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string="tags.`mlflow.runType` = 'genai_evaluate'")


def test_versions_that_answer_wrongly_or_leak_are_stopped_before_traffic(
    examples: Path, agentctl: Any, client: Any, tmp_path: Path
) -> None:
    for f in examples.glob("*.yaml"):
        f.unlink()
    (examples / "support-bot.yaml").write_text(MANIFEST)
    config = examples / "agents" / "support_bot" / "config.yaml"
    good = config.read_text()
    run_dir = tmp_path / ".agentctl"

    def weights() -> dict[int, int]:
        state = json.loads((run_dir / "state.json").read_text())
        agent = state["agents"].get("support-bot") or {}
        return {int(v): int(p) for v, p in (agent.get("weights") or {}).items()}

    def champion() -> int:
        return int(client.get_model_version_by_alias("support-bot", "champion").version)

    def tags(version: int) -> dict[str, str]:
        return dict(client.get_model_version("support-bot", str(version)).tags)

    earlier = len(eval_runs(client))  # the suite's server keeps other tests' evaluation runs
    try:
        planned = agentctl("plan", str(examples), env=LOCAL)
        assert planned.code == 0, planned.err
        assert (
            "evaluate current (known after apply) on manifests/agents/support_bot/eval/"
            "questions.jsonl "
            "(5 rows, pii_detection, mentions_expected)" in planned.out
        ), planned.out

        first = agentctl("apply", str(examples), env=LOCAL)
        assert first.code == 0, first.out + first.err
        assert "support-bot.evaluation.current: passed" in first.out
        assert champion() == 1 and weights() == {1: 100}
        assert tags(1)["agentctl.io/eval-verdict"] == "passed"
        assert len(eval_runs(client)) == earlier + 1

        # Answers that miss what the dataset expects: 2 of 5 rows (the refund questions).
        config.write_text(good.replace("Refunds are issued within 5 business days.",
                                       "Refunds are handled by our billing team."))  # fmt: skip
        wrong = agentctl("apply", str(examples), env=LOCAL)
        assert wrong.code == 1, wrong.out + wrong.err
        assert "support-bot: version 2 failed its evaluation" in wrong.err
        assert "mentions_expected 0.6 misses min 0.9" in wrong.err, wrong.err
        assert champion() == 1 and weights() == {1: 100}
        v2 = tags(2)
        assert v2["agentctl.io/eval-verdict"] == "failed"
        run = client.get_run(v2["agentctl.io/eval-run"])
        assert run.data.metrics["mentions_expected/mean"] == pytest.approx(0.6)
        model_id = client.get_model_version("support-bot", "2").source.removeprefix("models:/")
        logged = {m.key: m.value for m in client.get_logged_model(model_id).metrics}
        assert logged["mentions_expected/mean"] == pytest.approx(0.6)
        assert json.loads(v2["agentctl.io/eval-figures"])["mentions_expected"] == pytest.approx(0.6)

        # A second apply evaluates nothing again: the verdict is recorded for these inputs.
        runs = len(eval_runs(client))
        again = agentctl("apply", str(examples), env=LOCAL)
        assert again.code == 1 and "version 2 failed its evaluation" in again.err
        assert len(eval_runs(client)) == runs
        assert champion() == 1 and weights() == {1: 100}

        # An answer that leaks an e-mail address.
        config.write_text(good.replace("I will pass your question to a human colleague.",
                                       "Write to a human colleague at help@example.com."))  # fmt: skip
        leak = agentctl("apply", str(examples), env=LOCAL)
        assert leak.code == 1, leak.out + leak.err
        assert "version 3 failed its evaluation: pii_detection 0.8 misses min 1" in leak.err
        assert tags(3)["agentctl.io/eval-verdict"] == "failed"
        assert champion() == 1 and weights() == {1: 100}

        # A good version passes and moves on.
        config.write_text(good.replace("Hi, this is the support bot.", "Hi, support bot here."))
        fixed = agentctl("apply", str(examples), env=LOCAL)
        assert fixed.code == 0, fixed.out + fixed.err
        assert champion() == 4 and weights() == {4: 100}
        assert tags(4)["agentctl.io/eval-verdict"] == "passed"
    finally:
        down = agentctl("down", env=LOCAL)
        assert down.code == 0, down.err
