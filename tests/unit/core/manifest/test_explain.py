"""Pydantic's errors in a manifest's own terms: the field, and one message for it."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from controller.core.manifest.explain import explain
from controller.core.manifest.schema import AgentManifest, ServingDefaults


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


def _unwrap(tp: Any) -> Any:
    """X | None -> X; Annotated[X, ...] -> X (a union of several stays as it is)."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_paths(model: type[BaseModel], path: tuple[str | int, ...] = ()) -> Iterator[Any]:
    """Every place in a manifest where a mapping of fields (a model) is expected."""
    for name, info in model.model_fields.items():
        here = (*path, info.alias or name)
        tp = _unwrap(info.annotation)
        if typing.get_origin(tp) is list:
            here, tp = (*here, 0), _unwrap(typing.get_args(tp)[0])
        elif typing.get_origin(tp) is dict:
            here, tp = (*here, "k"), _unwrap(typing.get_args(tp)[1])
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            yield here, tp
            yield from _model_paths(tp, here)


def _placed(path: tuple[str | int, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    return [_placed(rest, value)] if isinstance(head, int) else {head: _placed(rest, value)}


@pytest.mark.parametrize("top", [AgentManifest, ServingDefaults], ids=lambda m: m.__name__)
def test_a_non_mapping_where_fields_are_expected_is_said_in_the_manifest_s_terms(
    top: type[BaseModel],
) -> None:
    seen = set()
    for path, model in _model_paths(top):
        seen.add(model.__name__)
        data = _placed(path, [1])
        with pytest.raises(ValidationError) as info:
            top.model_validate(data)
        messages = dict(explain(info.value, data, top))
        assert path in messages, (path, messages)
        message = messages[path]
        assert message.startswith("must be a mapping"), (path, message)
        assert "instance of" not in message and model.__name__ not in message, (path, message)
        assert "dictionary" not in message, (path, message)
    assert {"Metadata", "VersionEntry"} <= seen or top is ServingDefaults


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"versions": [[1]]}, ("spec", "versions", 0),
         "must be a mapping (e.g. `version: 3`), or a version number or name alone "
         "(`- 3`, `- current`)"),
        ({"source": "agent.py"}, ("spec", "source"),
         "must be a mapping of fields (code, config, pipRequirements) (got 'agent.py')"),
        ({"tags": ["a"]}, ("spec", "tags"), "must be a mapping (e.g. `key: value`)"),
        ({"versions": "current"}, ("spec", "versions"),
         "must be a list (e.g. `[a, b]`, or one `- item` a line) (got 'current')"),
    ],
)  # fmt: skip
def test_the_shape_a_field_takes_is_shown(
    spec: dict[str, Any], path: tuple[str | int, ...], message: str
) -> None:
    assert (path, message) in explained(spec)


def test_spec_and_metadata_that_are_not_mappings() -> None:
    data = {"apiVersion": "agentctl.io/v1alpha1", "kind": "Agent", "metadata": "x", "spec": 5}
    with pytest.raises(ValidationError) as info:
        AgentManifest.model_validate(data)
    got = dict(explain(info.value, data))
    assert got[("metadata",)] == "must be a mapping of fields (name, labels, annotations) (got 'x')"
    assert got[("spec",)].startswith("must be a mapping of fields (registeredModel, description")
