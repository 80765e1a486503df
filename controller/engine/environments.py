"""``kind: Environment`` documents built and checked: each validated (repaired as agents are, so
that every problem shows in one run; a field an environment may not override is named as such),
then checked alone and across documents (:mod:`controller.core.manifest.environments`). No I/O
beyond what the loader read.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.core.diagnostics import Location
from controller.core.manifest.desired import DesiredEnvironment
from controller.core.manifest.environments import (
    check_environment,
    check_environments,
    promotion_order,
    unknown_overlay_fields,
)
from controller.core.manifest.problem import FieldPath, field_name
from controller.core.manifest.repair import Validated, validate
from controller.core.manifest.schema_environment import ENVIRONMENT_KIND, EnvironmentManifest
from controller.engine.prompts import Report, at_path

__all__ = ["BuiltEnvironment", "build_environment", "check_all"]


@dataclass(frozen=True, slots=True)
class BuiltEnvironment:
    """An Environment document that validates, as written or repaired; ``valid``: no error of
    its own (problems across documents are checked by :func:`check_all`)."""

    manifest: EnvironmentManifest
    validated: Validated[EnvironmentManifest]
    file: str
    locations: Mapping[FieldPath, Location]
    start: Location
    name: str  # metadata.name as written ("" if not a string)
    valid: bool
    ref: str  # the file, relative to the root

    def location(self, path: FieldPath) -> Location:
        """Where ``path`` (of the manifest as validated) stands in the file."""
        return at_path(self.locations, self.start, self.validated.original(path))


def build_environment(
    data: dict[str, Any],
    locations: Mapping[FieldPath, Location],
    file: str,
    start: Location,
    root: Path,
    report: Report,
    misspelt: bool = False,
) -> BuiltEnvironment | None:
    """An Environment document validated; None if even a repair does not validate it."""
    if misspelt:
        data = {**data, "kind": ENVIRONMENT_KIND}
    name = ""
    if isinstance(data.get("metadata"), dict) and isinstance(data["metadata"].get("name"), str):
        name = data["metadata"]["name"]
    ok = not misspelt
    # A field no environment may override is said so, and dropped before validation (so that
    # the schema does not call it an unknown field as well).
    unknown = unknown_overlay_fields(data)
    if unknown:
        ok = False
        data = copy.deepcopy(data)
        for p in unknown:
            report.error(at_path(locations, start, p.path), field_name(p.path), p.message, name)
            agent, key = p.path[2], p.path[3]
            del data["spec"]["agents"][agent][key]
    validated = validate(data, EnvironmentManifest)
    for path, message in validated.errors:
        ok = False
        report.error(at_path(locations, start, path), field_name(path), message, name)
    if validated.model is None:
        return None
    ref = Path(file).resolve()
    rel = ref.relative_to(root).as_posix() if ref.is_relative_to(root) else file
    return BuiltEnvironment(validated.model, validated, file, locations, start, name, ok, rel)


def check_all(
    built: Sequence[BuiltEnvironment],
    agents: Collection[str],
    taken: Mapping[str, str],
    report: Report,
) -> list[DesiredEnvironment]:
    """Every environment's checks, alone and across documents; the environments without any
    error, in promotion order. An environment declared twice is reported at the second."""
    first: dict[str, BuiltEnvironment] = {}
    bad: set[str] = set()
    for b in built:
        if b.manifest.name in first:
            other = first[b.manifest.name]
            report.error(b.location(("metadata", "name")), "metadata.name",
                         f"environment '{b.manifest.name}' is declared twice (first at "
                         f"{other.location(('metadata', 'name'))})", b.name)  # fmt: skip
            bad.add(b.manifest.name)
            continue
        first[b.manifest.name] = b
        if not b.valid:
            bad.add(b.manifest.name)
    for b in first.values():
        for p in check_environment(b.manifest, agents):
            path = b.validated.original(p.path)
            if not b.validated.affects(path, *p.also):
                bad.add(b.manifest.name)
                report.error(b.location(p.path), field_name(path), p.message, b.name)
    manifests = [b.manifest for b in first.values()]
    for env, p in check_environments(manifests, agents, taken):
        b = first[env]
        if not b.validated.affects(p.path, *p.also):
            bad.add(env)
            report.error(b.location(p.path), field_name(p.path), p.message, b.name)
    out: list[DesiredEnvironment] = []
    kept: set[str] = set()
    for n in promotion_order(manifests):  # (one after a bad one is left out with it)
        b = first[n]
        if n in bad or (b.manifest.spec.after is not None and b.manifest.spec.after not in kept):
            continue
        kept.add(n)
        out.append(DesiredEnvironment(b.manifest, b.file, dict(b.locations), b.ref))
    return out
