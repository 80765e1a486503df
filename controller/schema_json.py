"""The JSON Schema of an Agent manifest, for ``agentctl schema`` and editors. Pure data."""

from __future__ import annotations

from typing import Any

from controller.schema import API_VERSION, AgentManifest

__all__ = ["SCHEMA_ID", "manifest_json_schema"]

SCHEMA_ID = "https://agentctl.io/schemas/v1alpha1/agent.json"


def manifest_json_schema() -> dict[str, Any]:
    schema = AgentManifest.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"agentctl Agent ({API_VERSION})",
        **schema,
    }
