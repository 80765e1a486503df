"""The planner's rows for ``kind: Prompt``: the prompt, its versions, tags and aliases, and the
owned prompts no manifest declares. Pure data: no I/O.

A prompt is reconciled as an agent's registered model is: the same ownership tags (a prompt
agentctl does not own is never written; ``spec.adopt`` takes one over), the same inventories of
the tags and aliases it set, the same order of changes. A version is registered only when no
version of the prompt holds the template's content (its digest is computed from the versions'
own tags, so a version made by hand with the same content is that version).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from controller.core.diagnostics import Diagnostic, Severity
from controller.core.manifest.checks import FieldPath, field_name
from controller.core.manifest.desired import Desired, DesiredPrompt
from controller.core.manifest.schema import VersionEntry
from controller.core.plan.changes import (
    Action,
    AliasTarget,
    Change,
    Kind,
    ModelState,
    Payload,
    Pending,
    PromptVersionCreate,
    Target,
)
from controller.core.plan.versions import (
    csv,
    model_contents,
    plan_version_tags,
    tag_diff,
    what_differs,
)
from controller.core.prompt.binding import pins_of
from controller.core.prompt.content import PromptContent
from controller.core.prompt.resolve import content_of, version_with_content
from controller.core.state.observed import (
    MANAGED_ALIASES_TAG,
    MANAGED_TAGS_TAG,
    OWNER_TAG,
    PROMPT_TAG,
    ObservedModel,
    RegistrySnapshot,
)

__all__ = ["PHASE", "plan_prompts", "prune_prompts"]

#: The order of one prompt's changes (as for an agent's registered model).
PHASE = {
    (Kind.PROMPT, Action.CREATE): 0,
    (Kind.PROMPT_ALIAS, Action.DELETE): 1,
    (Kind.PROMPT, Action.UPDATE): 2,
    (Kind.PROMPT_VERSION, Action.CREATE): 3,
    (Kind.PROMPT_VERSION, Action.UPDATE): 4,
    (Kind.PROMPT_ALIAS, Action.CREATE): 6,
    (Kind.PROMPT_ALIAS, Action.UPDATE): 6,
    (Kind.PROMPT, Action.DELETE): 10,
}

_ChangeFn = Callable[[Kind, str, Action, Payload | None, Payload | None, str], None]


def plan_prompts(
    desired: Desired,
    observed: RegistrySnapshot,
    owner: str,
    prune: bool,
    scope: Mapping[str, str] | None = None,
) -> tuple[list[Change], list[Diagnostic], int]:
    """(changes, diagnostics, unchanged): every declared prompt's changes in order (the owned
    prompts no manifest declares are :func:`prune_prompts`')."""
    changes: list[Change] = []
    diags: list[Diagnostic] = []
    unchanged = 0
    for prompt in sorted(desired.prompts, key=lambda p: p.name):
        if scope is not None and prompt.name not in scope:
            continue
        mine: list[Change] = []
        same = _plan_prompt(prompt, observed, owner, mine, diags)
        mine.sort(key=lambda c: PHASE[(c.kind, c.action)])
        changes += mine
        unchanged += same
    return changes, diags, unchanged


def prune_prompts(
    desired: Desired,
    observed: RegistrySnapshot,
    owner: str,
    prune: bool,
    planned: Sequence[Change],
) -> tuple[list[Change], list[Diagnostic]]:
    """The deletion of the owned prompts no manifest declares (with ``prune``; else a warning
    each), but of none still in use once ``planned`` (every other change of the plan) is
    applied: one a desired agent binds, or one an aliased agent version is pinned to."""
    prunes: list[Change] = []
    diags: list[Diagnostic] = []
    declared = {p.prompt_name for p in desired.prompts}
    aliased = _aliased_after(observed, planned)
    for name in sorted(observed.prompts):
        model = observed.prompts[name]
        if name in declared or model.owner != owner:
            continue
        doc = model.tags.get(PROMPT_TAG, name)
        users = _users(name, desired, observed, aliased)
        if users:
            diags.append(
                Diagnostic(
                    Severity.WARNING,
                    f"prompt '{name}' is managed by '{owner}' and no manifest declares it any "
                    f"more, but it is not pruned: {users}",
                    agent=doc,
                )
            )
        elif prune:
            prunes.append(
                Change(doc, name, Kind.PROMPT, "", Action.DELETE, model_contents(model), None,
                       "no manifest declares it any more (--prune)")
            )  # fmt: skip
        else:
            diags.append(
                Diagnostic(
                    Severity.WARNING,
                    f"prompt '{name}' is managed by '{owner}' but no manifest declares it any "
                    "more; apply with --prune to delete it",
                    agent=doc,
                )
            )
    return prunes, diags


def _aliased_after(observed: RegistrySnapshot, planned: Sequence[Change]) -> dict[str, set[int]]:
    """Model -> the numbers of its versions that hold an alias once ``planned`` is applied (a
    version this apply creates is left out: it is pinned to what desired agents bind)."""
    aliases = {name: dict(m.aliases) for name, m in observed.models.items()}
    for c in planned:
        if c.kind is Kind.REGISTERED_MODEL and c.action is Action.DELETE:
            aliases.pop(c.model, None)
        elif c.kind is Kind.ALIAS and c.action is Action.DELETE:
            aliases.get(c.model, {}).pop(c.name, None)
        elif c.kind is Kind.ALIAS:
            target = c.after_as(AliasTarget).target
            aliases.setdefault(c.model, {})[c.name] = target if isinstance(target, int) else 0
    return {m: {n for n in a.values() if n} for m, a in aliases.items()}


def _users(
    name: str, desired: Desired, observed: RegistrySnapshot, aliased: Mapping[str, set[int]]
) -> str:
    """Why the undeclared prompt ``name`` must stay ("" when nothing uses it): a desired agent
    binds it, or an agent version aliased after the plan (one that serves or may serve) is
    pinned to it."""
    binders = sorted(a.name for a in desired.agents for b in a.bindings if b.prompt == name)
    if binders:
        return f"agent {', '.join(repr(a) for a in binders)} binds it"
    pinned = sorted(
        f"{model.name}/{number}"
        for model in observed.models.values()
        for number in sorted(aliased.get(model.name, ()))
        if (version := model.versions.get(number)) is not None
        and any(prompt == name for prompt, _ in pins_of(version.tags).values())
    )
    if pinned:
        return f"aliased versions are pinned to it ({', '.join(pinned)})"
    return ""


def _plan_prompt(
    prompt: DesiredPrompt,
    observed: RegistrySnapshot,
    owner: str,
    out: list[Change],
    diags: list[Diagnostic],
) -> int:
    spec = prompt.manifest.spec
    name = prompt.prompt_name
    model = observed.prompts.get(name)
    unchanged = 0

    def change(
        kind: Kind, obj: str, action: Action, before: Payload | None, after: Payload | None,
        reason: str,
    ) -> None:  # fmt: skip
        # The version-level helpers are the agents'; they speak of model versions.
        kind = Kind.PROMPT_VERSION if kind is Kind.MODEL_VERSION else kind
        out.append(Change(prompt.name, name, kind, obj, action, before, after, reason))

    def error(path: FieldPath, message: str) -> None:
        diags.append(
            Diagnostic(Severity.ERROR, message, prompt.location(path), field_name(path),
                       prompt.name)
        )  # fmt: skip

    if model is None and name in observed.models:
        error(("spec", "name") if spec.name else ("metadata", "name"),
              f"a registered model named '{name}' exists; prompts and models share one "
              "namespace in MLflow: give the prompt another name")  # fmt: skip
        return 0

    tags = dict(spec.tags)
    tags[OWNER_TAG] = owner
    tags[PROMPT_TAG] = prompt.name
    tags[MANAGED_TAGS_TAG] = csv(spec.tags)
    tags[MANAGED_ALIASES_TAG] = csv(spec.aliases)
    if model is None:
        after = ModelState(dict(sorted(tags.items())), spec.description, name=name)
        change(Kind.PROMPT, "", Action.CREATE, None, after, "prompt does not exist")
    else:
        if model.owner is None and not spec.adopt:
            error(("metadata", "name"),
                  f"prompt '{name}' exists but is not managed by agentctl; set spec.adopt: true "
                  "to take it over")  # fmt: skip
            return 0
        if model.owner is not None and model.owner != owner:
            error(("metadata", "name"),
                  f"prompt '{name}' is managed by '{model.owner}', not '{owner}'")  # fmt: skip
            return 0
        inventory = model.inventory(MANAGED_TAGS_TAG) | {
            OWNER_TAG, PROMPT_TAG, MANAGED_TAGS_TAG, MANAGED_ALIASES_TAG,
        }  # fmt: skip
        before_tags, after_tags = tag_diff(dict(model.tags), tags, inventory)
        managed = spec.description is not None
        before = ModelState(before_tags, model.description if managed else None)
        after = ModelState(after_tags, spec.description)
        if before != after:
            why = "adopting an unmanaged prompt" if model.owner is None else what_differs(
                before, after)  # fmt: skip
            change(Kind.PROMPT, "", Action.UPDATE, before, after, why)
        else:
            unchanged += 1

    # Versions: 'current' (implied) is the template; numbers must exist.
    entries: list[tuple[FieldPath, VersionEntry]] = [
        (("spec", "versions", i), VersionEntry(version=e.version, tags=e.tags,
                                               description=e.description))
        for i, e in enumerate(spec.versions)
    ]  # fmt: skip
    if not any(e.version == "current" for _, e in entries):
        entries.append((("spec", "template"), VersionEntry(version="current")))
    resolved: dict[int | str, Target] = {}
    digest = prompt.content.digest
    for path, entry in entries:
        if entry.version == "current":
            found = version_with_content(model, digest)
            if found is None:
                base = _base(prompt, model)
                _new_version(prompt, entry, base, change)
                resolved["current"] = Pending(digest)
                continue
            resolved["current"] = found
            assert model is not None
            unchanged += plan_version_tags(entry, model.versions[found], change)
            continue
        number = entry.version
        assert isinstance(number, int)
        if model is None or number not in model.versions:
            error((*path, "version"),
                  f"version {number} of prompt '{name}' does not exist in the registry; use "
                  "'current' for the version made from spec.template")  # fmt: skip
            continue
        resolved[number] = number
        unchanged += plan_version_tags(entry, model.versions[number], change)

    # Aliases: set what the manifest says; delete only those agentctl set before.
    have = dict(model.aliases) if model is not None else {}
    for alias, ref in sorted(spec.aliases.items()):
        target = resolved.get(ref)
        if target is None:
            continue  # its version is in error, reported above (or by the loader)
        now = have.get(alias)
        if now is None:
            change(Kind.PROMPT_ALIAS, alias, Action.CREATE, None, AliasTarget(target),
                   f"alias '{alias}' is not set")  # fmt: skip
        elif isinstance(target, Pending) or now != target:
            change(Kind.PROMPT_ALIAS, alias, Action.UPDATE, AliasTarget(now), AliasTarget(target),
                   f"alias '{alias}' points to version {now}")  # fmt: skip
        else:
            unchanged += 1
    if model is not None:
        for alias in sorted(model.inventory(MANAGED_ALIASES_TAG) - set(spec.aliases)):
            if alias in have:
                change(Kind.PROMPT_ALIAS, alias, Action.DELETE, AliasTarget(have[alias]), None,
                       f"alias '{alias}' was removed from the manifest")  # fmt: skip
    return unchanged


def _base(prompt: DesiredPrompt, model: ObservedModel | None) -> tuple[int, PromptContent] | None:
    """The version a new one follows, for the plan's diff: the one the first alias moving to
    ``current`` points at now, else the newest."""
    if model is None or not model.versions:
        return None
    for alias, ref in sorted(prompt.manifest.spec.aliases.items()):
        number = model.aliases.get(alias)
        if ref == "current" and number is not None:
            content = content_of(model, number)
            if content is not None:
                return number, content
    for number in sorted(model.versions, reverse=True):
        content = content_of(model, number)
        if content is not None:
            return number, content
    return None


def _new_version(
    prompt: DesiredPrompt,
    entry: VersionEntry,
    base: tuple[int, PromptContent] | None,
    change: _ChangeFn,
) -> None:
    tags = dict(entry.tags)
    if entry.tags:
        tags[MANAGED_TAGS_TAG] = csv(entry.tags)
    after = PromptVersionCreate(
        content=prompt.content,
        template=prompt.template_ref,
        tags=dict(sorted(tags.items())),
        description=entry.description,
        base=base[0] if base is not None else None,
        base_content=base[1] if base is not None else None,
    )
    what = f"since version {base[0]}" if base is not None else "new"
    change(Kind.PROMPT_VERSION, "current", Action.CREATE, None, after,
           f"no version holds the template {prompt.template_ref} ({what}, content digest "
           f"{prompt.content.digest[:19]}…)")  # fmt: skip
