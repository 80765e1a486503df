"""The planner: desired + observed -> an ordered :class:`~controller.core.plan.changes.Plan`.

Pure data: no I/O, no clock, no randomness; the same inputs give the same plan. It never runs
agent code: a version is identified by the content digest the loader computed.

Per agent, changes come in an order that a crash at any point leaves recoverable by the next
apply: create the model; delete aliases dropped from the manifest (before the inventory forgets
them); update model tags and inventory; create versions; update version tags; set aliases.
Deleting models no longer declared (``prune``) comes last, for all agents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller.core.diagnostics import Diagnostic, Diagnostics, Severity
from controller.core.environment.step import Step
from controller.core.manifest.checks import FieldPath, field_name
from controller.core.manifest.desired import Desired, DesiredAgent
from controller.core.manifest.schema import (
    CURRENT,
    HeaderRoute,
    ShadowTarget,
    TrafficTarget,
    VersionEntry,
    VersionRef,
)
from controller.core.plan.changes import (
    Action,
    AgentView,
    AliasTarget,
    Change,
    Kind,
    ModelState,
    Payload,
    Pending,
    Plan,
    RolloutRecord,
    RoutingState,
    Share,
    Target,
)
from controller.core.plan.evaluations import plan_evaluations
from controller.core.plan.held import WAITING, GatedVersion, HeldRollout, held_rollouts
from controller.core.plan.kube_objects import settings_of
from controller.core.plan.kube_outdated import mark_outdated
from controller.core.plan.prompts import PHASE as PROMPT_PHASE
from controller.core.plan.prompts import plan_prompts, prune_prompts
from controller.core.plan.serving import DesiredServing, plan_serving, remove_serving
from controller.core.plan.versions import (
    ChangeFn,
    csv,
    model_contents,
    one_entry_per_version,
    plan_new_version,
    plan_version_tags,
    same_content,
    tag_diff,
    what_differs,
)
from controller.core.prompt.resolve import bind_prompts
from controller.core.rollout.progress import Clear, Hold, Progress, Running
from controller.core.state.observed import (
    AGENT_TAG,
    DEFAULT_OWNER,
    ENVIRONMENT_TAG,
    MANAGED_ALIASES_TAG,
    MANAGED_TAGS_TAG,
    OWNER_TAG,
    AgentServing,
    ObservedModel,
    RegistrySnapshot,
    ServingSnapshot,
)

__all__ = ["DEFAULT_OWNER", "plan"]


_PHASE = {
    (Kind.REGISTERED_MODEL, Action.CREATE): 0,
    (Kind.ALIAS, Action.DELETE): 1,
    (Kind.REGISTERED_MODEL, Action.UPDATE): 2,
    # A rollout's state is recorded before the alias and traffic it decides move: a crash in
    # between is finished by the next apply, which reads the same state.
    (Kind.ROLLOUT, Action.CREATE): 2,
    (Kind.ROLLOUT, Action.UPDATE): 2,
    (Kind.ROLLOUT, Action.DELETE): 2,
    (Kind.MODEL_VERSION, Action.CREATE): 3,
    (Kind.MODEL_VERSION, Action.UPDATE): 4,
    # A version is evaluated once registered and before any alias or traffic moves to it.
    (Kind.EVALUATION, Action.CREATE): 5,
    (Kind.ALIAS, Action.CREATE): 6,
    (Kind.ALIAS, Action.UPDATE): 6,
    # Serving: start servers, then move traffic and shadow to them, then stop what is left.
    (Kind.SERVED_VERSION, Action.CREATE): 7,
    (Kind.SERVED_VERSION, Action.REPLACE): 7,
    (Kind.SERVED_VERSION, Action.UPDATE): 7,
    (Kind.TRAFFIC, Action.CREATE): 8,
    (Kind.TRAFFIC, Action.UPDATE): 8,
    (Kind.TRAFFIC, Action.DELETE): 8,
    (Kind.SHADOW, Action.CREATE): 8,
    (Kind.SHADOW, Action.UPDATE): 8,
    (Kind.SHADOW, Action.DELETE): 8,
    (Kind.ROUTES, Action.CREATE): 8,
    (Kind.ROUTES, Action.UPDATE): 8,
    (Kind.ROUTES, Action.DELETE): 8,
    (Kind.SERVED_VERSION, Action.DELETE): 9,
    **PROMPT_PHASE,
}


def plan(
    desired: Desired,
    observed: RegistrySnapshot,
    *,
    owner: str = DEFAULT_OWNER,
    prune: bool = False,
    scope: Mapping[str, str] | None = None,
    baseline: Desired | None = None,
    serving: ServingSnapshot | None = None,
    progress: Mapping[str, Progress] | None = None,
    rollouts: Mapping[str, Progress] | None = None,
    promotions: tuple[Step, ...] = (),
) -> Plan:
    """Plan every agent, or with ``scope`` (agent -> why) only those; ``baseline`` is the desired
    state of the base revision, whose traffic the views show as "before". ``serving`` is what a
    serving target runs (a Kubernetes target's objects are compared with the desired settings
    here); without it, ``spec.serving`` is validated but not planned. ``progress`` (agent -> this
    round of its rollout, :data:`controller.core.rollout.progress.Progress`) takes the place of
    the manifest's end state for the promote alias and the traffic split while a rollout runs;
    it carries the rollout's record too (the planner reads no rollout tags). ``rollouts`` (by
    default ``progress``) is what the plan reports of each rollout (held, under way): given
    without ``progress`` when no serving target carries rollouts out (``--target registry``),
    whose record is in the registry all the same."""
    # Prompts first: an agent's new version pins the prompt versions they register.
    desired, diags = bind_prompts(desired, observed)
    changes, prompt_diags, unchanged = plan_prompts(desired, observed, owner, prune, scope)
    diags += prompt_diags
    views: list[AgentView] = []
    if serving is not None and serving.cluster is not None:
        # A Kubernetes target reports the objects it read; what is outdated is decided here.
        serving = mark_outdated(serving, settings_of(desired))
    base = {a.name: a for a in baseline.agents} if baseline is not None else None
    waiting: list[HeldRollout] = []
    gated: list[GatedVersion] = []
    for desired_agent in sorted(desired.agents, key=lambda a: a.name):
        if scope is not None and desired_agent.name not in scope:
            continue
        if desired_agent.model_name in observed.prompts:
            diags.append(_named_as_a_prompt(desired_agent))
            continue
        agent_changes, agent_diags, same, aliases = _plan_agent(
            desired_agent,
            observed.models.get(desired_agent.model_name),
            owner,
            serving.agents.get(desired_agent.name) if serving is not None else None,
            serving is not None,
            (progress or {}).get(desired_agent.name),
            rollouts is not None and desired_agent.name in rollouts,
            waiting,
            gated,
            desired.environment,
        )
        agent_changes.sort(key=lambda c: _PHASE[(c.kind, c.action)])
        changes.extend(agent_changes)
        diags.extend(agent_diags)
        unchanged += same
        before = base.get(desired_agent.name) if base is not None else None
        views.append(
            AgentView(
                agent=desired_agent.name,
                model=desired_agent.model_name,
                scope=scope.get(desired_agent.name, "") if scope is not None else "",
                aliases=aliases,
                traffic_before=_traffic(before) if base is not None else None,
                traffic_after=_traffic(desired_agent),
                shadow_before=_shadow(before),
                shadow_after=_shadow(desired_agent),
            )
        )

    if serving is not None:
        names = {a.name for a in desired.agents}
        for agent_name in sorted(set(serving.agents) - names):
            served = serving.agents[agent_name]
            if prune:

                def add(
                    kind: Kind, obj: str, action: Action, before: Payload | None,
                    after: Payload | None, reason: str, s: AgentServing = served,
                ) -> None:  # fmt: skip
                    changes.append(
                        Change(s.agent, s.model, kind, obj, action, before, after, reason)
                    )

                remove_serving(served, "no manifest declares the agent any more (--prune)", add)
            else:
                diags.append(
                    Diagnostic(
                        Severity.WARNING,
                        f"agent '{agent_name}' is served but no manifest declares it any more; "
                        "apply with --prune to stop serving it",
                        agent=agent_name,
                    )
                )

    declared = {a.model_name for a in desired.agents}
    for name in sorted(observed.models):
        model = observed.models[name]
        if name in declared or model.owner != owner:
            continue
        place = model.tags.get(ENVIRONMENT_TAG)
        if place != desired.environment:  # another environment's, or one reconciled without
            envs = {e.name for e in desired.environments}
            if desired.environment is not None and place not in envs:
                where = f"environment '{place}'" if place else "no environment"
                diags.append(Diagnostic(
                    Severity.WARNING,
                    f"registered model '{name}' is managed by '{owner}' in {where}, which the "
                    "manifests no longer declare: no environment prunes it (delete it by hand)",
                    agent=model.tags.get(AGENT_TAG, name),
                ))  # fmt: skip
            continue
        agent_name = model.tags.get(AGENT_TAG, name)
        gone = base.get(agent_name) if base is not None else None
        if gone is not None and gone.model_name == name:
            # Removed by this change: show what goes away (traffic; aliases only when pruned).
            managed = sorted(model.inventory(MANAGED_ALIASES_TAG) & set(model.aliases))
            views.append(
                AgentView(
                    agent=agent_name,
                    model=name,
                    scope=f"{gone.manifest_ref} was removed",
                    aliases=tuple(
                        (a, model.aliases[a], None if prune else model.aliases[a]) for a in managed
                    ),
                    traffic_before=_traffic(gone),
                    traffic_after=(),
                    shadow_before=_shadow(gone),
                )
            )
        if prune:
            changes.append(
                Change(
                    agent=agent_name,
                    model=name,
                    kind=Kind.REGISTERED_MODEL,
                    name="",
                    action=Action.DELETE,
                    before=model_contents(model),
                    after=None,
                    reason="no manifest declares it any more (--prune)",
                )
            )
        else:
            diags.append(
                Diagnostic(
                    Severity.WARNING,
                    f"registered model '{name}' is managed by '{owner}' but no manifest declares "
                    "it any more; apply with --prune to delete it",
                    agent=agent_name,
                )
            )
    # Last: whether a prompt is still in use depends on the aliases once the rest is applied.
    prompt_prunes, prune_diags = prune_prompts(desired, observed, owner, prune, changes)
    changes.extend(prompt_prunes)
    diags += prune_diags
    if serving is None and any(a.manifest.spec.serving is not None for a in desired.agents):
        diags.append(
            Diagnostic(
                Severity.WARNING,
                "spec.serving is validated but not reconciled with --target registry; "
                "a serving target (--target local) reconciles it",
            )
        )
    specs = {a.name: a.manifest.spec.rollout for a in desired.agents
             if a.manifest.spec.rollout is not None}  # fmt: skip
    reported = held_rollouts(
        rollouts if rollouts is not None else progress or {}, (v.agent for v in views), specs
    )
    return Plan(
        owner=owner,
        changes=tuple(changes),
        diagnostics=Diagnostics.of(diags),
        agents=tuple(v.agent for v in views),
        unchanged=unchanged,
        views=tuple(views),
        held=tuple(h for h in reported if h.attention),
        rolling=tuple(h for h in reported if not h.attention) + tuple(waiting),
        gated=tuple(gated),
        prompts=tuple(
            p.name
            for p in sorted(desired.prompts, key=lambda p: p.name)
            if scope is None or p.name in scope
        ),
        environment=desired.environment,
        promotions=tuple(s for s in promotions if scope is None or s.agent in scope),
    )


def _traffic(agent: DesiredAgent | None) -> tuple[Share, ...]:
    serving = agent.manifest.spec.serving if agent is not None else None
    if serving is None:
        return ()
    return tuple((t.ref, t.percent) for t in serving.traffic)


def _shadow(agent: DesiredAgent | None) -> Share | None:
    serving = agent.manifest.spec.serving if agent is not None else None
    if serving is None or serving.shadow is None:
        return None
    return (serving.shadow.ref, serving.shadow.percent)


_AliasView = tuple[str, int | None, int | str | None]


def _named_as_a_prompt(agent: DesiredAgent) -> Diagnostic:
    path: FieldPath = (
        ("spec", "registeredModel")
        if agent.manifest.spec.registered_model
        else ("metadata", "name")
    )
    return Diagnostic(
        Severity.ERROR,
        f"a prompt named '{agent.model_name}' exists; prompts and models share one namespace "
        "in MLflow: give the agent's registered model another name",
        agent.location(path),
        field_name(path),
        agent.name,
    )


def _plan_agent(
    agent: DesiredAgent,
    model: ObservedModel | None,
    owner: str,
    served: AgentServing | None,
    plan_serving_too: bool,
    progress: Progress | None,
    recorded: bool = False,
    waiting: list[HeldRollout] | None = None,
    gated_out: list[GatedVersion] | None = None,
    environment: str | None = None,
) -> tuple[list[Change], list[Diagnostic], int, tuple[_AliasView, ...]]:
    """One agent's changes. A rollout that only a serving target can start (the registry target
    holds its promote alias) is added to ``waiting``; a version that failed its evaluation, to
    ``gated_out``."""
    waiting = waiting if waiting is not None else []
    spec = agent.manifest.spec
    name = agent.model_name
    changes: list[Change] = []
    diags: list[Diagnostic] = []
    unchanged = 0

    def change(
        kind: Kind,
        obj: str,
        action: Action,
        before: Payload | None,
        after: Payload | None,
        reason: str,
    ) -> None:
        changes.append(Change(agent.name, name, kind, obj, action, before, after, reason))

    def error(path: FieldPath, message: str) -> None:
        diags.append(
            Diagnostic(Severity.ERROR, message, agent.location(path), field_name(path), agent.name)
        )

    # The registered model and its tags.
    model_tags = dict(spec.tags)
    model_tags[OWNER_TAG] = owner
    model_tags[AGENT_TAG] = agent.name
    model_tags[MANAGED_TAGS_TAG] = csv(spec.tags)
    model_tags[MANAGED_ALIASES_TAG] = csv(spec.aliases)
    if environment is not None:
        model_tags[ENVIRONMENT_TAG] = environment
    if model is None:
        after = ModelState(dict(sorted(model_tags.items())), spec.description, name=name)
        change(
            Kind.REGISTERED_MODEL, "", Action.CREATE, None, after, "registered model does not exist"
        )
    else:
        if model.owner is None and not spec.adopt:
            error(
                ("spec", "registeredModel"),
                f"registered model '{name}' exists but is not managed by agentctl; set "
                "spec.adopt: true to take it over",
            )
            return changes, diags, unchanged, ()
        if model.owner is not None and model.owner != owner:
            error(
                ("spec", "registeredModel"),
                f"registered model '{name}' is managed by '{model.owner}', not '{owner}'",
            )
            return changes, diags, unchanged, ()
        inventory = model.inventory(MANAGED_TAGS_TAG) | {
            OWNER_TAG,
            AGENT_TAG,
            MANAGED_TAGS_TAG,
            MANAGED_ALIASES_TAG,
        }
        before_tags, after_tags = tag_diff(dict(model.tags), model_tags, inventory)
        managed = spec.description is not None
        before = ModelState(before_tags, model.description if managed else None)
        after = ModelState(after_tags, spec.description)
        if before != after:
            reason = (
                "adopting an unmanaged model"
                if model.owner is None
                else what_differs(before, after)
            )
            change(Kind.REGISTERED_MODEL, "", Action.UPDATE, before, after, reason)
        else:
            unchanged += 1

    # Versions: each declared entry resolves to a registry number, or to one apply will create.
    # Entries that land on the same existing version are planned once (see _one_entry_per_version).
    entries: list[tuple[FieldPath, VersionEntry]] = [
        (("spec", "versions", i), e) for i, e in enumerate(spec.versions)
    ]
    implicit = agent.source is not None and not any(e.version == CURRENT for e in spec.versions)
    if implicit:
        entries.append((("spec", "source"), VersionEntry(version=CURRENT)))
    resolved: dict[VersionRef, int | Pending] = {}
    on_version: dict[int, list[tuple[FieldPath, VersionEntry]]] = {}
    versions = model.versions if model is not None else {}
    built: dict[str, VersionRef] = {}  # digest -> the first version built from it
    for path, entry in entries:
        src = agent.source_of(entry.version)  # current's or a named version's (loader-checked)
        if src is not None:
            ref = entry.version
            same = built.setdefault(src.digest, ref)
            if same != ref:
                diags.append(same_content(agent, path, ref, same))
            found = model.version_with_digest(src.digest) if model is not None else None
            if found is None:
                if same == ref:
                    plan_new_version(str(ref), entry, src, change)
                resolved[ref] = Pending(src.digest)
                continue
            resolved[ref] = found.number
            on_version.setdefault(found.number, []).append((path, entry))
        else:
            number = entry.version
            assert isinstance(number, int)
            if number not in versions:
                error(
                    (*path, "version"),
                    f"version {number} of registered model '{name}' does not exist in the "
                    "registry; use 'current' for the version built from spec.source",
                )
                continue
            resolved[number] = number
            on_version.setdefault(number, []).append((path, entry))
    for number, claims in sorted(on_version.items()):
        governing = one_entry_per_version(number, claims, implicit, error)
        if governing is not None:
            unchanged += plan_version_tags(governing, versions[number], change)

    # Evaluations: before an alias or traffic moves to a version; a failed one is withheld.
    gated = plan_evaluations(agent, model, resolved, change)
    if gated_out is not None:
        gated_out.extend(gated[n] for n in sorted(gated))

    # What moves the promote alias and the traffic in place of the manifest: a rollout held or
    # under way; a cleared one leaves them to the manifest.
    steering = progress if isinstance(progress, Hold | Running) else None
    if isinstance(progress, Clear) and model is not None:
        if progress.stored.tags:
            change(
                Kind.ROLLOUT,
                "",
                Action.DELETE,
                RolloutRecord(dict(progress.stored.tags)),
                None,
                progress.reason,
            )
    elif isinstance(progress, Running) and model is not None:
        # The command tag is the CLI's: left in place (the state records it as consumed); only
        # clearing the record takes it too.
        before_state = progress.stored.record
        after_state = progress.state.to_storage()
        if before_state != after_state:
            change(
                Kind.ROLLOUT,
                "",
                Action.UPDATE if before_state else Action.CREATE,
                RolloutRecord(before_state) if before_state else None,
                RolloutRecord(dict(sorted(after_state.items()))),
                progress.reason,
            )
        else:
            unchanged += 1

    # Aliases: set what the manifest says; delete only aliases agentctl set before (inventory).
    # A rollout holds its promote alias on the stable version until the canary is promoted.
    current_aliases = dict(model.aliases) if model is not None else {}
    alias_views: list[_AliasView] = []
    for alias, ref in sorted(spec.aliases.items()):
        target = resolved.get(ref)
        if target is None:
            continue  # its version is in error, reported above
        if steering is not None and alias == steering.alias:
            target = steering.alias_version
        elif (
            not plan_serving_too
            and spec.rollout is not None
            and alias == spec.rollout.promote_alias
            and alias in current_aliases
            and target != current_aliases[alias]
        ):
            asked, target = target, current_aliases[alias]
            if not recorded:  # (a recorded rollout is reported as such: it says why)
                waiting.append(
                    HeldRollout(
                        agent.name,
                        asked if isinstance(asked, int) else 0,
                        target,
                        WAITING,
                        0,
                        len(spec.rollout.steps),
                        "",
                    )
                )
        if isinstance(target, int) and target in gated and current_aliases.get(alias) != target:
            have = current_aliases.get(alias)
            alias_views.append((alias, have, have))
            continue  # failed its evaluation: the alias stays where it is (reported as gated)
        alias_views.append(
            (alias, current_aliases.get(alias), "new" if isinstance(target, Pending) else target)
        )
        after_alias = AliasTarget(target)
        have = current_aliases.get(alias)
        if have is None:
            change(
                Kind.ALIAS, alias, Action.CREATE, None, after_alias, f"alias '{alias}' is not set"
            )
        elif isinstance(target, Pending) or have != target:
            change(
                Kind.ALIAS,
                alias,
                Action.UPDATE,
                AliasTarget(have),
                after_alias,
                f"alias '{alias}' points to version {have}",
            )
        else:
            unchanged += 1
    if model is not None:
        for alias in sorted(model.inventory(MANAGED_ALIASES_TAG) - set(spec.aliases)):
            if alias in current_aliases:
                alias_views.append((alias, current_aliases[alias], None))
                change(
                    Kind.ALIAS,
                    alias,
                    Action.DELETE,
                    AliasTarget(current_aliases[alias]),
                    None,
                    f"alias '{alias}' was removed from the manifest",
                )
    if plan_serving_too:
        unchanged += _plan_agent_serving(
            agent, resolved, served, change, error, steering, frozenset(gated)
        )
    return changes, diags, unchanged, tuple(alias_views)


def _plan_agent_serving(
    agent: DesiredAgent,
    resolved: Mapping[VersionRef, int | Pending],
    served: AgentServing | None,
    change: ChangeFn,
    error: Callable[[FieldPath, str], None],
    progress: Hold | Running | None,
    gated: frozenset[int] = frozenset(),
) -> int:
    """Resolve spec.serving's targets to versions, then plan servers, traffic and shadow; while
    a rollout runs, its split takes the place of spec.serving.traffic. A split that gives a
    share to a version that failed its evaluation is withheld whole (what is served stays);
    a rollout held for its canary's evaluation does not start that canary."""
    spec = agent.manifest.spec
    if spec.serving is None:
        if served is not None:
            remove_serving(served, "the manifest declares no spec.serving", change)
        return 0

    def resolve(
        path: FieldPath, target: TrafficTarget | ShadowTarget | HeaderRoute
    ) -> Target | None:
        ref = spec.aliases[target.alias] if target.alias is not None else target.version
        assert ref is not None  # exactly one of alias / version, checked by the schema
        found = resolved.get(ref)
        if found is None:
            field = "alias" if target.alias is not None else "version"
            error(
                (*path, field),
                f"{target.ref} is version {ref}, which does not exist in the registry of "
                f"'{agent.model_name}'; nothing is served",
            )
        return found

    weights: dict[Target, int] = {}
    failed = False
    for i, target in enumerate(spec.serving.traffic):
        found = resolve(("spec", "serving", "traffic", i), target)
        if found is None:
            failed = True
            continue
        weights[found] = weights.get(found, 0) + target.percent
    shadow: tuple[Target, int] | None = None
    if spec.serving.shadow is not None:
        found = resolve(("spec", "serving", "shadow"), spec.serving.shadow)
        if found is None:
            failed = True
        else:
            shadow = (found, spec.serving.shadow.percent)
    headers: list[tuple[str, str, Target]] = []
    for i, route in enumerate(spec.serving.routes):
        found = resolve(("spec", "serving", "routes", i), route)
        if found is None:
            failed = True
        else:
            headers.append((route.header.lower(), route.value, found))
    if failed:
        return 0
    rollout = spec.rollout
    if (
        isinstance(progress, Running)
        and rollout is not None
        and rollout.header_route is not None
        and not progress.state.phase.done
    ):
        # Argo Rollouts' setHeaderRoute: testers reach the canary whatever its weight, for as
        # long as the rollout runs; the manifest's own routes come first.
        match = rollout.header_route
        headers.append((match.header.lower(), match.value, progress.state.canary))
    affinity = spec.serving.affinity
    routing = RoutingState(
        tuple(headers),
        (
            (affinity.header.lower() if affinity.header else None, affinity.cookie)
            if affinity is not None
            else None
        ),
    )
    if progress is not None:
        weights = {version: percent for version, percent in progress.weights.items()}
        if isinstance(progress, Hold):  # the canary this apply registers, started at 0 %
            canary = resolved.get(progress.canary)
            if canary is not None and canary not in gated:
                weights.setdefault(canary, 0)
    # A version that failed its evaluation gains no traffic, whatever asks for it (the manifest's
    # split, a rollout's, a rollback to it): such a split is withheld whole; one that only takes
    # traffic away from it goes through.
    now = served.weights if served is not None else {}
    mirrored = served.shadow if served is not None else None
    if any(isinstance(t, int) and t in gated and p > now.get(t, 0) for t, p in weights.items()) or (
        shadow is not None
        and isinstance(shadow[0], int)
        and shadow[0] in gated
        and (mirrored is None or mirrored[0] != shadow[0] or shadow[1] > mirrored[1])
    ):
        return 0
    names: dict[str, str] = {}  # a pending version's digest -> its first name in the manifest
    for ref, found in resolved.items():
        if isinstance(found, Pending):
            names.setdefault(found.digest, str(ref))
    return plan_serving(
        agent.name,
        agent.model_name,
        DesiredServing(weights, shadow, names, routing),
        served,
        change,
    )
