"""Repair: a manifest the schema refuses is repaired so the checks beyond it can still run; every
schema error is reported once, where it stands in the data, and nothing a repair caused."""

from __future__ import annotations

from typing import Any

import yaml

from controller.core.manifest.checks import check_manifest
from controller.core.manifest.repair import validate
from controller.core.manifest.schema import AgentManifest, ServingDefaults
from tests.support.manifests import GOOD


def good() -> dict[str, Any]:
    data = yaml.safe_load(GOOD)
    assert isinstance(data, dict)
    return data


def test_valid_data_is_validated_as_is() -> None:
    validated = validate(good(), AgentManifest)
    assert validated.model is not None and validated.errors == () and validated.dropped == ()


def test_an_unknown_field_is_dropped_and_the_rest_is_checked() -> None:
    data = good()
    data["spec"]["descriptio"] = "typo"
    data["spec"]["serving"]["traffic"][0]["percent"] = 90
    validated = validate(data, AgentManifest)
    assert [path for path, _ in validated.errors] == [("spec", "descriptio")]
    assert validated.model is not None
    assert validated.dropped == (("spec", "descriptio"),)
    problems = check_manifest(validated.model)
    assert [(p.path, p.message) for p in problems] == [
        (("spec", "serving", "traffic"), "traffic percents sum to 90; they must sum to 100")
    ]
    assert data["spec"]["descriptio"] == "typo", "the data itself is left as it was"


def test_a_dropped_required_field_takes_its_parent_and_is_reported_once() -> None:
    data = good()
    del data["spec"]["source"]["code"]
    data["spec"]["serving"]["traffic"][0]["percent"] = "100"
    validated = validate(data, AgentManifest)
    assert sorted(validated.errors) == [
        (
            ("spec", "serving", "traffic", 0, "percent"),
            "Input should be a valid integer (got '100')",
        ),
        (("spec", "source", "code"), "required field is missing"),
    ]
    assert validated.model is not None
    assert validated.model.spec.source is None and validated.model.spec.serving is None
    assert validated.affects(("spec", "source")) and validated.affects(("spec", "serving"))
    assert not validated.affects(("spec", "aliases"))


def test_list_items_dropped_keep_the_paths_of_the_data() -> None:
    data = good()
    data["spec"]["versions"] = ["current", 0, "Not A Label", 3]
    validated = validate(data, AgentManifest)
    assert validated.model is not None
    assert [e.version for e in validated.model.spec.versions] == ["current", 3]
    assert {path for path, _ in validated.errors} == {
        ("spec", "versions", 1),
        ("spec", "versions", 2),
    }
    assert set(validated.dropped) == {("spec", "versions", 1), ("spec", "versions", 2)}
    # version 3 is versions[1] of the repaired copy, and versions[3] of the file
    assert validated.original(("spec", "versions", 1, "tags")) == ("spec", "versions", 3, "tags")
    assert validated.original(("spec", "versions", 0)) == ("spec", "versions", 0)


def test_an_error_found_only_once_a_field_validates_is_reported_at_its_place() -> None:
    # traffic[1]'s own fields are wrong: dropping them leaves a target with neither version nor
    # alias, which is the repair's doing, not the author's.
    data = good()
    data["spec"]["serving"]["traffic"] = [
        {"alias": "champion", "percent": 50},
        {"alias": "bad alias!", "percent": 50},
        {"version": 1, "alias": "champion", "percent": 0},
    ]
    validated = validate(data, AgentManifest)
    assert sorted(validated.errors) == [
        (
            ("spec", "serving", "traffic", 1, "alias"),
            "an alias may contain only letters, digits, '_' and '-' (got 'bad alias!')",
        ),
        (
            ("spec", "serving", "traffic", 2),
            "Value error, give exactly one of 'version' or 'alias'",
        ),
    ]
    assert validated.model is not None
    assert [t.alias for t in validated.model.spec.serving.traffic] == ["champion"]  # type: ignore[union-attr]


def test_a_wrong_api_version_is_set_and_the_rest_still_checked() -> None:
    data = good()
    data["apiVersion"] = "agentctl.io/v2"
    data["spec"]["aliaz"] = {}
    validated = validate(data, AgentManifest)
    assert [path for path, _ in validated.errors] == [("apiVersion",), ("spec", "aliaz")]
    assert validated.model is not None


def test_an_invalid_name_gets_a_stand_in_that_is_marked_as_repaired() -> None:
    data = good()
    data["metadata"]["name"] = "Bot_1"
    validated = validate(data, AgentManifest)
    assert [path for path, _ in validated.errors] == [("metadata", "name")]
    assert validated.model is not None and validated.affects(("metadata", "name"))


def test_what_cannot_be_repaired_gives_no_model_and_every_error() -> None:
    validated = validate({"apiVersion": "agentctl.io/v1alpha1", "kind": "Agent"}, AgentManifest)
    assert validated.model is None
    assert sorted(validated.errors) == [
        (("metadata",), "required field is missing"),
        (("spec",), "required field is missing"),
    ]


def test_serving_defaults_are_repaired_too() -> None:
    data = {
        "apiVersion": "agentctl.io/v1alpha1",
        "kind": "ServingDefaults",
        "metadata": {"name": "defaults"},
        "spec": {"kubernetes": {"replicas": -1, "image": "team/agents:1"}},
    }
    validated = validate(data, ServingDefaults)
    assert [path for path, _ in validated.errors] == [("spec", "kubernetes", "replicas")]
    assert validated.model is not None
    assert validated.model.spec.kubernetes is not None
    assert validated.model.spec.kubernetes.image == "team/agents:1"


def test_shared_yaml_aliases_are_not_changed_by_a_repair() -> None:
    shared = {"team": "a", "bad key!": "x"}
    data = good()
    data["spec"]["tags"] = shared
    data["metadata"]["labels"] = shared
    validated = validate(data, AgentManifest)
    assert {path for path, _ in validated.errors} == {
        ("spec", "tags", "bad key!"),
        ("metadata", "labels", "bad key!"),
    }
    assert shared == {"team": "a", "bad key!": "x"}
