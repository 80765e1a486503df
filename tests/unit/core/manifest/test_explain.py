"""Pydantic's errors in a manifest's own terms: the field, and one message for it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.manifest.explain import explain
from controller.core.manifest.schema import AgentManifest


def explained(spec: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    data = {"apiVersion": "agentctl.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "bot"}, "spec": spec}  # fmt: skip
    with pytest.raises(ValidationError) as info:
        AgentManifest.model_validate(data)
    return explain(info.value, data)


def test_an_unknown_field_is_named_with_the_closest_allowed_one() -> None:
    [(path, message)] = explained({"registeredModel": "bot", "aliasses": {}})
    assert path == ("spec", "aliasses")
    assert message.startswith("unknown field 'aliasses'; did you mean 'aliases'?")


def test_a_version_is_a_number_or_a_name_in_one_message() -> None:
    [(path, message)] = explained({"versions": ["Latest"]})
    assert path == ("spec", "versions", 0)
    assert message == (
        "must be a version number (an integer >= 1), 'current', or the name of a version with a "
        "source of its own (a lowercase label) (got 'Latest')"
    )


def test_a_model_name_that_could_never_be_served_says_why() -> None:
    [(path, message)] = explained({"registeredModel": "a/b"})
    assert path == ("spec", "registeredModel")
    assert "may not contain '/'" in message and "(got 'a/b')" in message
