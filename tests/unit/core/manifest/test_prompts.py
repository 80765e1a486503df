"""The checks of a Prompt manifest beyond its schema, and of agents' bindings against the
prompts declared: each problem at the path of the field at fault."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.manifest.prompts import (
    check_bindings,
    check_prompt,
    declared_versions,
    did_you_mean,
)
from controller.core.manifest.schema_prompt import PromptManifest


def prompt(**spec: Any) -> PromptManifest:
    return PromptManifest.model_validate(
        {
            "apiVersion": "agentctl.io/v1alpha1",
            "kind": "Prompt",
            "metadata": {"name": "support-system"},
            "spec": {"template": "t.txt", **spec},
        }
    )


def problems(m: PromptManifest) -> list[tuple[tuple[str | int, ...], str]]:
    return [(p.path, p.message) for p in check_prompt(m)]


def test_a_valid_prompt_has_no_problem_and_current_is_always_declared() -> None:
    m = prompt(versions=[3, "current"], aliases={"production": "current", "stable": 3})
    assert problems(m) == []
    assert declared_versions(m) == {"current", 3}
    assert declared_versions(prompt()) == {"current"}
    assert problems(prompt(aliases={"production": "current"})) == []


def test_an_alias_to_a_version_not_declared() -> None:
    assert problems(prompt(versions=[2], aliases={"stable": 3})) == [
        (
            ("spec", "aliases", "stable"),
            "alias 'stable' points to version 3, which spec.versions does not declare "
            "(declared: 2, current)",
        )
    ]


@pytest.mark.parametrize("alias", ["latest", "v2", "V10"])
def test_reserved_aliases(alias: str) -> None:
    assert problems(prompt(aliases={alias: "current"})) == [
        (("spec", "aliases", alias), f"alias '{alias}' is reserved by MLflow ('latest' and v<N>)")
    ]


def test_a_version_listed_twice() -> None:
    assert problems(prompt(versions=[3, "current", 3])) == [
        (
            ("spec", "versions", 2, "version"),
            "version 3 is declared twice (first at spec.versions[0])",
        )
    ]


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("agentctl.io/owner", "reserved for agentctl"),
        ("mlflow.prompt.is_prompt", "MLflow's own prompt tag"),
        ("mlflow.prompt.anything", "MLflow's own prompt tag"),
        ("_mlflow_prompt_type", "MLflow's own prompt tag"),
        ("a//b", "normalised path"),
    ],
)
def test_reserved_and_unusable_tag_keys_on_the_prompt_and_its_versions(
    key: str, fragment: str
) -> None:
    m = prompt(tags={key: "x"}, versions=[{"version": 3, "tags": {key: "y"}}])
    got = problems(m)
    assert [path for path, _ in got] == [
        ("spec", "tags", key),
        ("spec", "versions", 0, "tags", key),
    ]
    assert all(fragment in message for _, message in got)


def test_mlflow_tags_that_are_not_the_prompt_s_own_are_a_user_s() -> None:
    assert problems(prompt(tags={"mlflow.source": "x", "team": "support"})) == []


@pytest.mark.parametrize("name", [".", ".."])
def test_a_prompt_name_that_mlflow_refuses_as_a_path(name: str) -> None:
    [(path, message)] = problems(prompt(name=name))
    assert path == ("spec", "name")
    assert f"'{name}' is not a usable prompt name" in message


def test_bindings_against_the_declared_prompts() -> None:
    declared = {
        "support-system": prompt(versions=[3], aliases={"production": "current", "stable": 3})
    }
    bindings = {
        "ok_alias": "support-system@production",
        "ok_version": "support-system/3",
        "undeclared_prompt": "elsewhere@production",
        "typo": "support-system@prodction",
        "unknown": "support-system@canary",
        "number": "support-system/7",
    }
    got = [(p.path, p.message) for p in check_bindings(bindings, declared)]
    assert got == [
        (
            ("spec", "prompts", "typo"),
            "binding 'typo': prompt 'support-system' declares no alias 'prodction'; "
            "did you mean 'production'?",
        ),
        (
            ("spec", "prompts", "unknown"),
            "binding 'unknown': prompt 'support-system' declares no alias 'canary' "
            "(declared: production, stable)",
        ),
        (
            ("spec", "prompts", "number"),
            "binding 'number': prompt 'support-system' declares no version 7 in spec.versions "
            "(declared numbers: 3; bind an alias to follow the template)",
        ),
    ]


def test_did_you_mean() -> None:
    assert did_you_mean("prodction", ["production", "stable"]) == "; did you mean 'production'?"
    assert did_you_mean("x", ["b", "a"]) == " (declared: a, b)"
    assert did_you_mean("x", []) == " (declared: none)"
