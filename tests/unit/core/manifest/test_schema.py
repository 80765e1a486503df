"""`agentctl schema`: a JSON Schema that accepts the examples, rejects bad manifests, and matches
the committed agentctl.schema.json that editors use."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from controller.app.cli import app
from controller.core.manifest.schema_json import manifest_json_schema

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


@pytest.mark.parametrize("name", ["bot?x", "bot#x", "my bot", "bot\x01", "bot@x", "team/bot"])
def test_schema_rejects_model_names_that_could_never_be_served(name: str) -> None:
    doc = yaml.safe_load((REPO / "manifests" / "support-bot.yaml").read_text())
    doc["spec"]["registeredModel"] = name
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_json_schema())
    doc["spec"]["registeredModel"] = "main.agents.support_bot"
    jsonschema.validate(doc, manifest_json_schema())
