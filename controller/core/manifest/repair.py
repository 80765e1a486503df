"""Validate a manifest's data and, when the schema refuses it, repair a copy so that the checks
beyond the schema can still run: every problem of a file is then reported in one run. Pure: no I/O.

The repair drops what pydantic refused (an unknown or invalid field, a list item, a mapping entry)
and validates again, until the copy validates or nothing more can be dropped. A required field
that is missing or dropped takes its parent with it (which then falls back to its default); a
required field with a single allowed value (``apiVersion``, ``kind``) is set to it instead. Every
schema error is reported once, in the data's own paths (list indices as written), and an error
that is only a consequence of an earlier drop (a required field now missing) is not reported.
What was dropped is kept, so that a caller can leave out a later problem that a drop may have
caused (:meth:`Validated.affects`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from controller.core.manifest.checks import FieldPath
from controller.core.manifest.explain import explain

__all__ = ["Validated", "validate"]

M = TypeVar("M", bound=BaseModel)

#: More rounds than any manifest needs (each drops at least one node); a bound all the same.
MAX_ROUNDS = 50


@dataclass(frozen=True, slots=True)
class Validated(Generic[M]):
    """The data as validated: ``model`` is the data itself when ``errors`` is empty, its repaired
    copy when not, and None when even a repair does not validate."""

    model: M | None
    errors: tuple[tuple[FieldPath, str], ...]
    #: What the repair dropped or replaced, in the data's own paths.
    dropped: tuple[FieldPath, ...] = ()
    #: The same drops, each in the paths of the copy it was made in.
    drops: tuple[FieldPath, ...] = ()

    def affects(self, *paths: FieldPath) -> bool:
        """Whether the repair touched any of ``paths`` (in the data's own paths), something under
        one, or one's parent."""
        return any(_related(p, d) for p in paths for d in self.dropped)

    def original(self, path: FieldPath) -> FieldPath:
        """A path of ``model`` -> the same place in the data as written (a dropped list item
        moves the items after it)."""
        return _original(path, list(self.drops))


def validate(data: Any, model: type[M]) -> Validated[M]:
    """Validate ``data`` as ``model``, repairing a copy as needed (see the module's doc)."""
    outcome = _attempt(model, data)
    if not isinstance(outcome, ValidationError):
        return Validated(outcome, ())
    current = data
    errors: list[tuple[FieldPath, str]] = []
    # Each drop in the coordinates of the copy it was made in: a list item's removal shifts the
    # indices of the items after it, and a later path is mapped back through it.
    drops: list[FieldPath] = []
    dropped: list[FieldPath] = []  # the same drops, in the data's own paths
    for _ in range(MAX_ROUNDS):
        targets: list[FieldPath] = []
        for path, message in explain(outcome, current, model):
            original = _original(path, drops)
            if not any(_related(original, d) for d in dropped):
                errors.append((original, message))
            if _stand_in(model, path) is not None or _has(current, path):
                targets.append(path)
            else:
                targets.append(path[:-1])
        progressed = False
        for target in _outermost(targets):
            fixed = _stand_in(model, target)
            if fixed is not None:
                if _get(current, target) == fixed[0]:
                    continue  # already the value a repair would give: nothing left to try
                current = _replaced(current, target, fixed[0])
            elif not target:
                continue  # the document itself: nothing to drop
            else:
                current = _without(current, target)
                drops.append(target)
            dropped.append(_original(target, drops[:-1] if fixed is None else drops))
            progressed = True
        if not progressed:
            break
        outcome = _attempt(model, current)
        if not isinstance(outcome, ValidationError):
            return Validated(outcome, tuple(errors), tuple(dropped), tuple(drops))
    return Validated(None, tuple(errors), tuple(dropped), tuple(drops))


def _attempt(model: type[M], data: Any) -> M | ValidationError:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return exc


def _related(a: FieldPath, b: FieldPath) -> bool:
    """One path is the other or lies under it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _original(path: FieldPath, drops: list[FieldPath]) -> FieldPath:
    """``path`` in the copy made by ``drops`` -> the same place in the data as written."""
    out = list(path)
    for drop in reversed(drops):
        parent, last = drop[:-1], drop[-1]
        n = len(parent)
        if not isinstance(last, int) or len(out) <= n or tuple(out[:n]) != parent:
            continue
        at = out[n]
        if isinstance(at, int) and at >= last:
            out[n] = at + 1
    return tuple(out)


def _outermost(paths: list[FieldPath]) -> list[FieldPath]:
    """Distinct paths, none under another, list items last-first (so removing one does not move
    the next)."""
    unique = sorted(set(paths), key=len)
    kept: list[FieldPath] = []
    for p in unique:
        if not any(_related(p, k) and len(k) <= len(p) for k in kept):
            kept.append(p)
    return sorted(
        kept, key=lambda p: tuple((0, x) if isinstance(x, int) else (1, x) for x in p), reverse=True
    )


_ABSENT = object()


def _get(data: Any, path: FieldPath) -> Any:
    """The value at ``path``, or _ABSENT."""
    cur = data
    for elem in path:
        if isinstance(cur, dict):
            cur = cur.get(elem, _ABSENT)
        elif isinstance(cur, list) and isinstance(elem, int) and 0 <= elem < len(cur):
            cur = cur[elem]
        else:
            return _ABSENT
        if cur is _ABSENT:
            return _ABSENT
    return cur


def _has(data: Any, path: FieldPath) -> bool:
    return _get(data, path) is not _ABSENT


def _without(data: Any, path: FieldPath) -> Any:
    """A copy of ``data`` without ``path``; only the containers along the path are copied (YAML
    aliases share the rest, which stays as it is)."""
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        if head not in data:
            return data
        copy = dict(data)
        if rest:
            copy[head] = _without(data[head], rest)
        else:
            del copy[head]
        return copy
    if isinstance(data, list) and isinstance(head, int) and 0 <= head < len(data):
        items = list(data)
        if rest:
            items[head] = _without(data[head], rest)
        else:
            del items[head]
        return items
    return data


def _replaced(data: Any, path: FieldPath, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        copy = dict(data)
        copy[head] = _replaced(data.get(head), rest, value)
        return copy
    return data


#: Required fields that a repair sets instead of dropping their parent (the whole document), so
#: that the rest can still be checked. Whatever depends on them is then :meth:`Validated.affects`.
STAND_INS: dict[FieldPath, Any] = {("metadata", "name"): "invalid-name"}


def _stand_in(model: type[BaseModel], path: FieldPath) -> tuple[Any] | None:
    """The value a repair gives a required field at ``path``, if it gives one: the one value a
    top-level field allows (``apiVersion``, ``kind``), or a stand-in name."""
    if path in STAND_INS:
        return (STAND_INS[path],)
    if len(path) != 1:
        return None
    for name, info in model.model_fields.items():
        if (info.alias or name) == path[0] and info.is_required():
            args = typing.get_args(info.annotation)
            if typing.get_origin(info.annotation) is typing.Literal and len(args) == 1:
                return (args[0],)
    return None
