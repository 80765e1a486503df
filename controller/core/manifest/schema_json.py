"""The JSON Schema of a manifest (``kind: Agent`` or ``kind: ServingDefaults``), for
``agentctl schema`` and editors. Pure data."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from controller.core.manifest.schema import API_VERSION, AgentManifest, ServingDefaults

__all__ = ["SCHEMA_ID", "manifest_json_schema"]

SCHEMA_ID = "https://agentctl.io/schemas/v1alpha1/agent.json"


def manifest_json_schema() -> dict[str, Any]:
    either = TypeAdapter(Annotated[AgentManifest | ServingDefaults, Field(discriminator="kind")])
    schema = either.json_schema(by_alias=True, mode="validation")
    # `versions` items also take the shorthands `- 3` and `- current` (see VersionEntry).
    versions = schema["$defs"]["AgentSpec"]["properties"]["versions"]
    versions["items"] = {
        "anyOf": [
            versions["items"],
            {"type": "integer", "minimum": 1},
            {"const": "current"},
        ]
    }
    # Something to manage (see checks.something_to_manage): not an agent that is only a name.
    schema["$defs"]["AgentSpec"]["anyOf"] = [
        {"required": ["source"], "properties": {"source": {"type": "object"}}},
        {"required": ["versions"], "properties": {"versions": {"minItems": 1}}},
        {"required": ["registeredModel"], "properties": {"registeredModel": {"type": "string"}}},
        {"required": ["description"], "properties": {"description": {"type": "string"}}},
        {"required": ["tags"], "properties": {"tags": {"minProperties": 1}}},
    ]
    return {
        **schema,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"agentctl manifest ({API_VERSION})",
    }
