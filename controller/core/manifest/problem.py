"""A problem of a manifest found beyond its schema: the path of the field that is wrong
(``("spec", "aliases", "champion")``), so that the loader can point at its file and line, and the
message. Pure data."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FieldPath", "Problem", "field_name"]

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    path: FieldPath
    message: str
    #: The other fields the problem follows from (a reference's declarations, a list it counts):
    #: a problem that a repaired manifest shows is reported only if the repair touched none of
    #: ``path`` and these (see :mod:`controller.core.manifest.repair`).
    also: tuple[FieldPath, ...] = ()


def field_name(path: FieldPath) -> str:
    """``("spec", "traffic", 0, "percent")`` -> ``spec.traffic[0].percent``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
