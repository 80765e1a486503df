"""Checks of ``kind: Environment`` documents beyond their schema, alone and across documents: the
promotion order (``after`` names a declared environment; no cycle), overlays that name declared
agents, where each agent lives (no two environments, nor an environment and a prompt, share a
registered model). Pure: each problem is a field path and a message; the loader places it.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence

from controller.core.manifest.problem import FieldPath, Problem
from controller.core.manifest.schema_environment import OVERLAY_FIELDS, EnvironmentManifest

__all__ = ["check_environment", "check_environments", "promotion_order", "unknown_overlay_fields"]

AFTER: FieldPath = ("spec", "after")


def _hint(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_overlay_fields(data: object) -> list[Problem]:
    """Each field of ``spec.agents.<agent>`` (as written) that an environment may not override:
    a clearer word than the schema's "extra field", with the fields that may be."""
    spec = data.get("spec") if isinstance(data, dict) else None
    agents = spec.get("agents") if isinstance(spec, dict) else None
    if not isinstance(agents, dict):
        return []
    allowed = ", ".join(OVERLAY_FIELDS)
    out = []
    for agent, overlay in agents.items():
        if not isinstance(overlay, dict):
            continue
        for key in overlay:
            if key not in OVERLAY_FIELDS:
                out.append(
                    Problem(
                        ("spec", "agents", agent, key),
                        f"'{key}' cannot be overridden in an environment (an environment may "
                        f"override {allowed}){_hint(str(key), OVERLAY_FIELDS)}",
                    )
                )
    return out


def check_environment(m: EnvironmentManifest, agents: Collection[str]) -> list[Problem]:
    """One environment's problems, given the declared agents' names."""
    spec = m.spec
    problems: list[Problem] = []
    if m.name == "all":
        problems.append(Problem(("metadata", "name"), "'all' names every environment "
                                "(`plan --env all`): give this one another name"))  # fmt: skip
    if spec.promotion is not None and spec.after is None:
        problems.append(
            Problem(
                ("spec", "promotion"),
                "the first environment (no spec.after) logs versions from source: it has no "
                "promotion gates; set spec.after to the environment versions come from",
            )
        )
    if spec.promotion is not None:
        for i, gate in enumerate(spec.promotion.analysis):
            where: FieldPath = ("spec", "promotion", "analysis", i)
            if gate.source == "scorers":
                problems.append(Problem((*where, "source"), "source: scorers is for a rollout's "
                                        "canary; a promotion gate reads traces, router or "
                                        "prometheus"))  # fmt: skip
            elif gate.source == "prometheus" and not gate.query:
                problems.append(Problem((*where, "query"), "source: prometheus needs a query"))
            elif gate.metric == "passRate":
                problems.append(Problem((*where, "metric"), "passRate is a scorers metric; use "
                                        "errorRate or a latency"))  # fmt: skip
            elif gate.max is None:
                problems.append(Problem((*where, "max"), f"{gate.metric} needs max (the most "
                                        "it may be)"))  # fmt: skip
    if spec.after == m.name:
        problems.append(Problem(AFTER, f"environment '{m.name}' cannot come after itself"))
    for agent in spec.agents:
        if agent not in agents:
            problems.append(
                Problem(
                    ("spec", "agents", agent),
                    f"no Agent manifest declares '{agent}'{_hint(agent, agents)}",
                )
            )
    return problems


def promotion_order(envs: Sequence[EnvironmentManifest]) -> list[str]:
    """The environments' names, each after the one it comes after (first environments in name
    order); those in a cycle or after an undeclared one are left out."""
    after = {e.name: e.spec.after for e in envs}
    order: list[str] = []
    placed: set[str] = set()
    frontier = sorted(n for n, a in after.items() if a is None)
    while frontier:
        name = frontier.pop(0)
        order.append(name)
        placed.add(name)
        frontier += sorted(n for n, a in after.items() if a == name and n not in placed)
    return order


def check_environments(
    envs: Sequence[EnvironmentManifest],
    agents: Collection[str],
    taken: Mapping[str, str],
) -> list[tuple[str, Problem]]:
    """(environment, problem) across the documents: an ``after`` naming no environment, a cycle
    in the promotion order, and a registered model that two places claim (another environment's
    agent, or ``taken``: model name -> what else claims it, e.g. a prompt)."""
    names = {e.name for e in envs}
    out: list[tuple[str, Problem]] = []
    for e in envs:
        after = e.spec.after
        if after is not None and after != e.name and after not in names:
            out.append((e.name, Problem(
                AFTER, f"no Environment manifest declares '{after}'{_hint(after, names)}"
            )))  # fmt: skip
    serving_in: dict[str, str] = {}
    for e in sorted(envs, key=lambda e: e.name):
        ns = e.spec.serving.namespace if e.spec.serving is not None else None
        if ns is None:
            continue
        if ns in serving_in:
            out.append((e.name, Problem(
                ("spec", "serving", "namespace"),
                f"environment '{serving_in[ns]}' serves in namespace '{ns}' too: the agents' "
                "Deployments and routes are named by agent and version, so each environment "
                "needs a namespace of its own",
            )))  # fmt: skip
        else:
            serving_in[ns] = e.name
    ordered = set(promotion_order(envs))
    by_name = {e.name: e for e in envs}
    reported: set[str] = set()
    for e in envs:
        if e.name in ordered or e.name in reported or e.spec.after not in names:
            continue
        cycle = [e.name]
        while (nxt := by_name[cycle[-1]].spec.after) not in cycle and nxt in by_name:
            cycle.append(nxt)
        if nxt not in cycle:
            continue  # after a broken link, reported above
        loop = cycle[cycle.index(nxt) :]
        reported.update(loop)
        first = min(loop)
        path = " -> ".join([*reversed(loop), loop[-1]])  # as versions would flow
        out.append((first, Problem(
            AFTER, f"the promotion order has a cycle ({path}): one environment must come first"
        )))  # fmt: skip
    claims: dict[str, str] = {}
    for e in sorted(envs, key=lambda e: e.name):
        for agent in sorted(agents):
            model = e.model_of(agent)
            key = _located(e, model)
            where: FieldPath = (
                ("spec", "agents", agent, "registeredModel")
                if e.spec.agents.get(agent) is not None
                and e.spec.agents[agent].registered_model is not None
                else ("spec", "registeredModel")
            )
            # Prompts (taken) are reconciled in every environment's registry.
            other = taken.get(model) or claims.get(key)
            if other is not None:
                out.append((e.name, Problem(
                    where,
                    f"agent '{agent}' would live in registered model '{model}', where "
                    f"{other} lives; give each environment and agent its own (e.g. "
                    "{agent}-{env})",
                )))  # fmt: skip
            else:
                claims[key] = f"agent '{agent}' in environment '{e.name}'"
    return out


def _located(env: EnvironmentManifest, model: str) -> str:
    """Where a registered model lives: its name, qualified by the environment's tracking URI and
    workspace when it names them (one name in two registries is two models)."""
    where = [x for x in (env.spec.tracking_uri, env.spec.workspace) if x]
    return model if not where else f"{model} @ {' / '.join(where)}"
