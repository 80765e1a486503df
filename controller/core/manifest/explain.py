"""What pydantic's validation errors mean for a manifest's author: the field each one is about
(in the data's own terms, not pydantic's union branches) and one clear message per field.
Pure: no I/O.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from controller.core.evaluation.spec import BUILTINS, JUDGES
from controller.core.manifest.checks import FieldPath
from controller.core.manifest.schema import (
    MODEL_NAME_PATTERN,
    PROMPT_BINDING_PATTERN,
    VERSION_NAME_PATTERN,
    AgentManifest,
)
from controller.core.manifest.schema_environment import MODEL_RULE_PATTERN
from controller.core.manifest.schema_prompt import PROMPT_NAME_PATTERN

__all__ = ["explain"]


def explain(
    exc: ValidationError, data: Any, model: type[BaseModel] = AgentManifest
) -> list[tuple[FieldPath, str]]:
    """Each field pydantic refused in ``data``, with one message saying why (errors of the same
    field merged; an unknown field's closest allowed name suggested)."""
    grouped: dict[FieldPath, tuple[list[str], str]] = {}
    out: list[tuple[FieldPath, str]] = []
    for err in exc.errors():
        path = _data_path(data, err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = f"unknown field '{path[-1]}'" + _suggest(path, model)
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "model_type":
            msg = _mapping_help(path, model)
        elif kind == "dict_type":
            msg = "must be a mapping (e.g. `key: value`)"
        elif kind == "list_type":
            msg = "must be a list (e.g. `[a, b]`, or one `- item` a line)"
        elif kind == "string_pattern_mismatch":
            pattern = str((err.get("ctx") or {}).get("pattern", ""))
            msg = _PATTERN_HELP.get(pattern, err["msg"])
            if pattern == _BUILTIN_PATTERN:
                msg += _builtin_hint(err.get("input"))
        else:
            msg = err["msg"]
        got = ""
        if (
            kind not in ("missing", "extra_forbidden")
            and "input" in err
            and not isinstance(err["input"], dict | list)
        ):
            got = f" (got {err['input']!r})"
        msgs, _ = grouped.setdefault(path, ([], got))
        if msg not in msgs:
            msgs.append(msg)
    for path, (msgs, got) in grouped.items():
        if len(msgs) == 1:
            message = msgs[0]
        elif any("valid integer" in m for m in msgs) and (
            _VERSION_NAME_HELP in msgs or any("valid string" in m for m in msgs)
        ):
            message = (
                "must be a version number (an integer >= 1), 'current', or the name of a version "
                "with a source of its own (a lowercase label)"
            )
        else:
            message = "expected one of: " + "; or ".join(msgs)
        out.append((path, message + got))
    return out


_BUILTIN_PATTERN = r"^[A-Z][A-Za-z0-9]*$"
_VERSION_NAME_HELP = (
    "a version name must be a lowercase label: letters, digits and '-', starting with a letter "
    "and ending with a letter or digit, at most 63 characters"
)
_PATTERN_HELP = {
    VERSION_NAME_PATTERN: _VERSION_NAME_HELP,
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "must be a DNS label: lowercase letters, digits and '-', starting and ending with a "
        "letter or digit, at most 63 characters"
    ),
    MODEL_NAME_PATTERN: (
        "a registered model name may not contain '/', ':', '?', '#', '%', '@', whitespace or "
        "control characters (it is served as models:/<name>/<version>)"
    ),
    r"^[\w\-]+$": "an alias may contain only letters, digits, '_' and '-'",
    r"^[/\w.\- ]+$": "a tag key may contain only letters, digits, '_', '-', '.', '/' and spaces",
    _BUILTIN_PATTERN: "a built-in scorer is named by its class in mlflow.genai.scorers",
    r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$": (
        "a code scorer is 'path/to/file.py:function' (the file relative to the manifest)"
    ),
    r"^[A-Za-z_][A-Za-z0-9_.-]*$": (
        "a scorer name may contain only letters, digits, '_', '.' and '-', starting with a letter "
        "or '_' (its results are logged as <name>/mean)"
    ),
    r"^[a-z][a-z0-9_-]*:/.+$": "a judge's model is a URI '<provider>:/<model>' (e.g. openai:/gpt-4o-mini)",
    PROMPT_BINDING_PATTERN: (
        "a prompt binding is <prompt>@<alias> or <prompt>/<version> (e.g. "
        "support-system@production, support-system/3)"
    ),
    MODEL_RULE_PATTERN: (
        "a naming rule is a registered model name in which only {agent} and {env} are replaced "
        "(e.g. {agent}-{env}, main.{env}.{agent})"
    ),
    PROMPT_NAME_PATTERN: "a prompt name may contain only letters, digits, '_', '-' and '.'",
    r"^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)*$": (
        "a variable is a name of letters, digits and '_' (not starting with a digit), or dotted "
        "names such as user.name"
    ),
    r"^[A-Za-z_][A-Za-z0-9_-]*$": (
        "a binding's name (the key the agent's code reads) may contain only letters, digits, '_' "
        "and '-', starting with a letter or '_'"
    ),
}


#: How a mapping of these models is written, for the message when something else was given.
_MAPPING_EXAMPLES = {
    "VersionEntry": "must be a mapping (e.g. `version: 3`), or a version number or name alone "
    "(`- 3`, `- current`)",
    "TrafficTarget": "must be a mapping (e.g. `{alias: champion, percent: 100}`)",
    "ShadowTarget": "must be a mapping (e.g. `{version: 3, percent: 10}`)",
    "ScorerRef": "must be a mapping (e.g. `{builtin: PIIDetection}` or "
    "`{code: eval/scorers.py:is_polite}`)",
    "Threshold": "must be a mapping (e.g. `{scorer: pii_detection, min: 1.0}`)",
    "DatasetRef": "must be a mapping (`{mlflow: <dataset name>}` or `{file: <path>}`), or a "
    "file name alone (`dataset: eval/questions.jsonl`)",
}


def _builtin_hint(given: Any) -> str:
    """The built-in a misspelt name most likely means (``pii_detection`` -> PIIDetection)."""
    if not isinstance(given, str):
        return ""
    by_result = {v: k for k, v in {**BUILTINS, **JUDGES}.items()}
    folded = {k.lower(): k for k in [*BUILTINS, *JUDGES]}
    found = by_result.get(given) or folded.get(given.lower().replace("_", ""))
    if found is None:
        close = difflib.get_close_matches(given.lower(), list(folded), n=1)
        found = folded[close[0]] if close else None
    return f"; did you mean '{found}'?" if found else ""


def _mapping_help(path: FieldPath, model: type[BaseModel]) -> str:
    """A mapping of fields was expected at ``path``: said in the manifest's terms (the fields it
    takes), not in the name of the model class that pydantic knows it by."""
    tp = _unwrap(_type_at(path, model))
    if isinstance(tp, type) and tp.__name__ in _MAPPING_EXAMPLES:
        return _MAPPING_EXAMPLES[tp.__name__]
    allowed = _allowed_fields(path, model)
    return "must be a mapping of fields" + (f" ({', '.join(allowed)})" if allowed else "")


def _data_path(data: Any, loc: tuple[int | str, ...]) -> FieldPath:
    """Keep the elements of a pydantic error location that address the data (not union tags)."""
    path: list[str | int] = []
    cur = data
    for elem in loc:
        if isinstance(cur, dict) and elem in cur:
            path.append(str(elem))
            cur = cur[elem]
        elif isinstance(cur, list) and isinstance(elem, int) and 0 <= elem < len(cur):
            path.append(elem)
            cur = cur[elem]
        elif isinstance(cur, dict) and isinstance(elem, str) and not _is_branch_tag(elem):
            path.append(elem)  # a missing or unknown key: keep it so the message can name it
            cur = None
    return tuple(path)


def _is_branch_tag(elem: str) -> bool:
    return "[" in elem or elem in {"int", "str", "bool", "float", "list", "dict"}


def _suggest(path: FieldPath, model: type[BaseModel] = AgentManifest) -> str:
    allowed = _allowed_fields(path[:-1], model)
    if not allowed:
        return ""
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} (allowed: {', '.join(sorted(allowed))})"


def _type_at(path: FieldPath, model: type[BaseModel] = AgentManifest) -> Any:
    """The type the schema of ``model`` expects at ``path`` (None if there is none)."""
    tp: Any = model
    for elem in path:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {(f.alias or n): f for n, f in tp.model_fields.items()}
            if elem not in fields:
                return None
            tp = fields[str(elem)].annotation
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def _allowed_fields(path: FieldPath, model: type[BaseModel] = AgentManifest) -> list[str]:
    """The YAML field names allowed at ``path`` in the schema of ``model``."""
    tp = _unwrap(_type_at(path, model))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """Optional[X] / X | None -> X; Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            models = [
                a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            others = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = models[0] if models else (others[0] if len(others) == 1 else tp)
            if tp not in models and len(others) != 1:
                return tp
        else:
            return tp
