"""The JSON Schema of a manifest (``kind: Agent``, ``Prompt``, ``Environment`` or ``ServingDefaults``), for
``agentctl schema`` and editors. Pure data."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from controller.core.manifest.schema import API_VERSION, AgentManifest, ServingDefaults
from controller.core.manifest.schema_environment import EnvironmentManifest
from controller.core.manifest.schema_prompt import PromptManifest

__all__ = ["SCHEMA_ID", "manifest_json_schema"]

SCHEMA_ID = "https://agentctl.io/schemas/v1alpha1/agent.json"


def manifest_json_schema() -> dict[str, Any]:
    either = TypeAdapter(
        Annotated[
            AgentManifest | PromptManifest | EnvironmentManifest | ServingDefaults,
            Field(discriminator="kind"),
        ]
    )
    schema = either.json_schema(by_alias=True, mode="validation")
    # `versions` items also take the shorthands `- 3` and `- current` (see VersionEntry and
    # PromptVersionEntry).
    for spec in ("AgentSpec", "PromptSpec"):
        versions = schema["$defs"][spec]["properties"]["versions"]
        versions["items"] = {
            "anyOf": [
                versions["items"],
                {"type": "integer", "minimum": 1},
                {"const": "current"},
            ]
        }
    # `dataset: path` is a shorthand for `dataset: {file: path}` (see DatasetRef).
    evaluation = schema["$defs"]["Evaluation"]["properties"]
    evaluation["dataset"] = {
        "anyOf": [evaluation["dataset"], {"type": "string", "minLength": 1}],
        "description": schema["$defs"]["DatasetRef"].get("description", ""),
    }
    # Something to manage (see checks.something_to_manage): not an agent that is only a name.
    schema["$defs"]["AgentSpec"]["anyOf"] = [
        {"required": ["source"], "properties": {"source": {"type": "object"}}},
        {"required": ["versions"], "properties": {"versions": {"minItems": 1}}},
        {"required": ["registeredModel"], "properties": {"registeredModel": {"type": "string"}}},
        {"required": ["description"], "properties": {"description": {"type": "string"}}},
        {"required": ["tags"], "properties": {"tags": {"minProperties": 1}}},
    ]
    _as_written(schema)
    return {
        **schema,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"agentctl manifest ({API_VERSION})",
    }


_LITERAL = re.compile(r"``(.+?)``", re.S)
_WRAPPED = re.compile(r"(?<!\n)\n(?!\n)")


def _as_written(node: Any) -> None:
    """In place, what editors show: each property titled by its name in the manifest
    (``pipRequirements``, not pydantic's "Piprequirements"), and each description as markdown
    (single backticks; a docstring's wrapped lines joined, its paragraphs kept)."""
    if isinstance(node, list):
        for item in node:
            _as_written(item)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("description"), str):
        node["description"] = _WRAPPED.sub(" ", _LITERAL.sub(r"`\1`", node["description"]))
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name, prop in properties.items():
            if isinstance(prop, dict) and "title" in prop:
                prop["title"] = name
    for value in node.values():
        _as_written(value)  # a description's text is a str: left as it is
