"""Saved plans: write the plan that was shown, and apply exactly it later, or refuse.

``agentctl plan --out FILE`` saves a plan with the fingerprints of what it was made from
(:mod:`controller.core.plan.saved`); ``agentctl apply FILE`` loads the manifests again, observes
the registry (and the serving target, if the plan had one) again, and applies the saved changes
only if every fingerprint is the one saved: otherwise the plan is stale, and nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from controller.core.errors import InvalidInput, InvalidPlanFile, StalePlan
from controller.core.manifest.desired import Desired
from controller.core.plan.changes import Plan
from controller.core.plan.changeset import ChangeSet, Entry
from controller.core.plan.saved import Made as SavedMade
from controller.core.plan.saved import Manifests, SavedPlan, from_json, to_json
from controller.core.secrets import secret_paths, without_credentials
from controller.core.state.fingerprint import fingerprint
from controller.engine.apply import apply
from controller.engine.reconcile import Backends, Made, observe, plan_round, preview

__all__ = ["apply_saved", "read_saved", "save", "write_saved"]


def _models(plan: Plan, desired: Desired, prune: bool) -> set[str] | None:
    """The registered models and prompts a plan depends on: its agents', those its changes
    touch, the prompts the manifests declare and those their agents bind; with ``prune``, all
    (what is pruned, and what is kept because an alias still needs it, depends on every one)."""
    if prune:
        return None
    return (
        {v.model for v in plan.views}
        | {c.model for c in plan.changes}
        | {s.source_model for s in plan.promotions}  # (a candidate, an approval on it)
        | {p.prompt_name for p in desired.prompts}
        | {b.prompt for a in desired.agents for b in a.bindings}
    )


def _agents(plan: Plan) -> set[str]:
    return set(plan.agents) | {c.agent for c in plan.changes}


def save(
    plan: Plan,
    made: Made,
    *,
    path: str | os.PathLike[str],
    allow_empty: bool,
    target: str,
    owner: str,
    prune: bool,
    tracking_uri: str,
    cluster: str | None = None,
) -> SavedPlan:
    """The saved form of ``plan``, made (by :func:`controller.engine.reconcile.reconcile`) from
    ``made`` with manifests loaded from ``path``, against ``tracking_uri`` (credentials are
    dropped) and the Kubernetes API server ``cluster``; :class:`InvalidInput` if it would hold a
    value that looks like a secret."""
    served = made.served
    namespace = served.cluster.namespace if served is not None and served.cluster else None
    saved = SavedPlan(
        plan=plan,
        manifests=Manifests(os.path.abspath(path), made.desired.root, allow_empty),
        target=target,
        namespace=namespace,
        desired=fingerprint(made.desired),
        registry=fingerprint(made.observed, only=_models(plan, made.desired, prune)),
        serving=fingerprint(served, only=_agents(plan)) if served is not None else None,
        made=SavedMade(
            owner, prune, made.now, without_credentials(tracking_uri), cluster, made.scope
        ),
    )
    _refuse_secrets(saved)
    return saved


def _refuse_secrets(saved: SavedPlan) -> None:
    """A saved plan holds every value as it is (apply plans again and compares), so one that
    would carry a value that looks like a secret (an ``api_token`` tag, ``password=`` in a
    description, a URL's user info) is not made: every output redacts such values, and a plan
    file, kept as a CI artifact, would hold them in clear."""
    found = secret_paths(json.loads(to_json(saved)))
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise InvalidInput.of(
            f"the plan holds values that look like secrets ({shown}); a saved plan keeps every "
            "value as it is, to apply exactly it, and would hold them in clear, so none was "
            "saved. Keep secrets out of tags and descriptions (the registry shows them to "
            "everyone who can read it), or apply without --out.",
            field="--out",
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
    guard: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> ChangeSet:
    """Apply exactly ``saved.plan``, if ``desired`` (the manifests loaded again) and a fresh
    observation of the registry (and the serving target, if the plan was made with one) are
    what it was made from; else raise :class:`StalePlan`, having written nothing. ``guard``
    (the registry lock) is taken for a plan with changes once it has been found fresh, and the
    plan checked again under it (another apply may have written in between)."""
    plan = saved.plan
    _verify(saved, desired, backends, file)
    if guard is not None and plan.has_changes:
        with guard():
            _verify(saved, desired, backends, file)
            return apply(
                plan, backends.registry, root=desired.root, policy=backends.policy, history=backends.history,
                on_entry=on_entry, serving=backends.serving, workers=workers,
                written_by=backends.written_by, evaluator=backends.evaluator,
            )  # fmt: skip
    return apply(
        plan, backends.registry, root=desired.root, policy=backends.policy, on_entry=on_entry,
        serving=backends.serving, workers=workers, written_by=backends.written_by,
        history=backends.history, evaluator=backends.evaluator,
    )  # fmt: skip


def _verify(saved: SavedPlan, desired: Desired, backends: Backends, file: str) -> None:
    """Raise StalePlan or InvalidPlanFile unless the plan is what agentctl plans now."""
    plan = saved.plan

    def stale(what: str) -> StalePlan:
        return StalePlan(
            f"{file}: stale plan: {what} changed since the plan was made; nothing was applied. "
            "Plan again (agentctl plan --out) and review it."
        )

    if fingerprint(desired) != saved.desired:
        raise stale(f"the manifests under {saved.manifests.path} (or their sources)")
    if saved.serving is not None and backends.serving is None:
        raise InvalidPlanFile(f"{file}: the plan was made with a serving target; none was given")
    observed, served = observe(backends)
    if fingerprint(observed, only=_models(plan, desired, saved.made.prune)) != saved.registry:
        raise stale("the registry")
    if (
        saved.serving is not None
        and served is not None
        and fingerprint(served, only=_agents(plan)) != saved.serving
    ):
        raise stale(f"what the {saved.target} serving target runs")
    # Plan again from the same inputs (the fingerprints prove them unchanged): a file whose
    # changes are not what agentctl plans from them was edited, its checksum recomputed.
    again, _ = plan_round(
        desired, observed, served if saved.serving is not None else None,
        owner=saved.made.owner, prune=saved.made.prune, scope=saved.made.scope,
        now=saved.made.now, providers=None,
    )  # fmt: skip
    if [c.to_dict() for c in again.changes] != [c.to_dict() for c in plan.changes]:
        raise InvalidPlanFile(
            f"{file}: its changes are not the ones agentctl plans from what it was made from (the "
            "file was edited); nothing was applied. Plan again rather than edit a saved plan."
        )
    if not plan.has_errors:
        preview(backends.serving, plan.changes, backends.policy)  # as a fresh plan's apply does
