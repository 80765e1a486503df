"""The planner's version-level pieces: a new version from its source, the tags and description
of an existing one, which manifest entry governs a version, and the tag diff they share.

Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller.core.diagnostics import Diagnostic, Severity
from controller.core.environment.record import PROMOTED_FROM_REGISTRY_TAG, PROMOTED_FROM_TAG
from controller.core.manifest.checks import FieldPath, field_name
from controller.core.manifest.desired import DesiredAgent, ResolvedSource
from controller.core.manifest.schema import VersionEntry, VersionRef
from controller.core.plan.changes import (
    Action,
    Kind,
    ModelContents,
    ModelState,
    Payload,
    VersionCreate,
    VersionState,
)
from controller.core.state.observed import (
    COMMIT_TAG,
    DIGEST_TAG,
    MANAGED_ALIASES_TAG,
    MANAGED_TAGS_TAG,
    SOURCE_TAG,
    ObservedModel,
    ObservedVersion,
)

__all__ = [
    "ChangeFn",
    "csv",
    "model_contents",
    "one_entry_per_version",
    "plan_new_version",
    "plan_version_tags",
    "same_content",
    "tag_diff",
    "what_differs",
]

#: How the planner records a change: kind, object, action, before, after, reason.
ChangeFn = Callable[[Kind, str, Action, Payload | None, Payload | None, str], None]


def model_contents(model: ObservedModel) -> ModelContents:
    """What a registered model (or prompt) holds as it is deleted: its versions and aliases."""
    return ModelContents(
        model.name, tuple(sorted(model.versions)), tuple(sorted(model.aliases.items()))
    )


def csv(keys: Iterable[str]) -> str:
    return ",".join(sorted(keys))


def tag_diff(
    current: dict[str, str], desired: dict[str, str], inventory: frozenset[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Before/after views over the keys agentctl manages: desired keys and the old inventory."""
    keys = set(desired) | set(inventory)
    before = {k: current[k] for k in sorted(keys) if k in current}
    after = dict(sorted(desired.items()))
    return before, after


def same_content(
    agent: DesiredAgent, path: FieldPath, ref: VersionRef, first: VersionRef
) -> Diagnostic:
    return Diagnostic(
        Severity.WARNING,
        f"version '{ref}' is built from the same content as '{first}': they are one registry "
        "version (the first one declared sets its tags and description)",
        agent.location(path),
        field_name(path),
        agent.name,
    )


def plan_new_version(name: str, entry: VersionEntry, src: ResolvedSource, change: ChangeFn) -> None:
    if src.promoted_from is not None:
        _plan_copy(name, entry, src, src.promoted_from, change)
        return
    tags = dict(entry.tags)
    if entry.tags:
        tags[MANAGED_TAGS_TAG] = csv(entry.tags)
    tags[DIGEST_TAG] = src.digest
    tags[SOURCE_TAG] = src.code_ref
    if src.commit or src.head:
        tags[COMMIT_TAG] = src.commit or src.head or ""
    after = VersionCreate(
        digest=src.digest,
        code=src.code_ref,
        config=src.config_ref,
        pip_requirements=tuple(src.pip_requirements),
        tags=dict(sorted(tags.items())),
        description=entry.description,
        commit=src.commit,
        prompts=src.pins,
        source_digest=src.files_digest,
    )
    files = ", ".join(src.refs)
    at = f" at revision {src.revision} ({src.commit[:12]})" if src.commit else ""
    if src.pins:
        at += " with prompts " + ", ".join(
            f"{p.key}={p.prompt}/{p.version}" if p.version is not None
            else f"{p.key}={p.prompt} (new version)"
            for p in src.pins
        )  # fmt: skip
    change(
        Kind.MODEL_VERSION,
        name,
        Action.CREATE,
        None,
        after,
        f"no version has source digest {src.digest[:19]}…: log and register {files}{at}",
    )


def _plan_copy(
    name: str, entry: VersionEntry, src: ResolvedSource, uri: str, change: ChangeFn
) -> None:
    """A version promoted into an environment: a copy of ``uri`` (its tags, description and
    run), with the lineage that finds it again and the entry's own tags."""
    tags = dict(entry.tags)
    if entry.tags:
        tags[MANAGED_TAGS_TAG] = csv(entry.tags)
    tags[DIGEST_TAG] = src.digest
    tags[PROMOTED_FROM_TAG] = uri
    at = ""
    if src.promoted_registry is not None:
        tags[PROMOTED_FROM_REGISTRY_TAG] = src.promoted_registry
        at = f" from {src.promoted_registry} (its files copied over)"
    after = VersionCreate(
        digest=src.digest,
        code=uri,
        config=None,
        pip_requirements=(),
        tags=dict(sorted(tags.items())),
        description=entry.description,
        copy_from=uri,
        copy_registry=src.promoted_registry,
    )
    change(Kind.MODEL_VERSION, name, Action.CREATE, None, after,
           f"promoted: copy {uri}{at} (every gate of the step holds)")  # fmt: skip


def one_entry_per_version(
    number: int,
    claims: list[tuple[FieldPath, VersionEntry]],
    implicit: bool,
    error: Callable[[FieldPath, str], None],
) -> VersionEntry | None:
    """The one entry that governs version ``number``'s tags and description.

    ``current`` can resolve to a number the manifest also pins (the source is unchanged since
    that version). The implied ``current`` entry then yields to the explicit one; two explicit
    entries must agree, or each apply would undo the other.
    """
    if implicit and len(claims) > 1:
        claims = [c for c in claims if c[0] != ("spec", "source")]
    first_path, first = claims[0]
    for path, other in claims[1:]:
        if (other.tags, other.description) != (first.tags, first.description):
            error(
                (*path, "version"),
                f"resolves to version {number}, as {field_name(first_path)} does ('current' is "
                f"version {number}: the source is unchanged), with other tags or description; "
                "declare the version once",
            )
            return None
    return first


def plan_version_tags(entry: VersionEntry, version: ObservedVersion, change: ChangeFn) -> int:
    """Plan the tags and description of an existing version; return 1 if nothing differs."""
    inventory = version.inventory(MANAGED_TAGS_TAG)
    desired = dict(entry.tags)
    if entry.tags or inventory:
        desired[MANAGED_TAGS_TAG] = csv(entry.tags)
    keys = set(inventory) | ({MANAGED_TAGS_TAG} if MANAGED_TAGS_TAG in desired else set())
    before_tags, after_tags = tag_diff(dict(version.tags), desired, frozenset(keys))
    managed = entry.description is not None
    before = VersionState(version.number, before_tags, version.description if managed else None)
    after = VersionState(version.number, after_tags, entry.description)
    if before == after:
        return 1
    change(
        Kind.MODEL_VERSION,
        str(entry.version),
        Action.UPDATE,
        before,
        after,
        f"version {version.number}: {what_differs(before, after)}",
    )
    return 0


def what_differs(before: ModelState | VersionState, after: ModelState | VersionState) -> str:
    parts = []
    if before.description != after.description:
        parts.append("description differs")
    b, a = before.tags, after.tags
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    shown = [k for k in changed if k not in (MANAGED_TAGS_TAG, MANAGED_ALIASES_TAG)]
    if shown:
        parts.append("tags differ: " + ", ".join(shown))
    elif changed:
        parts.append("the record of the tags and aliases agentctl manages changes")
    return "; ".join(parts) or "differs"
