"""The desired state of one environment: every agent moved to the registered model the
environment names for it, with the environment's serving settings and the agent's overlay
applied over its manifest (as a Kustomize overlay over its base). Pure data: no I/O.

The order of precedence, lowest first: ServingDefaults, the agent's manifest, the environment's
``spec.serving.kubernetes``, the agent's overlay (``spec.agents.<agent>``). A mapping field of the
overlay (tags, aliases) is merged key by key; any other field replaces the agent's. Each field the
environment sets is located in the environment's file, so that a problem it causes names that
file and line.

In an environment after another one, an agent's versions are not built from source: its one
version ``current`` is the version promoted into it (see :mod:`.promotion`), so its named
versions are dropped and an alias must name ``current``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from controller.core.diagnostics import Diagnostic, Location, Severity
from controller.core.manifest.checks import check_manifest
from controller.core.manifest.desired import Desired, DesiredAgent, DesiredEnvironment, deepest
from controller.core.manifest.problem import FieldPath, Problem, field_name
from controller.core.manifest.schema import CURRENT, AgentManifest

__all__ = ["MERGED", "environment_named", "in_environment"]

#: Overlay fields merged key by key over the agent's (the others replace it).
MERGED = ("tags", "aliases")


def environment_named(desired: Desired, name: str) -> DesiredEnvironment | None:
    return next((e for e in desired.environments if e.name == name), None)


def in_environment(desired: Desired, env: DesiredEnvironment) -> tuple[Desired, list[Diagnostic]]:
    """``desired`` as environment ``env`` reconciles it, and an error for each agent the
    environment's settings or overlay make invalid (that agent is left out)."""
    agents: list[DesiredAgent] = []
    diags: list[Diagnostic] = []
    for agent in desired.agents:
        moved = _agent_in(agent, env, diags)
        if moved is not None:
            agents.append(moved)
    return replace(desired, agents=tuple(agents), environment=env.name), diags


def _agent_in(
    agent: DesiredAgent, env: DesiredEnvironment, diags: list[Diagnostic]
) -> DesiredAgent | None:
    m = env.manifest
    later = m.spec.after is not None
    data = agent.manifest.model_dump(by_alias=True, exclude_unset=True, mode="json")
    spec: dict[str, Any] = data.setdefault("spec", {})
    overlay = m.overlay(agent.name)
    base = ("spec", "agents", agent.name)
    # Each agent path the environment sets -> where in the environment's file.
    located: dict[FieldPath, Location] = {
        ("spec", "registeredModel"): env.location(
            (*base, "registeredModel") if _overlaid_model(env, agent.name) else
            ("spec", "registeredModel")
        )
    }  # fmt: skip
    spec["registeredModel"] = m.model_of(agent.name)
    if later:
        entries = [e for e in spec.get("versions", []) if _version_of(e) == CURRENT]
        spec["versions"] = entries or [CURRENT]
    own_kube = (spec.get("serving") or {}).get("kubernetes") or {}
    for key, value in overlay.items():
        if key in MERGED:
            spec[key] = {**(spec.get(key) or {}), **(value or {})}
        else:
            spec[key] = value
        for path, loc in _under(env, (*base, key)).items():
            located[("spec", key, *path)] = loc
    # Kubernetes settings: the agent's, then the environment's, then the overlay's own.
    kube = m.spec.serving.kubernetes if m.spec.serving is not None else None
    if kube is not None and isinstance(spec.get("serving"), dict):
        written = kube.model_dump(by_alias=True, exclude_unset=True, mode="json")
        overlaid = ((overlay.get("serving") or {}).get("kubernetes")) or {}
        spec["serving"]["kubernetes"] = {**own_kube, **written, **overlaid}
        for path, loc in _under(env, ("spec", "serving", "kubernetes")).items():
            if path[:1] not in {(k,) for k in overlaid}:
                located[("spec", "serving", "kubernetes", *path)] = loc
    locations = {
        path: loc
        for path, loc in agent.locations.items()
        if not (
            len(path) >= 2 and path[0] == "spec" and path[1] in overlay and path[1] not in MERGED
        )
    }
    locations.update(located)

    def error(path: FieldPath, message: str) -> None:
        diags.append(Diagnostic(
            Severity.ERROR, f"in environment '{env.name}': {message}",
            deepest(locations, agent.file, path), field_name(path), agent.name,
        ))  # fmt: skip

    try:
        manifest = AgentManifest.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            error(tuple(e["loc"]), e["msg"])
        return None
    problems: list[Problem] = []
    if later:
        problems += [
            Problem(
                ("spec", "aliases", alias),
                f"alias '{alias}' names version {ref}: in an environment after another, "
                f"versions come from '{m.spec.after}' and an alias names current (set "
                f"spec.agents.{agent.name}.aliases)",
            )
            for alias, ref in manifest.spec.aliases.items()
            if ref != CURRENT
        ]
    said = {p.path for p in problems}
    problems += [p for p in check_manifest(manifest) if p.path not in said]
    for p in problems:
        error(p.path, p.message)
    if problems:
        return None
    if not later:
        return replace(agent, manifest=manifest, locations=locations)
    # Its one version is the promoted one (set by promotion): nothing is built from source here.
    refs = tuple(dict.fromkeys(r for src in agent.sources if src.commit is None for r in src.refs))
    return replace(agent, manifest=manifest, locations=locations, source=None, named={},
                   upstream_refs=refs)  # fmt: skip


def _overlaid_model(env: DesiredEnvironment, agent: str) -> bool:
    overlay = env.manifest.spec.agents.get(agent)
    return overlay is not None and overlay.registered_model is not None


def _version_of(entry: object) -> object:
    return entry.get("version") if isinstance(entry, dict) else entry


def _under(env: DesiredEnvironment, prefix: FieldPath) -> dict[FieldPath, Location]:
    """The environment file's locations under ``prefix``, by their path below it."""
    n = len(prefix)
    return {p[n:]: loc for p, loc in env.locations.items() if p[:n] == prefix}
