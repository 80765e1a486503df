"""The checks of ``spec.evaluation`` that need no file: each scorer a built-in agentctl knows
(with the arguments it takes) or a code scorer, names unique, each threshold on a listed scorer,
once and reachable. Pure: no I/O (the loader reads the dataset and the code scorers' files).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

from controller.core.evaluation.spec import BUILTIN_ARGS, BUILTINS, JUDGES, builtin_name
from controller.core.manifest.problem import FieldPath, Problem
from controller.core.manifest.schema import AgentSpec, ScorerRef

__all__ = ["EVALUATION", "check_evaluation", "not_json", "scorer_name"]


EVALUATION: FieldPath = ("spec", "evaluation")


def scorer_name(ref: ScorerRef) -> str:
    """The name a scorer's results go by: its ``name``, else the built-in's own (pii_detection),
    else its function's."""
    if ref.name is not None:
        return ref.name
    if ref.builtin is not None:
        return builtin_name(ref.builtin) or ref.builtin
    return (ref.code or "").rpartition(":")[2]


def not_json(
    value: Any, path: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], str] | None:
    """Where ``value`` holds something that is not JSON data (a YAML timestamp, binary, a key
    that is not a string, a NaN), and what; None: all of it is."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value} is not a JSON number")
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = not_json(item, (*path, i))
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (path, f"key {key!r} is not a string")
            found = not_json(item, (*path, key))
            if found is not None:
                return found
        return None
    return (path, f"a {type(value).__name__} is not JSON data (quote it to make it a string)")


def check_evaluation(spec: AgentSpec) -> list[Problem]:
    """Each scorer a built-in agentctl knows (with the arguments it takes) or a code scorer,
    names unique; each threshold on a listed scorer, once, and reachable. The files (dataset,
    code scorers) are the loader's to read."""
    problems: list[Problem] = []
    evaluation = spec.evaluation
    if evaluation is None:
        return problems
    scorers: FieldPath = (*EVALUATION, "scorers")
    names: dict[str, int] = {}
    for i, ref in enumerate(evaluation.scorers):
        _check_scorer(problems, ref, (*scorers, i))
        name = scorer_name(ref)
        if name in names:
            problems.append(
                Problem(
                    (
                        *scorers,
                        i,
                        "name" if ref.name is not None else "builtin" if ref.builtin else "code",
                    ),
                    f"scorer name '{name}' is also scorers[{names[name]}]'s; give one of them "
                    "a `name:` of its own",
                    (scorers,),
                )
            )
        names.setdefault(name, i)
    # A built-in unknown (reported) may be meant to go by the name a threshold gives.
    unknown = any(
        r.builtin is not None and builtin_name(r.builtin) is None for r in evaluation.scorers
    )
    thresholds: FieldPath = (*EVALUATION, "thresholds")
    seen: dict[str, int] = {}
    for i, threshold in enumerate(evaluation.thresholds):
        path: FieldPath = (*thresholds, i)
        if threshold.scorer not in names and not unknown:
            problems.append(
                Problem(
                    (*path, "scorer"),
                    f"scorer '{threshold.scorer}' is not listed in spec.evaluation.scorers"
                    f"{_did_you_mean(threshold.scorer, names)} (listed: {_listing(names)})",
                    (scorers,),
                )
            )
        elif threshold.scorer in seen:
            problems.append(
                Problem(
                    (*path, "scorer"),
                    f"a second threshold for scorer '{threshold.scorer}' (first at "
                    f"thresholds[{seen[threshold.scorer]}]); give min, max and maxDrop in one",
                    (thresholds,),
                )
            )
        seen.setdefault(threshold.scorer, i)
        if (
            threshold.min is not None
            and threshold.max is not None
            and threshold.min > threshold.max
        ):
            problems.append(
                Problem(
                    (*path, "max"),
                    f"max {threshold.max:g} is under min {threshold.min:g}: no figure could pass",
                )
            )
    return problems


def _check_scorer(problems: list[Problem], ref: ScorerRef, path: FieldPath) -> None:
    if ref.code is not None:
        for key, given in (("args", bool(ref.args)), ("model", ref.model is not None)):
            if given:
                problems.append(
                    Problem((*path, key), f"only a built-in scorer takes {key}, not a code scorer")
                )
        return
    builtin = ref.builtin or ""
    if builtin_name(builtin) is None:
        known = [*BUILTINS, *JUDGES]
        problems.append(
            Problem(
                (*path, "builtin"),
                f"unknown built-in scorer '{builtin}'{_did_you_mean(builtin, known)} (without an "
                f"LLM: {', '.join(BUILTINS)}; LLM judges: {', '.join(JUDGES)})",
            )
        )
        return
    found = not_json(ref.args)
    if found is not None:
        problems.append(Problem((*path, "args", *found[0]), found[1]))
    if builtin in JUDGES:
        if ref.model is None:
            problems.append(
                Problem(
                    (*path, "builtin"),
                    f"{builtin} is an LLM judge: give its `model` (e.g. openai:/gpt-4o-mini); "
                    "agentctl does not pick a judge model for you",
                    ((*path, "model"),),
                )
            )
        for key in ("name", "model"):
            if key in ref.args:
                problems.append(
                    Problem(
                        (*path, "args", key), f"give {key} as the scorer's `{key}:`, not in args"
                    )
                )
        return
    if ref.model is not None:
        problems.append(
            Problem((*path, "model"), f"{builtin} runs no LLM: only an LLM judge takes a model")
        )
    allowed = BUILTIN_ARGS[builtin]
    misspelt = any(key not in allowed for key in ref.args)  # a missing one may be among them
    for key, value in ref.args.items():
        if key not in allowed:
            problems.append(
                Problem(
                    (*path, "args", key),
                    f"{builtin} takes no argument '{key}'{_did_you_mean(key, allowed)} "
                    f"(it takes: {_listing(allowed)})",
                )
            )
            continue
        choices = allowed[key]
        values = value if isinstance(value, list) and key == "pii_types" else [value]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or (key == "pii_types" and not isinstance(value, list)):
            problems.append(
                Problem(
                    (*path, "args", key),
                    f"{key} must be {'a list of ' if key == 'pii_types' else ''}one of "
                    f"{', '.join(choices or ())} (got {value!r})",
                )
            )
    if builtin == "RegexMatch":
        pattern = ref.args.get("pattern")
        if pattern is None:
            if not misspelt:
                problems.append(
                    Problem(
                        (*path, "args"), "RegexMatch needs args.pattern (e.g. {pattern: '^Answer'})"
                    )
                )
        elif not isinstance(pattern, str):
            problems.append(Problem((*path, "args", "pattern"), "pattern must be a string"))
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(
                    Problem((*path, "args", "pattern"), f"not a regular expression: {exc}")
                )
    if (
        builtin == "ResponseLength"
        and not misspelt
        and not {"min_length", "max_length"} & set(ref.args)
    ):
        problems.append(
            Problem(
                (*path, "args"),
                "ResponseLength needs args.min_length or args.max_length (e.g. {max_length: 500})",
            )
        )


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The closest choice as written, else the closest once case and '_' are set aside."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1)
    if not close:
        folded = {_fold(c): c for c in reversed(choices)}
        close = [folded[f] for f in difflib.get_close_matches(_fold(word), list(folded), n=1)]
    return f"; did you mean '{close[0]}'?" if close else ""


def _fold(word: str) -> str:
    return word.lower().replace("_", "")


def _listing(items: Iterable[object]) -> str:
    names = sorted(str(x) for x in items)
    return ", ".join(names) if names else "none"
