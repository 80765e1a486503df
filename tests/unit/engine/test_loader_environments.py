"""`kind: Environment` documents loaded in promotion order, and every problem of them (alone,
across documents, of an overlay) reported with file, line and field; nothing loads then."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.diagnostics import Diagnostic
from controller.engine.loader import load
from tests.support.environment_manifests import DEV, PROD, STAGING, write_env_repo
from tests.support.manifests import errors_of


def where(d: Diagnostic) -> tuple[str, int, str]:
    assert d.location is not None, str(d)
    return (Path(d.location.file).name, d.location.line, d.field)


def test_environments_load_in_promotion_order_whatever_the_file_order(tmp_path: Path) -> None:
    write_env_repo(tmp_path, PROD, DEV, STAGING)
    desired, diags = load(tmp_path)
    assert not diags.errors
    assert [e.name for e in desired.environments] == ["dev", "staging", "prod"]
    dev, staging, prod = desired.environments
    assert (dev.manifest.model_of("bot"), staging.manifest.model_of("bot")) == (
        "bot-dev",
        "bot-staging",
    )
    assert prod.manifest.model_of("bot") == "main.prod.bot"
    assert prod.manifest.spec.promotion is not None and prod.manifest.spec.promotion.approval
    assert staging.location(("spec", "agents", "bot", "tags")).line == 30  # (after prod and dev)


def test_every_problem_of_environments_in_one_run(tmp_path: Path) -> None:
    bad_staging = STAGING.replace(
        "    bot:\n      tags", "    bot:\n      source: {code: x.py}\n      tags"
    )
    bad_prod = PROD.replace("after: staging", "after: stagin").replace(
        "  agents:\n    bot:", "  agents:\n    bott:"
    )
    cycle_a = "apiVersion: agentctl.io/v1alpha1\nkind: Environment\nmetadata: {name: a}\nspec: {after: b}\n"
    cycle_b = "apiVersion: agentctl.io/v1alpha1\nkind: Environment\nmetadata: {name: b}\nspec: {after: a}\n"
    first_with_gates = DEV + "spec:\n  promotion: {approval: true}\n"
    write_env_repo(tmp_path, first_with_gates, bad_staging, bad_prod, cycle_a, cycle_b)
    found = [(where(d), d.message) for d in errors_of(tmp_path)]
    messages = dict(found)
    assert [w for w, _ in found] == [
        ("envs.yaml", 6, "spec.promotion"),
        ("envs.yaml", 20, "spec.agents.bot.source"),
        ("envs.yaml", 28, "spec.after"),
        ("envs.yaml", 32, "spec.agents.bott"),
        ("envs.yaml", 38, "spec.after"),
    ]
    assert messages[("envs.yaml", 6, "spec.promotion")].startswith(
        "the first environment (no spec.after)"
    )
    assert messages[("envs.yaml", 20, "spec.agents.bot.source")].startswith(
        "'source' cannot be overridden in an environment (an environment may override "
        "registeredModel, description, tags, aliases, serving, rollout)"
    )
    assert messages[("envs.yaml", 28, "spec.after")].endswith("'stagin'; did you mean 'staging'?")
    assert messages[("envs.yaml", 32, "spec.agents.bott")] == (
        "no Agent manifest declares 'bott'; did you mean 'bot'?"
    )
    assert messages[("envs.yaml", 38, "spec.after")] == (
        "the promotion order has a cycle (b -> a -> b): one environment must come first"
    )


def test_two_environments_may_not_share_a_registered_model(tmp_path: Path) -> None:
    same = STAGING.replace(
        "spec:\n  after: dev", "spec:\n  after: dev\n  registeredModel: '{agent}'"
    )
    other = PROD.replace("registeredModel: main.prod.{agent}", "registeredModel: '{agent}'")
    write_env_repo(tmp_path, DEV, same, other)
    [error] = errors_of(tmp_path)
    assert where(error) == ("envs.yaml", 12, "spec.registeredModel")  # staging's, prod came first
    assert error.message.startswith(
        "agent 'bot' would live in registered model 'bot', where agent 'bot' in environment "
        "'prod' lives;"
    )


@pytest.mark.parametrize(
    ("edit", "at", "says"),
    [
        (
            "registeredModel: main.prod.{agent}",
            ("envs.yaml", 26, "spec.registeredModel"),
            "only {agent} and {env} are replaced",
        ),
        (
            "promotion: {approval: true}",
            ("envs.yaml", 27, "spec.promotion.approval"),
            "boolean",
        ),
    ],
)
def test_schema_errors_name_their_line(tmp_path: Path, edit: str, at: tuple, says: str) -> None:
    broken = {
        "registeredModel: main.prod.{agent}": "registeredModel: main.{prod}",
        "promotion: {approval: true}": "promotion: {approval: maybe}",
    }[edit]
    write_env_repo(tmp_path, DEV, STAGING, PROD.replace(edit, broken))
    [error] = errors_of(tmp_path)
    assert where(error) == at
    assert says in error.message.lower()


def test_one_model_name_in_two_workspaces_is_two_models(tmp_path: Path) -> None:
    """A chain in workspace 'a' and one in 'b' may name their models alike; in one workspace
    they may not."""
    a = DEV.replace("  name: dev\n", "  name: dev\nspec:\n  workspace: a\n  registeredModel: m\n")
    b = a.replace("name: dev", "name: qa").replace("workspace: a", "workspace: b")
    write_env_repo(tmp_path, a, b)
    _, diags = load(tmp_path)
    assert not diags.errors, [str(d) for d in diags.errors]
    write_env_repo(tmp_path, a, b.replace("workspace: b", "workspace: a"))
    [error] = errors_of(tmp_path)
    assert "would live in registered model 'm', where agent 'bot' in environment 'dev'" in (
        error.message
    )


def test_model_servers_in_the_cluster_get_the_environment_s_workspace(tmp_path: Path) -> None:
    from dataclasses import replace

    from controller.core.plan.kube_objects import settings_of

    a = DEV.replace("  name: dev\n", "  name: dev\nspec:\n  workspace: agents\n")
    write_env_repo(tmp_path, a)
    desired, diags = load(tmp_path)
    assert not diags.errors
    assert settings_of(replace(desired, environment="dev"))("bot").env["MLFLOW_WORKSPACE"] == (
        "agents"
    )
    assert "MLFLOW_WORKSPACE" not in settings_of(desired)("bot").env


def test_a_promotion_gate_reads_traces_router_or_prometheus(tmp_path: Path) -> None:
    gates = STAGING.replace(
        "    soak: 30m\n",
        "    soak: 30m\n    analysis:\n      - {name: judged, metric: passRate, source: scorers, "
        "scorer: polite, min: 0.9}\n      - {name: p95, metric: latencyP95, source: prometheus, "
        "max: 2}\n",
    )
    write_env_repo(tmp_path, DEV, gates, PROD)
    found = [(where(d), d.message) for d in errors_of(tmp_path)]
    assert found == [
        (("envs.yaml", 15, "spec.promotion.analysis[0].source"),
         "source: scorers is for a rollout's canary; a promotion gate reads traces, router or "
         "prometheus"),
        (("envs.yaml", 16, "spec.promotion.analysis[1].query"), "source: prometheus needs a query"),
    ]  # fmt: skip


def test_validate_applies_every_overlay(tmp_path: Path) -> None:
    broken = STAGING.replace("      tags: {tier: silver}", "      aliases: {stable: 3}")
    write_env_repo(tmp_path, DEV, broken, PROD)
    [error] = errors_of(tmp_path)
    assert where(error) == ("envs.yaml", 18, "spec.aliases.stable")
    assert error.message.startswith("in environment 'staging': alias 'stable' names version 3")


def test_two_environments_may_not_serve_in_one_namespace(tmp_path: Path) -> None:
    staging = STAGING.replace("  serving:\n", "  serving:\n    namespace: agents\n")
    prod = PROD.replace("  after: staging\n", "  after: staging\n  serving: {namespace: agents}\n")
    write_env_repo(tmp_path, DEV, staging, prod)
    [error] = errors_of(tmp_path)
    assert error.field == "spec.serving.namespace"
    assert error.message.startswith("environment 'prod' serves in namespace 'agents' too")


def test_an_environment_cannot_be_called_all(tmp_path: Path) -> None:
    write_env_repo(tmp_path, DEV, STAGING.replace("name: staging", "name: all"))
    [error] = errors_of(tmp_path)
    assert error.field == "metadata.name" and "plan --env all" in error.message
