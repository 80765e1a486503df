"""Saved plans: write the plan that was shown, and apply exactly it later, or refuse.

``agentctl plan --out FILE`` saves a plan with the fingerprints of what it was made from
(:mod:`controller.core.plan.saved`); ``agentctl apply FILE`` loads the manifests again, observes
the registry (and the serving target, if the plan had one) again, and applies the saved changes
only if every fingerprint is the one saved: otherwise the plan is stale, and nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from controller.core.errors import InvalidPlanFile, StalePlan
from controller.core.manifest.desired import Desired
from controller.core.plan.changes import Plan
from controller.core.plan.changeset import ChangeSet, Entry
from controller.core.plan.saved import Manifests, SavedPlan, from_json, to_json
from controller.core.state.fingerprint import fingerprint
from controller.core.state.observed import RegistrySnapshot, ServingSnapshot
from controller.engine.apply import apply
from controller.engine.reconcile import Backends, observe, preview

__all__ = ["apply_saved", "read_saved", "save", "write_saved"]


def _models(plan: Plan) -> set[str]:
    """The registered models a plan depends on: its agents' and those its changes touch."""
    return {v.model for v in plan.views} | {c.model for c in plan.changes}


def _agents(plan: Plan) -> set[str]:
    return set(plan.agents) | {c.agent for c in plan.changes}


def save(
    plan: Plan,
    desired: Desired,
    observed: RegistrySnapshot,
    served: ServingSnapshot | None,
    *,
    path: str | os.PathLike[str],
    allow_empty: bool,
    target: str,
) -> SavedPlan:
    """The saved form of ``plan``, made from ``desired`` (loaded from ``path``), the registry as
    ``observed`` and the serving target as ``served`` (None: none)."""
    cluster = served.cluster if served is not None else None
    return SavedPlan(
        plan=plan,
        manifests=Manifests(os.path.abspath(path), desired.root, allow_empty),
        target=target,
        namespace=cluster.namespace if cluster is not None else None,
        desired=fingerprint(desired),
        registry=fingerprint(observed, only=_models(plan)),
        serving=fingerprint(served, only=_agents(plan)) if served is not None else None,
    )


def write_saved(file: str | os.PathLike[str], saved: SavedPlan) -> None:
    with open(file, "w", encoding="utf-8") as fh:
        fh.write(to_json(saved))


def read_saved(file: str | os.PathLike[str]) -> SavedPlan:
    """The saved plan in ``file``; :class:`InvalidPlanFile`, naming the file, if it is not one
    this agentctl can apply."""
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidPlanFile(f"{file}: cannot be read ({exc})") from exc
    try:
        return from_json(text)
    except InvalidPlanFile as exc:
        raise InvalidPlanFile(f"{file} {exc}") from None


def apply_saved(
    saved: SavedPlan,
    desired: Desired,
    backends: Backends,
    *,
    file: str,
    on_entry: Callable[[Entry], None] | None = None,
    workers: int = 1,
) -> ChangeSet:
    """Apply exactly ``saved.plan``, if ``desired`` (the manifests loaded again) and a fresh
    observation of the registry (and the serving target, if the plan was made with one) are
    what it was made from; else raise :class:`StalePlan`, having written nothing."""
    plan = saved.plan

    def stale(what: str) -> StalePlan:
        return StalePlan(
            f"{file}: stale plan: {what} changed since the plan was made; nothing was applied. "
            "Plan again (agentctl plan --out) and review it."
        )

    if fingerprint(desired) != saved.desired:
        raise stale(f"the manifests under {saved.manifests.path} (or their sources)")
    if saved.serving is not None and backends.serving is None:
        raise ValueError("the plan was made with a serving target, but none was given")
    observed, served = observe(backends)
    if fingerprint(observed, only=_models(plan)) != saved.registry:
        raise stale("the registry")
    if (
        saved.serving is not None
        and served is not None
        and fingerprint(served, only=_agents(plan)) != saved.serving
    ):
        raise stale(f"what the {saved.target} serving target runs")
    if not plan.has_errors:
        preview(backends.serving, plan.changes, backends.policy)  # as a fresh plan's apply does
    return apply(
        plan, backends.registry, root=desired.root, policy=backends.policy, on_entry=on_entry,
        serving=backends.serving, workers=workers,
    )  # fmt: skip
