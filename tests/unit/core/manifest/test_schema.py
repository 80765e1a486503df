"""`agentctl schema`: a JSON Schema that accepts the examples, rejects bad manifests, and matches
the committed agentctl.schema.json that editors use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from controller.app.cli import app
from controller.core.manifest.schema_json import manifest_json_schema
from controller.engine.loader import load
from tests.support.manifests import errors_of, write_repo
from tests.support.prompt_manifests import CHAT_PROMPT, TEXT_PROMPT

REPO = Path(__file__).resolve().parents[4]


def example_manifests() -> list[Path]:
    return sorted((REPO / "manifests").glob("*.yaml"))


def test_committed_schema_is_current() -> None:
    committed = json.loads((REPO / "agentctl.schema.json").read_text())
    assert committed == manifest_json_schema(), "run `make schema` and commit agentctl.schema.json"


def test_schema_command_prints_the_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == manifest_json_schema()


@pytest.mark.parametrize("path", example_manifests(), ids=lambda p: p.name)
def test_examples_validate_against_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), manifest_json_schema())
    assert path.read_text().startswith("# yaml-language-server: $schema=../agentctl.schema.json")


def test_schema_rejects_unknown_fields_and_bad_percent() -> None:
    agent = REPO / "manifests" / "support-bot.yaml"
    doc = yaml.safe_load(agent.read_text())
    doc["spec"]["tagz"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())
    doc = yaml.safe_load(agent.read_text())
    doc["spec"]["serving"]["traffic"][0]["percent"] = 101
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())


def test_schema_takes_serving_defaults_by_kind() -> None:
    doc = yaml.safe_load((REPO / "manifests" / "serving-defaults.yaml").read_text())
    jsonschema.validate(doc, manifest_json_schema())
    doc["spec"]["kubernetes"]["router"] = "mesh"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())
    doc = yaml.safe_load((REPO / "manifests" / "serving-defaults.yaml").read_text())
    doc["spec"]["traffic"] = []  # an Agent's field, not a ServingDefaults one
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())


@pytest.mark.parametrize("manifest", [TEXT_PROMPT, CHAT_PROMPT])
def test_schema_takes_prompts_by_kind_with_the_version_shorthands(manifest: str) -> None:
    doc = yaml.safe_load(manifest)
    jsonschema.validate(doc, manifest_json_schema())
    doc["spec"]["versions"] = [3, "current", {"version": 4, "tags": {"a": "b"}}]
    jsonschema.validate(doc, manifest_json_schema())
    for spec in ({"template": "t.txt", "source": {"code": "a.py"}},  # an Agent's field
                 {"template": "t.txt", "format": "markdown"},
                 {"template": "t.txt", "name": "team/prompt"},
                 {"template": "t.txt", "versions": [0]},
                 {"template": "t.txt", "variables": ["1st"]},
                 {"name": "no-template"}):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**doc, "spec": spec}, manifest_json_schema())


@pytest.mark.parametrize("name", ["bot?x", "bot#x", "my bot", "bot\x01", "bot@x", "team/bot"])
def test_schema_rejects_model_names_that_could_never_be_served(name: str) -> None:
    doc = yaml.safe_load((REPO / "manifests" / "support-bot.yaml").read_text())
    doc["spec"]["registeredModel"] = name
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())
    doc["spec"]["registeredModel"] = "main.agents.support_bot"
    jsonschema.validate(doc, manifest_json_schema())


def undescribed(schema: dict[str, Any]) -> list[str]:
    """Every definition, and every property of an object schema anywhere in the schema, without
    a description (an anyOf branch that only constrains a property declares none)."""
    missing = [
        f"$defs.{name}"
        for name, d in schema["$defs"].items()
        if not d.get("description", "").strip()
    ]

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            declared = node.get("properties") if node.get("type") == "object" else None
            for name, prop in (declared or {}).items():
                if not isinstance(prop, dict) or not prop.get("description", "").strip():
                    missing.append(f"{where}.{name}")
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "")
    return missing


def test_every_definition_and_property_is_described() -> None:
    schema = manifest_json_schema()
    assert undescribed(schema) == []
    # the walk does see what it must: a schema without descriptions fails it
    bare = json.loads(json.dumps(schema).replace('"description"', '"x-gone"'))
    assert "$defs.TrafficTarget" in undescribed(bare)
    assert ".$defs.Serving.traffic" in undescribed(bare)


def test_required_fields_are_marked_required() -> None:
    defs = manifest_json_schema()["$defs"]
    assert sorted(defs["AgentManifest"]["required"]) == ["apiVersion", "kind", "metadata", "spec"]
    assert defs["Metadata"]["required"] == ["name"]
    assert defs["TrafficTarget"]["required"] == ["percent"]
    assert defs["Serving"]["required"] == ["traffic"]
    assert sorted(defs["Source"]["required"]) == ["code", "pipRequirements"]
    assert "required" not in defs["AgentSpec"]  # any one of several: see anyOf


AGENT_ONLY_A_NAME = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: bot
spec: {}
"""


def test_an_agent_that_is_only_a_name_is_refused_by_schema_and_loader(tmp_path: Path) -> None:
    doc = yaml.safe_load(AGENT_ONLY_A_NAME)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())
    doc["spec"] = {"versions": []}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())
    write_repo(tmp_path, AGENT_ONLY_A_NAME)
    (err,) = errors_of(tmp_path)
    assert err.location is not None and err.location.file.endswith("bot.yaml")
    assert (err.location.line, err.field) == (5, "spec")
    assert err.message.startswith("nothing to manage: give spec.source")


@pytest.mark.parametrize(
    "spec",
    [
        {"versions": [3]},
        {"registeredModel": "shared"},
        {"description": "registry only"},
        {"tags": {"team": "a"}},
    ],
    ids=lambda s: next(iter(s)),
)
def test_a_minimal_agent_is_accepted_by_schema_and_loader(
    tmp_path: Path, spec: dict[str, Any]
) -> None:
    doc = yaml.safe_load(AGENT_ONLY_A_NAME)
    doc["spec"] = spec
    jsonschema.validate(doc, manifest_json_schema())
    write_repo(tmp_path, yaml.safe_dump(doc))
    desired, _ = load(tmp_path)
    assert [a.name for a in desired.agents] == ["bot"]


def _nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [n for item in node for n in _nodes(item)]
    if not isinstance(node, dict):
        return []
    return [node, *(n for value in node.values() for n in _nodes(value))]


def test_titles_are_the_manifest_s_field_names_and_descriptions_are_markdown() -> None:
    schema = manifest_json_schema()
    titled = {
        name: prop["title"]
        for node in _nodes(schema)
        if isinstance(node.get("properties"), dict)
        for name, prop in node["properties"].items()
        if isinstance(prop, dict) and "title" in prop
    }
    assert titled["pipRequirements"] == "pipRequirements" and titled["minSamples"] == "minSamples"
    assert all(title == name for name, title in titled.items())
    descriptions = [
        n["description"] for n in _nodes(schema) if isinstance(n.get("description"), str)
    ]
    assert len(descriptions) > 50
    for text in descriptions:
        assert "``" not in text and ":class:" not in text, text
        assert "\n" not in text.replace("\n\n", ""), text  # no docstring line wraps
    assert schema["$defs"]["VersionEntry"]["description"] == (
        "A version the agent keeps: a registry number, `current` (built from spec.source), or a "
        "name with a source of its own."
    )
