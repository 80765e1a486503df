"""Semantic checks of one manifest, beyond its schema. Pure data: no I/O.

Each problem names the path of the field that is wrong (``("spec", "aliases", "champion")``),
so that the loader can point at its file and line.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable

from controller.core.evaluation.spec import builtin_name
from controller.core.manifest.evaluation import check_evaluation
from controller.core.manifest.problem import FieldPath, Problem, field_name
from controller.core.manifest.schema import (
    ALIAS_RESERVED,
    CURRENT,
    RESERVED_TAG_PREFIX,
    AgentManifest,
    AgentSpec,
    HeaderRoute,
    ScorerRef,
    ShadowTarget,
    TrafficTarget,
    VersionRef,
)

__all__ = [
    "DEFAULT_SAMPLE",
    "FieldPath",
    "Problem",
    "check_manifest",
    "field_name",
    "not_a_unique_path",
    "scorer_name",
    "something_to_manage",
]

#: Header routes an agent may have, its rollout's included: an HTTPRoute has at most 16 rules.
MAX_HEADER_ROUTES = 15
SOURCE: FieldPath = ("spec", "source")
VERSIONS: FieldPath = ("spec", "versions")
ALIASES: FieldPath = ("spec", "aliases")


def something_to_manage(spec: AgentSpec) -> bool:
    """An agent that is only a name (``spec: {}``) is most likely a mistake: it must name code to
    log, a version to keep, or, registry-only, the model it manages or what to set on it."""
    return bool(
        spec.source is not None
        or spec.versions
        or spec.registered_model is not None
        or spec.description is not None
        or spec.tags
    )


def not_a_unique_path(name: str) -> bool:
    """MLflow's own rule for model names and tag keys (``path_not_unique``): they are used as
    paths, so ``a//b``, ``a/``, ``./a`` or ``..`` are refused by the server."""
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def check_manifest(m: AgentManifest) -> list[Problem]:
    spec = m.spec
    problems: list[Problem] = []

    if not something_to_manage(spec):
        problems.append(
            Problem(
                ("spec",),
                "nothing to manage: give spec.source (the agent's code), at least one "
                "spec.versions entry, or for a registry-only agent spec.registeredModel, "
                "spec.description or spec.tags",
                (
                    SOURCE,
                    VERSIONS,
                    ("spec", "registeredModel"),
                    ("spec", "description"),
                    ("spec", "tags"),
                ),
            )
        )

    if not_a_unique_path(m.model_name):
        problems.append(
            Problem(
                ("spec", "registeredModel") if spec.registered_model else ("metadata", "name"),
                f"'{m.model_name}' is not a usable model name: MLflow refuses names that are not "
                "a normalised path ('..', 'a/', './a')",
                (("spec", "registeredModel"), ("metadata", "name")),
            )
        )

    for where, tags in (
        (("spec", "tags"), spec.tags),
        *((("spec", "versions", i, "tags"), v.tags) for i, v in enumerate(spec.versions)),
    ):
        for key in tags:
            if not_a_unique_path(key):
                problems.append(
                    Problem(
                        (*where, key),
                        "MLflow refuses tag keys that are not a normalised path ('a//b', 'a/', '..')",
                    )
                )
            if key.startswith(RESERVED_TAG_PREFIX):
                problems.append(
                    Problem(
                        (*where, key),
                        f"tag keys under '{RESERVED_TAG_PREFIX}' are reserved for agentctl",
                    )
                )

    declared: dict[VersionRef, int] = {}
    for i, entry in enumerate(spec.versions):
        if entry.version in declared:
            problems.append(
                Problem(
                    ("spec", "versions", i, "version"),
                    f"version {entry.version} is declared twice "
                    f"(first at spec.versions[{declared[entry.version]}])",
                    (VERSIONS,),
                )
            )
        else:
            declared[entry.version] = i
        if entry.version == CURRENT and spec.source is None:
            problems.append(
                Problem(
                    ("spec", "versions", i, "version"),
                    "'current' is the version built from spec.source, but spec.source is not set",
                    (SOURCE,),
                )
            )
        _check_own_source(problems, spec, i)
    known: set[VersionRef] = set(declared)
    if spec.source is not None:
        known.add("current")

    def check_ref(path: FieldPath, ref: VersionRef) -> None:
        if ref not in known:
            if ref == CURRENT:
                problems.append(Problem(path, "'current' needs spec.source", (SOURCE,)))
            else:
                problems.append(
                    Problem(
                        path,
                        f"version {ref} is not declared in spec.versions "
                        f"(declared: {_listing(known)})",
                        (VERSIONS, SOURCE),
                    )
                )

    for alias, ref in spec.aliases.items():
        path: FieldPath = ("spec", "aliases", alias)
        if ALIAS_RESERVED.match(alias):
            problems.append(
                Problem(path, f"alias '{alias}' is reserved by MLflow ('latest' and v<N>)")
            )
        check_ref(path, ref)

    if spec.serving is not None:
        total = 0
        for i, target in enumerate(spec.serving.traffic):
            total += target.percent
            _check_target(problems, ("spec", "serving", "traffic", i), target, spec, check_ref)
        if total != 100:
            problems.append(
                Problem(
                    ("spec", "serving", "traffic"),
                    f"traffic percents sum to {total}; they must sum to 100",
                )
            )
        seen: dict[str, int] = {}
        for i, target in enumerate(spec.serving.traffic):
            key = target.ref
            if key in seen:
                problems.append(
                    Problem(
                        ("spec", "serving", "traffic", i),
                        f"{key} appears twice in traffic (first at traffic[{seen[key]}])",
                        (("spec", "serving", "traffic"),),
                    )
                )
            seen.setdefault(key, i)
        if spec.serving.shadow is not None:
            shadow = spec.serving.shadow
            _check_target(problems, ("spec", "serving", "shadow"), shadow, spec, check_ref)
        matches: dict[tuple[str, str], int] = {}
        for i, route in enumerate(spec.serving.routes):
            _check_target(problems, ("spec", "serving", "routes", i), route, spec, check_ref)
            match = (route.header.lower(), route.value)
            if match in matches:
                problems.append(
                    Problem(
                        ("spec", "serving", "routes", i),
                        f"header {route.header}: {route.value} is matched twice (first at "
                        f"routes[{matches[match]}]); only the first would ever be used",
                        (("spec", "serving", "routes"),),
                    )
                )
            matches.setdefault(match, i)
        rollout_route = spec.rollout is not None and spec.rollout.header_route is not None
        if len(spec.serving.routes) + rollout_route > MAX_HEADER_ROUTES:
            problems.append(
                Problem(
                    ("spec", "serving", "routes"),
                    f"at most {MAX_HEADER_ROUTES} header routes, the rollout's headerRoute "
                    "included (an HTTPRoute has at most 16 rules, one of them the weighted one)",
                    (),
                )
            )
        affinity = spec.serving.affinity
        if affinity is not None and affinity.header is not None:
            for i, route in enumerate(spec.serving.routes):
                if route.header.lower() == affinity.header.lower():
                    problems.append(
                        Problem(
                            ("spec", "serving", "affinity", "header"),
                            f"header {affinity.header} carries conversation ids and also "
                            f"selects a version in routes[{i}]; use two headers",
                            (("spec", "serving", "routes", i),),
                        )
                    )
    if spec.rollout is not None:
        _check_rollout(problems, spec, check_ref)
    problems.extend(check_evaluation(spec))
    return problems


def _check_own_source(problems: list[Problem], spec: AgentSpec, i: int) -> None:
    """A named version has a source of its own, complete over spec.source; no other has one."""
    entry = spec.versions[i]
    path: FieldPath = ("spec", "versions", i)
    named = isinstance(entry.version, str) and entry.version != CURRENT
    if entry.source is None:
        if named:
            problems.append(
                Problem(
                    (*path, "version"),
                    f"'{entry.version}' names a version built from a source of its own: give this "
                    "entry a `source:` (or use a registry number or 'current')",
                    (path,),  # a misspelt `source` key, dropped by a repair, is the real problem
                )
            )
        return
    if not named:
        what = (
            "'current' is built from spec.source"
            if entry.version == CURRENT
            else (f"version {entry.version} is a registry number")
        )
        problems.append(
            Problem(
                (*path, "source"),
                f"{what}; only a named version takes a source of its own (e.g. version: stable)",
            )
        )
        return
    own, base = entry.source, spec.source
    for name, key in (("code", "code"), ("pip_requirements", "pipRequirements")):
        if getattr(own, name) is None and (base is None or getattr(base, name) is None):
            problems.append(
                Problem(
                    (*path, "source"),
                    f"version '{entry.version}' has no {key}: set it in this entry's source "
                    f"or in spec.source.{key}",
                    (SOURCE,),
                )
            )


def _check_rollout(
    problems: list[Problem], spec: AgentSpec, check_ref: Callable[[FieldPath, VersionRef], None]
) -> None:
    rollout = spec.rollout
    assert rollout is not None
    base: FieldPath = ("spec", "rollout")
    if spec.serving is None:
        problems.append(
            Problem(base, "a rollout moves traffic: it needs spec.serving", (("spec", "serving"),))
        )
    canary = rollout.canary
    if canary.alias is not None and canary.alias not in spec.aliases:
        problems.append(
            Problem(
                (*base, "canary", "alias"),
                f"alias '{canary.alias}' is not declared in spec.aliases "
                f"(declared: {_listing(spec.aliases)})",
                (ALIASES,),
            )
        )
    elif canary.version is not None:
        check_ref((*base, "canary", "version"), canary.version)
    if rollout.promote_alias not in spec.aliases:
        problems.append(
            Problem(
                (*base, "promoteAlias"),
                f"alias '{rollout.promote_alias}' is not declared in spec.aliases "
                f"(declared: {_listing(spec.aliases)})",
                (ALIASES,),
            )
        )
    # The manifest declares where a rollout ends: the promote alias on the canary's version,
    # and all traffic to it. The rollout is the way there.
    canary_ref = canary.resolve(spec.aliases)
    end = spec.aliases.get(rollout.promote_alias)
    if canary_ref is not None and end is not None and end != canary_ref:
        problems.append(
            Problem(
                (*base, "promoteAlias"),
                f"alias '{rollout.promote_alias}' is version {end} in spec.aliases but the canary "
                f"is version {canary_ref}: declare where the rollout ends "
                f"(spec.aliases.{rollout.promote_alias}: {canary_ref})",
                (ALIASES, (*base, "canary")),
            )
        )
    elif spec.serving is not None and canary_ref is not None:
        ends = {
            spec.aliases.get(t.alias) if t.alias is not None else t.version
            for t in spec.serving.traffic
        }
        if ends != {canary_ref}:
            problems.append(
                Problem(
                    ("spec", "serving", "traffic"),
                    f"with spec.rollout, traffic declares where the rollout ends: all of it to "
                    f"the canary (version {canary_ref}); the rollout moves it there step by step",
                    (ALIASES, (*base, "canary")),
                )
            )
    previous = 0
    for i, step in enumerate(rollout.steps):
        if step.weight == 0 and i == 0:
            if rollout.header_route is None:
                problems.append(
                    Problem(
                        (*base, "steps", 0, "weight"),
                        "a first step of weight 0 sends the canary nothing: give the rollout a "
                        "headerRoute for testers to reach it, or start at 1 or more",
                        ((*base, "steps"),),
                    )
                )
            continue
        if step.weight <= previous:
            problems.append(
                Problem(
                    (*base, "steps", i, "weight"),
                    f"step weights must increase: {step.weight} after {previous}",
                    ((*base, "steps"),),
                )
            )
        previous = max(previous, step.weight)
    if rollout.steps[-1].weight != 100:
        problems.append(
            Problem(
                (*base, "steps", len(rollout.steps) - 1, "weight"),
                f"the last step must take all traffic (weight 100), not {rollout.steps[-1].weight}",
                ((*base, "steps"),),
            )
        )
    if rollout.analysis is not None:
        seen: dict[str, int] = {}
        for i, gate in enumerate(rollout.analysis.gates):
            path: FieldPath = (*base, "analysis", "gates", i)
            if gate.name in seen:
                problems.append(
                    Problem(
                        (*path, "name"),
                        f"gate '{gate.name}' appears twice (first at gates[{seen[gate.name]}])",
                        ((*base, "analysis", "gates"),),
                    )
                )
            seen.setdefault(gate.name, i)
            if gate.source == "prometheus" and not gate.query:
                problems.append(
                    Problem(
                        (*path, "query"), "a prometheus gate needs a query", ((*path, "source"),)
                    )
                )
            if gate.source != "prometheus" and gate.query:
                problems.append(
                    Problem(
                        (*path, "query"),
                        f"only a prometheus gate takes a query, not {gate.source}",
                        ((*path, "source"),),
                    )
                )
            _check_gate_bounds(problems, spec, path, i)


#: The default of a scorers gate's ``sample``: the most traces one measurement scores.
DEFAULT_SAMPLE = 50


def _check_gate_bounds(problems: list[Problem], spec: AgentSpec, path: FieldPath, i: int) -> None:
    """A gate's metric, source and bounds agree: passRate comes from scorers and takes min; the
    others take max; a scorers gate names a scorer of spec.evaluation."""
    assert spec.rollout is not None and spec.rollout.analysis is not None
    gate = spec.rollout.analysis.gates[i]
    rate = gate.metric == "passRate"
    if rate and gate.source != "scorers":
        problems.append(
            Problem(
                (*path, "source"),
                f"a passRate gate is measured by scorers (source: scorers), not {gate.source}",
                ((*path, "metric"),),
            )
        )
    if gate.source == "scorers" and not rate:
        problems.append(
            Problem(
                (*path, "metric"),
                f"a scorers gate measures passRate, not {gate.metric}",
                ((*path, "source"),),
            )
        )
    if rate:
        if gate.max is not None:
            problems.append(
                Problem(
                    (*path, "max"),
                    "a passRate gate takes min (the least pass rate the canary keeps), not max",
                    ((*path, "metric"),),
                )
            )
        if gate.min is None:
            problems.append(
                Problem(
                    path,
                    "a passRate gate needs min: the least pass rate (0 to 1) the canary keeps",
                    ((*path, "metric"),),
                )
            )
    else:
        if gate.min is not None:
            problems.append(
                Problem(
                    (*path, "min"),
                    f"only a passRate gate takes min; {gate.metric} takes max",
                    ((*path, "metric"),),
                )
            )
        if gate.max is None:
            unit = "a ratio" if gate.metric == "errorRate" else "milliseconds"
            problems.append(
                Problem(
                    path,
                    f"{'an' if gate.metric == 'errorRate' else 'a'} {gate.metric} gate needs "
                    f"max: the most the canary may show ({unit})",
                    ((*path, "metric"),),
                )
            )
    if gate.source != "scorers":
        for key, value in (("scorer", gate.scorer), ("sample", gate.sample)):
            if value is not None:
                problems.append(
                    Problem(
                        (*path, key),
                        f"only a scorers gate takes {key}, not {gate.source}",
                        ((*path, "source"),),
                    )
                )
        return
    sample = gate.sample if gate.sample is not None else DEFAULT_SAMPLE
    if sample < gate.min_samples:
        problems.append(
            Problem(
                (*path, "sample") if gate.sample is not None else (*path, "minSamples"),
                f"sample ({sample}) is under minSamples ({gate.min_samples}): every "
                "measurement would be inconclusive",
                ((*path, "sample"), (*path, "minSamples")),
            )
        )
    if gate.scorer is None:
        problems.append(
            Problem(
                path,
                "a scorers gate needs scorer: the name of a scorer in spec.evaluation.scorers",
                ((*path, "source"),),
            )
        )
    elif spec.evaluation is None:
        problems.append(
            Problem(
                (*path, "scorer"),
                f"scorer '{gate.scorer}' must be listed in spec.evaluation.scorers, but "
                "spec.evaluation is not set",
                (("spec", "evaluation"),),
            )
        )
    else:
        names = [scorer_name(s) for s in spec.evaluation.scorers]
        if gate.scorer not in names:
            problems.append(
                Problem(
                    (*path, "scorer"),
                    f"scorer '{gate.scorer}' is not listed in spec.evaluation.scorers "
                    f"(listed: {_listing(n for n in names if n)})",
                    (("spec", "evaluation", "scorers"),),
                )
            )


def scorer_name(ref: ScorerRef) -> str | None:
    """The name a scorer's results go by: its ``name``, else the built-in's own
    (``pii_detection``) or the code scorer's function; None: an unknown built-in."""
    if ref.name is not None:
        return ref.name
    if ref.builtin is not None:
        return builtin_name(ref.builtin)
    assert ref.code is not None
    return ref.code.rsplit(":", 1)[1]


def _check_target(
    problems: list[Problem],
    path: FieldPath,
    target: TrafficTarget | ShadowTarget | HeaderRoute,
    spec: AgentSpec,
    check_ref: Callable[[FieldPath, VersionRef], None],
) -> None:
    if target.alias is not None:
        if target.alias not in spec.aliases:
            problems.append(
                Problem(
                    (*path, "alias"),
                    f"alias '{target.alias}' is not declared in spec.aliases "
                    f"(declared: {_listing(spec.aliases)})",
                    (ALIASES,),
                )
            )
    elif target.version is not None:
        check_ref((*path, "version"), target.version)


def _listing(items: Iterable[object]) -> str:
    names = sorted(str(x) for x in items)
    return ", ".join(names) if names else "none"
