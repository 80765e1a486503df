"""Prompts of MLflow's Prompt Registry through both registry adapters, against the real MLflow
server (REST and the MLflow client) and a sqlite registry (the MLflow client): what they write
MLflow's own client reads back as the prompt it is (``mlflow.genai.load_prompt``), observation
reports prompts apart from models, and a version logged with bound prompts has them pinned in
its model config and linked to it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.adapters.mlflow.client import MlflowRegistry
from controller.adapters.mlflow.logger import log_model_isolated
from controller.adapters.mlflow.rest import RestRegistry
from controller.core.errors import PermanentBackendError
from controller.core.prompt.content import IS_PROMPT_TAG, PromptContent
from controller.core.state.observed import OWNER_TAG, PROMPT_TAG
from controller.ports import Registry, VersionSource
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

PROMPTS_FILTER = f"tags.`{IS_PROMPT_TAG}` = 'true'"
OWNED = {OWNER_TAG: "agentctl", PROMPT_TAG: "greeting", "team": "care"}
TEXT = PromptContent("text", "Hello {{name}}, I am {{ bot }}.")
CHAT = PromptContent(
    "chat",
    (
        {"role": "system", "content": "You are a {{style}} assistant."},
        {"role": "user", "content": "{{question}}"},
    ),
    response_format={"type": "object", "properties": {"answer": {"type": "string"}}},
    model_config={"model_name": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 100},
)

#: registry under test -> (the adapter, an MlflowClient on the same registry).
Target = Callable[[MlflowServer, Path], tuple[Registry, Any, str]]


def _on_server(make: Callable[[str], Registry]) -> Target:
    def target(server: MlflowServer, tmp: Path) -> tuple[Registry, Any, str]:
        from mlflow import MlflowClient

        return make(server.url), MlflowClient(server.url, server.url), server.url

    return target


def _on_sqlite(server: MlflowServer, tmp: Path) -> tuple[Registry, Any, str]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    return MlflowRegistry(uri), MlflowClient(uri, uri), uri


TARGETS: dict[str, Target] = {
    "rest": _on_server(RestRegistry),
    "client": _on_server(MlflowRegistry),
    "client-sqlite": _on_sqlite,
}


def _load(uri: str, registry: str) -> Any:
    """A prompt version as MLflow's own client loads it, with no cache in between."""
    import mlflow

    mlflow.set_tracking_uri(registry)
    mlflow.set_registry_uri(registry)
    return mlflow.genai.load_prompt(uri, cache_ttl_seconds=0)


@pytest.mark.parametrize("where", sorted(TARGETS))
def test_prompts_are_written_as_mlflow_reads_them_and_observed_apart_from_models(
    where: str, mlflow_server: MlflowServer, client: Any, tmp_path: Path
) -> None:
    reg, mlflow_client, uri = TARGETS[where](mlflow_server, tmp_path)
    name = f"greeting-{where}"  # load_prompt's caches are per process: a name per target
    assert reg.prompt_versions(name) == []

    reg.create_model(f"model-{where}", None, {OWNER_TAG: "agentctl"})
    reg.create_prompt(name, "greetings", OWNED)
    reg.create_prompt(name, "greetings", OWNED)  # a create retried after it succeeded
    with pytest.raises(PermanentBackendError, match="created by someone else"):
        reg.create_prompt(name, None, {OWNER_TAG: "someone-else"})
    with pytest.raises(
        PermanentBackendError,
        match=f"a registered model named 'model-{where}' exists; prompts and models share one "
        "namespace in MLflow",
    ):
        reg.create_prompt(f"model-{where}", None, OWNED)

    assert reg.create_prompt_version(name, TEXT, {"team": "care"}, "first") == 1
    assert reg.create_prompt_version(name, CHAT, {}, None) == 2

    # Observation: the prompt with its versions, apart from the models.
    snap = reg.observe()
    assert name not in snap.models and f"model-{where}" in snap.models
    assert set(snap.prompts) == {name}
    prompt = snap.prompts[name]
    assert prompt.description == "greetings"
    assert prompt.tags == {**OWNED, IS_PROMPT_TAG: "true"}
    assert sorted(prompt.versions) == [1, 2]
    v1, v2 = prompt.versions[1], prompt.versions[2]
    assert PromptContent.from_tags(v1.tags) == TEXT and PromptContent.from_tags(v2.tags) == CHAT
    assert v1.tags["team"] == "care" and v1.description == "first"
    assert v1.source == v2.source == "dummy-source"
    assert PromptContent.from_tags(v1.tags).digest == TEXT.digest  # type: ignore[union-attr]
    # MLflow's own model searches still leave it out.
    assert name not in {rm.name for rm in mlflow_client.search_registered_models()}
    assert name not in {mv.name for mv in mlflow_client.search_model_versions()}
    assert [p.name for p in mlflow_client.search_prompts()] == [name]

    # MLflow's client reads what the adapter wrote as the prompt it is.
    text = _load(f"prompts:/{name}/1", uri)
    assert text.template == TEXT.template and text.response_format is None
    assert text.format(name="Ann", bot="Bo") == "Hello Ann, I am Bo."
    chat = _load(f"prompts:/{name}/2", uri)
    assert chat.template == [dict(m) for m in CHAT.messages]
    assert chat.response_format == CHAT.response_format
    assert chat.model_config == CHAT.model_config
    assert chat.format(style="terse", question="Why?") == [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Why?"},
    ]

    # An alias set through the Registry is the prompt's alias for load_prompt.
    reg.set_alias(name, "production", 2)
    assert reg.observe().prompts[name].aliases == {"production": 2}
    assert _load(f"prompts:/{name}@production", uri).version == 2
    reg.set_alias(name, "production", 1)
    assert _load(f"prompts:/{name}@production", uri).template == TEXT.template

    # Its versions, lowest first; none for a model or a prompt that does not exist.
    assert [v.number for v in reg.prompt_versions(name)] == [1, 2]
    assert reg.prompt_versions(name)[1].tags == v2.tags
    assert reg.prompt_versions(f"model-{where}") == []
    assert reg.prompt_versions("nope") == []
    with pytest.raises(PermanentBackendError, match="not a prompt name"):
        reg.prompt_versions("it's")


def test_both_adapters_observe_the_same_prompts(mlflow_server: MlflowServer, client: Any) -> None:
    rest, mlflow_client = RestRegistry(mlflow_server.url), MlflowRegistry(mlflow_server.url)
    rest.create_prompt("a", None, OWNED)
    rest.create_prompt_version("a", TEXT, {}, None)
    mlflow_client.create_prompt("b", "bee", OWNED)
    mlflow_client.create_prompt_version("b", CHAT, {"k": "v"}, "one")
    rest.set_alias("b", "live", 1)
    snaps = rest.observe(), mlflow_client.observe()
    assert snaps[0] == snaps[1]
    assert set(snaps[0].prompts) == {"a", "b"} and snaps[0].models == {}


AGENT = """\
import mlflow
from mlflow.models import ModelConfig
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse

config = ModelConfig()


class Bot(ResponsesAgent):
    def predict(self, request):
        system = mlflow.genai.load_prompt(config.get("prompts")["system"])
        text = system.format(product=config.get("product"))
        return ResponsesAgentResponse(output=[self.create_text_output_item(text=text, id="1")])


mlflow.models.set_model(Bot())
"""


@pytest.fixture
def no_tracing() -> Iterator[None]:
    """The agent's predict here exports no trace (none left queued when the server stops)."""
    import mlflow

    mlflow.tracing.disable()
    try:
        yield
    finally:
        mlflow.tracing.enable()


def test_a_version_logged_with_bound_prompts_pins_and_links_them(
    mlflow_server: MlflowServer, client: Any, tmp_path: Path, no_tracing: None
) -> None:
    import mlflow
    from mlflow.models import Model

    reg = RestRegistry(mlflow_server.url)
    reg.create_prompt("support-system", None, OWNED)
    old, new = (
        PromptContent("text", "You support {{product}}."),
        PromptContent("text", "You help with {{product}}."),
    )
    assert reg.create_prompt_version("support-system", old, {}, None) == 1
    assert reg.create_prompt_version("support-system", new, {}, None) == 2
    (tmp_path / "agent.py").write_text(AGENT)
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent("""\
            product: Widgets
            prompts:
              greeting: prompts:/greeting/3
              system: prompts:/support-system/1
        """)
    )
    pins = {"system": "prompts:/support-system/2"}
    source = VersionSource(
        "bot", str(tmp_path / "agent.py"), str(config), ("mlflow==3.17.2",),
        "sha256:" + "1" * 64, prompts=pins,
    )  # fmt: skip
    model_uri, run_id, model_id = log_model_isolated(
        mlflow_server.url, reg.experiment_id("bot"), source
    )

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    request = {"input": [{"role": "user", "content": "hi"}]}
    logged = Model.load(model_uri)
    assert logged.flavors["python_function"]["config"] == {
        "product": "Widgets",
        "prompts": {"greeting": "prompts:/greeting/3", "system": "prompts:/support-system/2"},
    }
    assert logged.prompts == ["prompts:/support-system/2"]
    link = [{"name": "support-system", "version": "2"}]
    assert json.loads(client.get_logged_model(model_id).tags["mlflow.linkedPrompts"]) == link
    assert json.loads(client.get_run(run_id).data.tags["mlflow.linkedPrompts"]) == link

    # The logged agent reads its pinned prompt from its config, as a served version does.
    agent = mlflow.pyfunc.load_model(model_uri)
    answer = agent.predict(request)
    assert answer["output"][0]["content"][0]["text"] == "You help with Widgets."

    # Without bound prompts nothing changes: the config file as it is, nothing linked.
    plain = VersionSource(
        "bot", str(tmp_path / "agent.py"), str(config), ("mlflow==3.17.2",), "sha256:" + "2" * 64
    )
    plain_uri, plain_run, plain_model = log_model_isolated(
        mlflow_server.url, reg.experiment_id("bot"), plain
    )
    unpinned = Model.load(plain_uri)
    assert unpinned.flavors["python_function"]["config"] == yaml.safe_load(config.read_text())
    assert unpinned.prompts is None
    assert "mlflow.linkedPrompts" not in client.get_logged_model(plain_model).tags
    # (MLflow links what load_prompt loads to the active run: the input example's call did.)
    assert json.loads(client.get_run(plain_run).data.tags["mlflow.linkedPrompts"]) == [
        {"name": "support-system", "version": "1"}
    ]
    answer = mlflow.pyfunc.load_model(plain_uri).predict(request)
    assert answer["output"][0]["content"][0]["text"] == "You support Widgets."
