"""Semantic checks of a ``kind: Prompt`` manifest beyond its schema, and of agents' prompt
bindings against the prompts declared beside them. Pure data: no I/O.

Each problem names the path of the field that is wrong, so that the loader can point at its file
and line (see :mod:`controller.core.manifest.checks` for the agents' own checks).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from controller.core.manifest.checks import not_a_unique_path
from controller.core.manifest.problem import FieldPath, Problem
from controller.core.manifest.schema import ALIAS_RESERVED, RESERVED_TAG_PREFIX
from controller.core.manifest.schema_prompt import PromptManifest, PromptVersionRef
from controller.core.prompt.binding import parse_binding
from controller.core.prompt.content import RESERVED_PROMPT_TAGS

__all__ = ["check_bindings", "check_prompt", "declared_versions", "did_you_mean"]

VERSIONS: FieldPath = ("spec", "versions")
#: Tag keys MLflow keeps for a prompt's own content and bookkeeping.
_MLFLOW_PREFIXES = ("mlflow.prompt.", "_mlflow_prompt_")


def declared_versions(m: PromptManifest) -> set[PromptVersionRef]:
    """The versions the prompt keeps: 'current' (always: the template) and those listed."""
    return {"current", *(entry.version for entry in m.spec.versions)}


def check_prompt(m: PromptManifest) -> list[Problem]:
    spec = m.spec
    problems: list[Problem] = []
    name_path: FieldPath = ("spec", "name") if spec.name is not None else ("metadata", "name")
    if not_a_unique_path(m.prompt_name):
        problems.append(
            Problem(
                name_path,
                f"'{m.prompt_name}' is not a usable prompt name: MLflow refuses names that are "
                "not a normalised path ('.', '..')",
                (("spec", "name"), ("metadata", "name")),
            )
        )

    for where, tags in (
        (("spec", "tags"), spec.tags),
        *(((*VERSIONS, i, "tags"), v.tags) for i, v in enumerate(spec.versions)),
    ):
        for key in tags:
            problems.extend(_check_tag_key((*where, key), key))

    first: dict[PromptVersionRef, int] = {}
    for i, entry in enumerate(spec.versions):
        if entry.version in first:
            problems.append(
                Problem(
                    (*VERSIONS, i, "version"),
                    f"version {entry.version} is declared twice "
                    f"(first at spec.versions[{first[entry.version]}])",
                    (VERSIONS,),
                )
            )
        else:
            first[entry.version] = i

    known = declared_versions(m)
    for alias, ref in spec.aliases.items():
        path: FieldPath = ("spec", "aliases", alias)
        if ALIAS_RESERVED.match(alias):
            problems.append(
                Problem(path, f"alias '{alias}' is reserved by MLflow ('latest' and v<N>)")
            )
        if ref not in known:
            problems.append(
                Problem(
                    path,
                    f"alias '{alias}' points to version {ref}, which spec.versions does not "
                    f"declare (declared: {_listing(known)})",
                    (VERSIONS,),
                )
            )
    return problems


def _check_tag_key(path: FieldPath, key: str) -> list[Problem]:
    out = []
    if not_a_unique_path(key):
        out.append(
            Problem(path, "MLflow refuses tag keys that are not a normalised path ('a//b', 'a/')")
        )
    if key.startswith(RESERVED_TAG_PREFIX):
        out.append(
            Problem(path, f"tag keys under '{RESERVED_TAG_PREFIX}' are reserved for agentctl")
        )
    elif key in RESERVED_PROMPT_TAGS or key.startswith(_MLFLOW_PREFIXES):
        out.append(
            Problem(
                path,
                f"'{key}' is MLflow's own prompt tag (keys starting with mlflow.prompt. or "
                "_mlflow_prompt_ hold the template and its settings): set spec.template, "
                "spec.responseFormat or spec.modelConfig instead",
            )
        )
    return out


def check_bindings(
    bindings: Mapping[str, str], declared: Mapping[str, PromptManifest]
) -> list[Problem]:
    """An agent's ``spec.prompts`` against the prompts declared by their registered name: a
    binding to a declared prompt names one of its aliases, or one of its versions. A binding to
    a prompt not declared here is left to the planner (the registry may hold it)."""
    problems = []
    for key, value in bindings.items():
        binding = parse_binding(key, value)
        prompt = declared.get(binding.prompt)
        if prompt is None:
            continue
        path: FieldPath = ("spec", "prompts", key)
        if binding.alias is not None and binding.alias not in prompt.spec.aliases:
            problems.append(
                Problem(
                    path,
                    f"binding '{key}': prompt '{binding.prompt}' declares no alias "
                    f"'{binding.alias}'{did_you_mean(binding.alias, prompt.spec.aliases)}",
                )
            )
        elif binding.version is not None and binding.version not in declared_versions(prompt):
            numbers = [e.version for e in prompt.spec.versions if isinstance(e.version, int)]
            problems.append(
                Problem(
                    path,
                    f"binding '{key}': prompt '{binding.prompt}' declares no version "
                    f"{binding.version} in spec.versions (declared numbers: {_listing(numbers)}; "
                    "bind an alias to follow the template)",
                )
            )
    return problems


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices``, else the choices declared."""
    names = sorted(choices)
    close = difflib.get_close_matches(word, names, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (declared: {_listing(names)})"


def _listing(items: Iterable[object]) -> str:
    names = sorted(str(x) for x in items)
    return ", ".join(names) if names else "none"
