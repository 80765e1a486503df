"""``agentctl gc`` against the real MLflow server: an apply that fails after logging a model but
before registering it leaves a run and a logged model that no version references; ``gc`` lists
exactly those, ``gc --yes`` deletes them, and nothing referenced, nothing another owner logged
and nothing agentctl did not log is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.core.state.observed import AGENT_TAG, DIGEST_TAG, OWNER_TAG, experiment_name
from tests.support.controller import one_source
from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

# An owner no other test applies with: runs other tests leave on the shared server are not its own.
OWNER = {"AGENTCTL_OWNER": "team-gc"}


def _active(client: Any, model: str) -> tuple[set[str], set[str]]:
    """The active runs and logged models of ``model``'s experiment."""
    exp = client.get_experiment_by_name(experiment_name(model))
    if exp is None:
        return set(), set()
    runs = {r.info.run_id for r in client.search_runs([exp.experiment_id])}
    models = {m.model_id for m in client.search_logged_models([exp.experiment_id])}
    return runs, models


def test_gc_deletes_exactly_what_an_interrupted_apply_logged_and_no_version_references(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    (examples / "support-bot.yaml").unlink()  # one agent of one source: one model per apply
    one_source(examples)
    # The experiment outlives the registry's models between tests: what earlier tests logged
    # (owner 'agentctl') stays, and is no business of team-gc's gc.
    earlier_runs, earlier_models = _active(client, "summarizer")
    assert agentctl("apply", str(examples), env=OWNER).code == 0
    v1 = client.get_model_version("summarizer", "1")
    v1_model = v1.source.removeprefix("models:/")  # the logged model the version was made from
    exp_id = client.get_experiment_by_name(experiment_name("summarizer")).experiment_id
    assert _active(client, "summarizer") == (
        earlier_runs | {v1.run_id},
        earlier_models | {v1_model},
    )

    # A new source: the model is logged, then registering it fails until the retries run out.
    config = examples / "agents" / "summarizer" / "config.yaml"
    config.write_text(config.read_text().replace("max_words: 30", "max_words: 12"))
    proxy.fail("model-versions/create", times=-1, status=503)
    broken = agentctl("apply", str(examples), env={**OWNER, "AGENTCTL_RETRY_ATTEMPTS": "2"})
    assert broken.code == 1, broken.out
    proxy.reset()
    runs, models = _active(client, "summarizer")
    left_runs = runs - earlier_runs - {v1.run_id}
    left_models = models - earlier_models - {v1_model}
    assert left_runs and left_models, "the interrupted apply logged, and registered nothing"
    assert [v.version for v in client.search_model_versions("name='summarizer'")] == ["1"]
    for run_id in left_runs:  # the logger says whose it is and what it was logged from
        tags = client.get_run(run_id).data.tags
        assert tags[OWNER_TAG] == "team-gc" and tags[AGENT_TAG] == "summarizer"
        assert tags[DIGEST_TAG].startswith("sha256:")

    # Beside them: another owner's orphan, and a run of someone's own in the same experiment.
    other_exp = client.create_experiment(experiment_name("theirs"))
    theirs = client.create_run(other_exp, tags={OWNER_TAG: "team-b", DIGEST_TAG: "sha256:0"})
    client.set_terminated(theirs.info.run_id)
    by_hand = client.create_run(exp_id, tags={OWNER_TAG: "team-gc"})  # no digest: not agentctl's
    client.set_terminated(by_hand.info.run_id)

    young = agentctl("gc", env=OWNER)  # an hour by default: an apply may still register them
    assert young.code == 0, young.err
    assert "Nothing to collect" in young.out

    proxy.reset()
    dry = agentctl("gc", "--min-age", "0", env=OWNER)
    assert dry.code == 0, dry.err
    assert proxy.writes() == [], "a dry run deletes nothing"
    listed = {line.split()[1] for line in dry.out.splitlines() if line.startswith("  ")}
    assert listed == left_runs | left_models, dry.out
    assert "--yes deletes" in dry.out

    done = agentctl("gc", "--min-age", "0", "--yes", env=OWNER)
    assert done.code == 0, done.err
    assert f"Deleted {len(left_runs | left_models)}." in done.out
    assert _active(client, "summarizer") == (
        earlier_runs | {v1.run_id, by_hand.info.run_id},
        earlier_models | {v1_model},
    )
    assert client.get_run(theirs.info.run_id).info.lifecycle_stage == "active"
    assert client.get_logged_model(v1_model).model_id == v1_model

    again = agentctl("gc", "--min-age", "0", "--yes", env=OWNER)
    assert again.code == 0 and "Nothing to collect" in again.out, again.out
    # The version the interrupted apply left out is registered by the next apply.
    assert agentctl("apply", str(examples), env=OWNER).code == 0
    assert client.get_model_version("summarizer", "2").tags[DIGEST_TAG] != v1.tags[DIGEST_TAG]


@pytest.mark.parametrize("adapter", ["rest", "client"])
def test_both_adapters_read_and_delete_what_was_logged_alike(
    adapter: str, mlflow_server: MlflowServer, client: Any
) -> None:
    from controller.adapters.mlflow.client import MlflowRegistry
    from controller.adapters.mlflow.rest import RestRegistry

    registry = (RestRegistry if adapter == "rest" else MlflowRegistry)(mlflow_server.url)
    exp_id = client.create_experiment(experiment_name(f"gc-{adapter}"))
    client.create_experiment(f"/elsewhere/gc-{adapter}")  # not agentctl's: never read
    tags = {OWNER_TAG: "team-gc", AGENT_TAG: "bot", DIGEST_TAG: "sha256:1"}
    run = client.create_run(exp_id, tags=tags)
    client.set_terminated(run.info.run_id)
    lm = client.create_logged_model(exp_id, source_run_id=run.info.run_id, tags=tags)

    logged = registry.observe_logged()
    (seen_run,) = [r for r in logged.runs if r.model == f"gc-{adapter}"]
    (seen_lm,) = [m for m in logged.models if m.model == f"gc-{adapter}"]
    assert seen_run.run_id == run.info.run_id and tags.items() <= seen_run.tags.items()
    assert seen_run.started_ms == run.info.start_time
    assert (seen_lm.model_id, seen_lm.run_id) == (lm.model_id, run.info.run_id)
    assert tags.items() <= seen_lm.tags.items()
    assert seen_lm.created_ms == lm.creation_timestamp

    for _ in range(2):  # deleting what is already gone succeeds
        registry.delete_logged_model(lm.model_id)
        registry.delete_run(run.info.run_id)
    after = registry.observe_logged()
    assert all(r.model != f"gc-{adapter}" for r in after.runs)
    assert all(m.model != f"gc-{adapter}" for m in after.models)
    registry.delete_run("0" * 32)  # never existed
