"""Environments and promotion, end to end against the real MLflow server (over its REST API,
through the counting proxy), with the installed `agentctl` and the example support bot:

- dev logs from source (and evaluates); staging copies dev's champion once it has soaked, with
  its lineage (MLflow's models:/<model>/<version> source, the run, the verdict, the logged model);
  prod waits for an approval of that very version, recorded on it in the registry;
- a second apply of every environment writes nothing; prune in one environment leaves the others;
- a candidate without a passing evaluation is not promoted; an approval of an older version does
  not promote a newer one;
- `history` shows the whole path; bad input names file, line and field, and writes nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from controller.core.environment.record import PROMOTED_FROM_TAG
from controller.core.state.observed import ENVIRONMENT_TAG, LOGGED_MODEL_TAG
from tests.support.environment_manifests import support_environments
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

SOAK = 4  # seconds

ENVIRONMENTS = support_environments(SOAK)


def _repo(examples: Path) -> Path:
    """The examples with the support bot and its prompt only, and the three environments."""
    for name in ("summarizer.yaml", "serving-defaults.yaml"):
        (examples / name).unlink()
    (examples / "environments.yaml").write_text(ENVIRONMENTS)
    return examples


def _ok(run: Any) -> Any:
    assert run.code == 0, run.out + run.err
    return run


def _champion(client: Any, model: str) -> int:
    return int(client.get_model_version_by_alias(model, "champion").version)


def _writes(proxy: CountingProxy) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in proxy.writes()]


def test_dev_to_staging_to_prod_with_lineage_soak_and_approval(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    root = _repo(examples)
    _ok(agentctl("apply", str(root), "--env", "dev"))
    dev = client.get_model_version("support-bot-dev", "1")
    assert dev.tags["agentctl.io/eval-verdict"] == "passed"
    assert client.get_registered_model("support-bot-dev").tags[ENVIRONMENT_TAG] == "dev"
    assert _champion(client, "support-bot-dev") == 1

    # Staging: the candidate has not soaked yet; the plan says so, exit 2 with the exit code.
    waiting = agentctl("plan", str(root), "--env", "staging", "--detailed-exitcode")
    assert waiting.code == 2, waiting.out + waiting.err
    assert "promotion into staging: support-bot-dev/1 waits: soak:" in waiting.out
    time.sleep(SOAK + 1)
    planned = _ok(agentctl("plan", str(root), "--env", "staging"))
    assert "promoted: copy models:/support-bot-dev/1" in planned.out
    assert "will be evaluated" not in planned.out  # the verdict travels with the copy
    _ok(agentctl("apply", str(root), "--env", "staging"))
    staging = client.get_model_version("support-bot-staging", "1")
    assert staging.source == "models:/support-bot-dev/1"
    assert staging.run_id == dev.run_id
    assert staging.tags[PROMOTED_FROM_TAG] == "models:/support-bot-dev/1"
    assert staging.tags["agentctl.io/eval-verdict"] == "passed"
    assert staging.tags[LOGGED_MODEL_TAG] == dev.source.removeprefix("models:/")
    assert client.get_registered_model("support-bot-staging").tags["tier"] == "2"
    assert _champion(client, "support-bot-staging") == 1

    # Prod waits for a person.
    held = _ok(agentctl("apply", str(root), "--env", "prod"))
    assert "agentctl approve support-bot --env prod --version 1" in held.out + held.err
    assert client.search_model_versions("name='support-bot-prod'") == []
    approved = _ok(agentctl("approve", "support-bot", str(root), "--env", "prod", "--by", "alice"))
    assert "models:/support-bot-staging/1 approved for prod by alice" in approved.out
    assert (
        client.get_model_version("support-bot-staging", "1").tags["agentctl.io/approval.prod"]
        == "Approved"
    )
    _ok(agentctl("apply", str(root), "--env", "prod"))
    prod = client.get_model_version("support-bot-prod", "1")
    assert prod.source == "models:/support-bot-staging/1"
    assert prod.tags[LOGGED_MODEL_TAG] == staging.tags[LOGGED_MODEL_TAG]
    assert "agentctl.io/approval.prod" not in prod.tags  # staging's record stays in staging
    assert client.get_registered_model("support-bot-prod").description == (
        "The support bot, in production."
    )

    # Nothing more to do anywhere: no writes, and prune in one leaves the others.
    proxy.reset()
    for env in ("dev", "staging", "prod"):
        _ok(agentctl("apply", str(root), "--env", env))
    _ok(agentctl("apply", str(root), "--env", "staging", "--prune", "--yes"))
    assert _writes(proxy) == []
    every = _ok(agentctl("plan", str(root), "--env", "all", "--detailed-exitcode"))
    assert every.out.count("No changes.") == 3, every.out

    # The whole path.
    trail = json.loads(_ok(agentctl("history", "support-bot", str(root), "-f", "json")).out)
    assert [(v["environment"], v["model"], v["promoted_from"]) for v in trail["versions"]] == [
        ("dev", "support-bot-dev", None),
        ("staging", "support-bot-staging", "models:/support-bot-dev/1"),
        ("prod", "support-bot-prod", "models:/support-bot-staging/1"),
    ]
    assert trail["versions"][1]["approvals"][0]["by"] == "alice"
    assert any(e["event"] == "support-bot-prod@champion -> 1" for e in trail["events"])


def test_no_promotion_without_a_passing_verdict_nor_with_an_older_version_s_approval(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    root = _repo(examples)
    (root / "environments.yaml").write_text(ENVIRONMENTS.replace(f"soak: {SOAK}s", "soak: 0s"))
    _ok(agentctl("apply", str(root), "--env", "dev"))
    _ok(agentctl("apply", str(root), "--env", "staging"))
    _ok(agentctl("approve", "support-bot", str(root), "--env", "prod"))
    _ok(agentctl("apply", str(root), "--env", "prod"))
    assert _champion(client, "support-bot-prod") == 1

    # A version made by hand, without a verdict, made dev's champion: staging does not take it.
    client.create_model_version("support-bot-dev", "models:/support-bot-dev/1")
    client.set_registered_model_alias("support-bot-dev", "champion", "2")
    proxy.reset()
    held = _ok(agentctl("apply", str(root), "--env", "staging"))
    assert "no evaluation verdict recorded on models:/support-bot-dev/2" in held.out + held.err
    assert _writes(proxy) == []
    _ok(agentctl("apply", str(root), "--env", "dev"))  # dev puts its champion back (drift)
    assert _champion(client, "support-bot-dev") == 1

    # A new version through dev and staging: prod's approval was for staging's 1, not 2.
    agent = root / "agents" / "support_bot" / "agent.py"
    agent.write_text(agent.read_text() + "\n# a second version\n")
    _ok(agentctl("apply", str(root), "--env", "dev"))
    assert _champion(client, "support-bot-dev") == 3
    _ok(agentctl("apply", str(root), "--env", "staging"))
    assert _champion(client, "support-bot-staging") == 2
    proxy.reset()
    waiting = agentctl("plan", str(root), "--env", "prod", "--detailed-exitcode")
    assert waiting.code == 2, waiting.out + waiting.err
    assert "agentctl approve support-bot --env prod --version 2" in waiting.out
    _ok(agentctl("apply", str(root), "--env", "prod"))
    assert _writes(proxy) == []
    assert _champion(client, "support-bot-prod") == 1
    _ok(agentctl("approve", "support-bot", str(root), "--env", "prod"))
    _ok(agentctl("apply", str(root), "--env", "prod"))
    assert _champion(client, "support-bot-prod") == 2
    assert client.get_model_version("support-bot-prod", "2").source == (
        "models:/support-bot-staging/2"
    )


def test_bad_environments_are_refused_with_file_line_and_field(
    examples: Path, agentctl: Any, proxy: CountingProxy
) -> None:
    root = _repo(examples)
    broken = ENVIRONMENTS.replace("after: staging", "after: stagin").replace(
        '      tags: {tier: "2"}', "      source: {code: x.py}"
    )
    (root / "environments.yaml").write_text(broken)
    proxy.reset()
    run = agentctl("apply", str(root), "--env", "prod")
    assert run.code == 1
    assert "environments.yaml:16:7: spec.agents.support-bot.source: 'source' cannot be " in run.err
    assert "environments.yaml:23:3: spec.after: no Environment manifest declares 'stagin'; did " \
           "you mean 'staging'?" in run.err  # fmt: skip
    assert proxy.records == []
    (root / "environments.yaml").write_text(ENVIRONMENTS)
    missing = agentctl("plan", str(root))
    assert missing.code == 1 and "pass --env NAME" in missing.err


@pytest.fixture
def workspaces(tmp_path: Path) -> Any:
    """An MLflow server of its own with workspaces on, and a workspace 'agents' on it."""
    from mlflow import MlflowClient

    from tests.support.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path / "ws-server", extra_args=("--enable-workspaces",)).start()
    try:
        MlflowClient(server.url).create_workspace("agents")
        yield server
    finally:
        server.stop()


def test_environments_in_an_mlflow_workspace(
    examples: Path, agentctl: Any, workspaces: Any
) -> None:
    import requests

    root = _repo(examples)
    (root / "environments.yaml").write_text(
        ENVIRONMENTS.replace(f"soak: {SOAK}s", "soak: 0s")
        .replace("  name: dev\n", "  name: dev\nspec:\n  workspace: agents\n")
        .replace("  after: dev\n", "  after: dev\n  workspace: agents\n")
        .replace("  after: staging\n", "  after: staging\n  workspace: agents\n")
    )
    on = {"MLFLOW_TRACKING_URI": workspaces.url}
    for env in ("dev", "staging"):
        _ok(agentctl("apply", str(root), "--env", env, env=on))

    def models(workspace: str | None) -> list[str]:
        headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
        found = requests.get(
            f"{workspaces.url}/api/2.0/mlflow/registered-models/search", headers=headers, timeout=10
        ).json()
        return sorted(m["name"] for m in found.get("registered_models", []))

    def prompt(workspace: str | None) -> int:
        headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
        return requests.get(
            f"{workspaces.url}/api/2.0/mlflow/registered-models/get",
            params={"name": "support-system"}, headers=headers, timeout=10,
        ).status_code  # fmt: skip

    assert models("agents") == ["support-bot-dev", "support-bot-staging"]
    assert prompt("agents") == 200, "the prompt the bot binds is in the workspace too"
    assert models(None) == [] and prompt(None) == 404, "nothing in the default workspace"
    every = _ok(agentctl("plan", str(root), "--env", "all", env=on))
    assert every.out.count("No changes.") == 2, every.out  # dev and staging
    assert "waits: approval" in every.out
    needless = _ok(agentctl("approve", "support-bot", str(root), "--env", "staging", env=on))
    assert "does not ask for an approval" in needless.err, needless.err


@pytest.fixture
def second(tmp_path: Path) -> Any:
    """A second MLflow server (another registry, as another team's or production's)."""
    from tests.support.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path / "second-server").start()
    try:
        yield server
    finally:
        server.stop()


def test_a_promotion_into_another_tracking_server_copies_the_files_and_repins_prompts(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any, second: Any
) -> None:
    """dev on the suite's server, staging and prod on a second one: staging's copy is made from
    dev's files (a logged model on the second server, its MLmodel pointing at it, the prompt
    content it pins brought over when the second server lacks it, and renumbered), and it
    answers there;
    the approval for prod is recorded on staging's version where staging lives; history reads
    each environment where it lives. Nothing is written to dev's server by staging or prod."""
    import mlflow
    import yaml
    from mlflow import MlflowClient

    root = _repo(examples)
    envs = (
        ENVIRONMENTS.replace(f"soak: {SOAK}s", "soak: 0s")
        .replace("  after: dev\n", f"  after: dev\n  trackingUri: {second.url}\n")
        .replace("  after: staging\n", f"  after: staging\n  trackingUri: {second.url}\n")
    )
    (root / "environments.yaml").write_text(envs)
    # Three templates on dev's server: the bot dev serves pins support-system/3 there. Then the
    # template changes again, not yet applied to dev: staging's Prompt has only that one.
    template = root / "agents" / "support_bot" / "prompts" / "system.txt"
    first = template.read_text()
    for greeting in ("Hello", "Hey"):
        _ok(agentctl("apply", str(root), "--env", "dev"))
        template.write_text(first.replace("Hi", greeting))
    _ok(agentctl("apply", str(root), "--env", "dev"))
    dev = client.get_model_version_by_alias("support-bot-dev", "champion")
    assert dev.tags["agentctl.io/prompts"] == "system=prompts:/support-system/3"
    template.write_text(first.replace("Hi", "Howdy"))

    proxy.reset()
    planned = _ok(agentctl("plan", str(root), "--env", "staging"))
    assert f"copy models:/support-bot-dev/{dev.version} from {proxy.url}" in planned.out, (
        planned.out
    )
    _ok(agentctl("apply", str(root), "--env", "staging"))
    there = MlflowClient(second.url)
    staging = there.get_model_version("support-bot-staging", "1")
    model_id = staging.source.removeprefix("models:/")
    assert model_id.startswith("m-") and staging.tags[LOGGED_MODEL_TAG] == model_id
    assert staging.tags["agentctl.io/promoted-from"] == f"models:/support-bot-dev/{dev.version}"
    assert staging.tags["agentctl.io/promoted-from-registry"] == proxy.url
    assert staging.tags["agentctl.io/eval-verdict"] == "passed"
    assert staging.tags["agentctl.io/prompts"] == "system=prompts:/support-system/2"
    assert "Howdy" in there.get_prompt_version("support-system", 1).template  # staging's own
    assert "Hey" in there.get_prompt_version("support-system", 2).template  # brought by the copy
    spec = yaml.safe_load(
        Path(
            mlflow.artifacts.download_artifacts(
                there.get_logged_model(model_id).artifact_location + "/MLmodel",
                tracking_uri=second.url,
            )
        ).read_text()
    )
    assert spec["model_id"] == model_id
    assert "prompts:/support-system/2" in json.dumps(spec)
    assert "prompts:/support-system/3" not in json.dumps(spec)
    # (MLflow's set_*_uri export MLFLOW_*_URI to this process: put them back for later tests.)
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    mlflow.set_tracking_uri(second.url)
    mlflow.set_registry_uri(second.url)
    try:
        bot = mlflow.pyfunc.load_model("models:/support-bot-staging/1")
        answer = json.dumps(bot.predict({"input": [{"role": "user", "content": "hi"}]}))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
            del os.environ[k]
        os.environ.update(saved)
    assert "Hey" in answer, answer  # the second server's prompt, the template dev served

    # Prod, on the second server too: the approval goes on staging's version there.
    _ok(agentctl("approve", "support-bot", str(root), "--env", "prod", "--by", "bob"))
    assert (
        there.get_model_version("support-bot-staging", "1").tags["agentctl.io/approval.prod"]
        == "Approved"
    )
    _ok(agentctl("apply", str(root), "--env", "prod"))
    assert there.get_model_version("support-bot-prod", "1").source == (
        "models:/support-bot-staging/1"
    )
    assert _writes(proxy) == [], "dev's server is only read"
    for env in ("staging", "prod"):
        again = _ok(agentctl("plan", str(root), "--env", env, "--detailed-exitcode"))
        assert "No changes." in again.out
    trail = json.loads(_ok(agentctl("history", "support-bot", str(root), "-f", "json")).out)
    assert [(v["environment"], v["promoted_from"]) for v in trail["versions"]][-2:] == [
        ("staging", f"models:/support-bot-dev/{dev.version}"),
        ("prod", "models:/support-bot-staging/1"),
    ]


def test_dev_and_staging_served_locally_side_by_side(
    examples: Path, agentctl: Any, client: Any, tmp_path: Path
) -> None:
    """With --target local, each environment has its own run directory, router and model
    servers: the same agent answers in dev and in staging at once; `down --env` stops one. A
    promotion's router gate is measured where the candidate runs: it lets staging take dev's
    healthy version, and stops prod from taking staging's once it fails there."""
    import requests

    from tests.support.local import LOCAL, QUESTION, processes_of

    root = _repo(examples)
    gate = (
        "soak: 0s\n    analysis:\n      - {name: errors, metric: errorRate, source: router, "
        "max: 0.5, minSamples: 3}"
    )
    (root / "environments.yaml").write_text(
        ENVIRONMENTS.replace(f"soak: {SOAK}s", gate).replace(
            "    approval: true\n",
            "    approval: true\n    " + gate.replace("soak: 0s\n    ", "") + "\n",
        )
    )
    run_dirs = {e: tmp_path / ".agentctl" / "environments" / e for e in ("dev", "staging", "prod")}
    try:
        _ok(agentctl("apply", str(root), "--env", "dev", env=LOCAL))
        dev = json.loads((run_dirs["dev"] / "daemon.json").read_text())["router"]
        # Staging's router gate is measured on dev's router, where the candidate runs.
        for _ in range(4):
            r = requests.post(f"{dev}/agents/support-bot/invocations", json=QUESTION, timeout=60)
            assert r.status_code == 200, r.text
        _ok(agentctl("apply", str(root), "--env", "staging", env=LOCAL))
        routers = {
            e: json.loads((run_dirs[e] / "daemon.json").read_text())["router"]
            for e in ("dev", "staging")
        }
        assert routers["dev"] != routers["staging"]
        for env, router in routers.items():
            r = requests.post(f"{router}/agents/support-bot/invocations", json=QUESTION, timeout=60)
            assert r.status_code == 200, (env, r.text)
        shown = json.loads(_ok(agentctl("status", "--env", "staging", "-f", "json", env=LOCAL)).out)
        assert shown["agents"]["support-bot"]["model"] == "support-bot-staging"
        assert shown["endpoint"].startswith(routers["staging"])

        # Staging's version fails there (an agent that raises): prod does not take it.
        _ok(agentctl("approve", "support-bot", str(root), "--env", "prod", env=LOCAL))
        for _ in range(4):
            bad = {"input": [{"role": "assistant", "content": "?"}]}
            r = requests.post(f"{routers['staging']}/agents/support-bot/invocations", json=bad,
                              timeout=60)  # fmt: skip
            assert r.status_code == 400, r.text
        held = _ok(agentctl("apply", str(root), "--env", "prod", env=LOCAL))
        assert "waits: analysis errors: failed: 0.8 > 0.5 (errorRate 0.8 from 5 samples)" in (
            held.out
        ), held.out  # staging's 1 good and 4 failed answers
        assert "approval" not in held.out.split("waits:")[1].split("\n")[0]
        assert client.search_model_versions("name='support-bot-prod'") == [], "nothing copied"
        _ok(agentctl("down", "--env", "dev", env=LOCAL))
        assert processes_of(run_dirs["dev"]) == [] and processes_of(run_dirs["staging"])
    finally:
        for env in ("dev", "staging", "prod"):
            agentctl("down", "--env", env, env=LOCAL)
        for d in run_dirs.values():
            deadline = time.monotonic() + 15
            while processes_of(d) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert processes_of(d) == [], f"processes left in {d}"
