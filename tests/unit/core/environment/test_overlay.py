"""One environment's desired state: each agent in the registered model the environment names,
with its serving settings and overlay over the agent's manifest; in an environment after
another, nothing built from source; a problem the environment causes named in its file."""

from __future__ import annotations

from pathlib import Path

from controller.core.environment.overlay import environment_named, in_environment
from controller.engine.loader import load
from tests.support.environment_manifests import DEV, PROD, STAGING, write_env_repo
from tests.support.manifests import GOOD


def _in(root: Path, env: str):  # type: ignore[no-untyped-def]
    desired, _ = load(root, partial=True)  # (the loader reports an overlay's problems too)
    found = environment_named(desired, env)
    assert found is not None
    return in_environment(desired, found)


def test_the_first_environment_builds_from_source_in_its_own_model(tmp_path: Path) -> None:
    write_env_repo(tmp_path)
    desired, diags = _in(tmp_path, "dev")
    assert diags == [] and desired.environment == "dev"
    [bot] = desired.agents
    assert bot.model_name == "bot-dev"
    assert bot.source is not None and bot.source.code_ref == "agent.py"
    assert bot.manifest.spec.aliases == {"champion": "current"}


def test_a_later_environment_overlays_and_builds_nothing_from_source(tmp_path: Path) -> None:
    write_env_repo(tmp_path)
    staging, diags = _in(tmp_path, "staging")
    assert diags == []
    [bot] = staging.agents
    assert bot.model_name == "bot-staging"
    assert bot.source is None and bot.named == {}
    assert [v.version for v in bot.manifest.spec.versions] == ["current"]
    assert bot.manifest.spec.tags == {"tier": "silver"}
    assert (
        bot.manifest.spec.serving is not None and bot.manifest.spec.serving.kubernetes is not None
    )
    assert bot.manifest.spec.serving.kubernetes.replicas == 2
    assert Path(bot.location(("spec", "tags", "tier")).file).name == "envs.yaml"
    assert Path(bot.location(("spec", "serving", "traffic")).file).name == "bot.yaml"
    [prod_bot] = _in(tmp_path, "prod")[0].agents
    assert prod_bot.model_name == "main.prod.bot"
    assert prod_bot.manifest.spec.description == "The bot, in production."


def test_an_overlay_that_breaks_the_agent_is_an_error_in_the_environment_s_file(
    tmp_path: Path,
) -> None:
    broken = STAGING.replace("      tags: {tier: silver}", "      aliases: {stable: 3}")
    write_env_repo(tmp_path, DEV, broken, PROD)
    desired, diags = _in(tmp_path, "staging")
    assert desired.agents == ()
    [error] = diags
    assert error.location is not None and Path(error.location.file).name == "envs.yaml"
    assert (error.location.line, error.field) == (18, "spec.aliases.stable")
    assert error.message.startswith("in environment 'staging': alias 'stable' names version 3")


def test_an_agent_alias_to_a_number_cannot_follow_into_a_later_environment(tmp_path: Path) -> None:
    agent = GOOD.replace("  versions: [current]", "  versions: [current, 3]").replace(
        "    champion: current", "    champion: current\n    stable: 3"
    )
    write_env_repo(tmp_path, agent=agent)
    assert _in(tmp_path, "dev")[1] == []  # the first environment takes it as it is
    _, [error] = _in(tmp_path, "staging")
    assert error.location is not None and Path(error.location.file).name == "bot.yaml"
    assert error.field == "spec.aliases.stable"
    assert "set spec.agents.bot.aliases" in error.message


def test_kubernetes_settings_stack_agent_then_environment_then_overlay(tmp_path: Path) -> None:
    agent = GOOD.replace(
        "        percent: 100\n",
        "        percent: 100\n    kubernetes: {replicas: 1, image: agent:1, env: {A: a}}\n",
    )
    env = STAGING.replace("kubernetes: {replicas: 2}", "kubernetes: {replicas: 2, image: env:1}")
    env = env.replace(
        "      tags: {tier: silver}",
        "      tags:\n      serving:\n        traffic: [{alias: champion, percent: 100}]\n"
        "        kubernetes: {image: overlay:1}",
    )
    write_env_repo(tmp_path, DEV, env, PROD, agent=agent)
    staging, diags = _in(tmp_path, "staging")
    assert diags == []
    [bot] = staging.agents
    kube = bot.manifest.spec.serving.kubernetes  # type: ignore[union-attr]
    assert kube is not None
    assert (kube.replicas, kube.image, kube.env) == (2, "overlay:1", {"A": "a"})
    assert bot.manifest.spec.tags == {}  # `tags:` with no value merges nothing
