"""Apply's part for ``kind: Prompt``: the prompt, its versions, tags and aliases, and the pins
of an agent version being logged (each bound prompt version's number, by its content).

Every write is idempotent as the agents' are: a prompt version is registered only after a fresh
look for a version with the same content, and after registering, the lowest version with that
content is the one (as the planner resolves ``current``): a version this apply's own attempt
made above it (a retried create, a race with another apply) is deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from controller.core.errors import BackendError, OutcomeUnknown
from controller.core.plan.changes import (
    Action,
    AliasTarget,
    Change,
    Kind,
    ModelState,
    Pending,
    PromptVersionCreate,
    Target,
    VersionState,
)
from controller.core.plan.changeset import Entry, Verb
from controller.core.prompt.binding import PromptPin
from controller.core.prompt.content import PromptContent
from controller.core.state.observed import ATTEMPT_TAG, FAILED, ObservedVersion
from controller.engine.retry import RetryPolicy
from controller.engine.tagops import tag_ops
from controller.ports import Registry

__all__ = ["PromptExecutor", "write_model", "write_version"]


def write_model(
    c: Change,
    r: Registry,
    policy: RetryPolicy,
    stamp: Mapping[str, str],
    create: Callable[[str, str | None, Mapping[str, str]], None],
) -> Entry:
    """A registered model's or a prompt's change (both are registered models to MLflow): made
    with ``create``, deleted, or its tags and description brought to the plan's."""
    call = policy.call
    if c.action is Action.CREATE:
        new = c.after_as(ModelState)
        tags = {**new.tags, **stamp}
        call(lambda: create(c.model, new.description, tags))
        return Entry(c.address, Verb.CREATED, c.model)
    if c.action is Action.DELETE:
        call(lambda: r.delete_model(c.model))
        return Entry(c.address, Verb.DELETED, c.model)
    before, after = c.before_as(ModelState), c.after_as(ModelState)
    set_tags, delete_tags = tag_ops(before.tags, {**after.tags, **stamp})
    for key in delete_tags:
        call(lambda k=key: r.delete_model_tag(c.model, k))  # type: ignore[misc]
    for key, value in set_tags:
        call(lambda k=key, v=value: r.set_model_tag(c.model, k, v))  # type: ignore[misc]
    description = after.description
    if description is not None and description != before.description:
        call(lambda: r.set_model_description(c.model, description))
    return Entry(c.address, Verb.CONFIGURED, c.reason)


def write_version(c: Change, r: Registry, policy: RetryPolicy, stamp: Mapping[str, str]) -> Entry:
    """A model version's or a prompt version's tags and description brought to the plan's."""
    call = policy.call
    before, after = c.before_as(VersionState), c.after_as(VersionState)
    number = after.version
    set_tags, delete_tags = tag_ops(before.tags, {**after.tags, **stamp})
    for key in delete_tags:
        call(lambda k=key: r.delete_version_tag(c.model, number, k))  # type: ignore[misc]
    for key, value in set_tags:
        call(lambda k=key, v=value: r.set_version_tag(c.model, number, k, v))  # type: ignore[misc]
    description = after.description
    if description is not None and description != before.description:
        call(lambda: r.set_version_description(c.model, number, description))
    return Entry(c.address, Verb.CONFIGURED, f"version {number}")


def _lowest(versions: Sequence[ObservedVersion], digest: str) -> int | None:
    hits = [
        v.number
        for v in versions
        if v.status != FAILED and (c := PromptContent.from_tags(v.tags)) is not None
        and c.digest == digest
    ]  # fmt: skip
    return min(hits) if hits else None


class PromptExecutor:
    """Carries out prompt changes, and resolves prompt versions by content for agents' pins."""

    def __init__(self, registry: Registry, policy: RetryPolicy, stamp: Mapping[str, str]) -> None:
        self.registry = registry
        self.policy = policy
        self.stamp = dict(stamp)
        self.created: dict[tuple[str, str], int] = {}  # (prompt, digest) -> version number

    def run(self, c: Change) -> Entry:
        if c.kind is Kind.PROMPT:
            return self._prompt(c)
        if c.kind is Kind.PROMPT_VERSION:
            return self._version(c)
        return self._alias(c)

    def _prompt(self, c: Change) -> Entry:
        return write_model(c, self.registry, self.policy, self.stamp, self.registry.create_prompt)

    def _version(self, c: Change) -> Entry:
        r, call = self.registry, self.policy.call
        if c.action is not Action.CREATE:
            return write_version(c, r, self.policy, self.stamp)
        new = c.after_as(PromptVersionCreate)
        digest = new.digest
        attempts: list[str] = []

        def find_or_create() -> tuple[int, bool]:
            existing = _lowest(r.prompt_versions(c.model), digest)
            if existing is not None:
                return existing, False
            attempt = uuid.uuid4().hex
            attempts.append(attempt)
            tags = {**new.tags, ATTEMPT_TAG: attempt, **self.stamp}
            return r.create_prompt_version(c.model, new.content, tags, new.description), True

        try:
            number, made = call(find_or_create)
        except OutcomeUnknown:
            number, made = 0, False
        if attempts:
            # The lowest version with this content is the one; the others this apply's own
            # attempts made (a create retried after a lost answer) are deleted.
            found = call(lambda: r.prompt_versions(c.model))
            keep = _lowest(found, digest)
            if keep is None:
                raise BackendError(
                    f"prompt '{c.model}': the version just registered is not found",
                    operation="create prompt version",
                    target=c.address,
                )
            ours = set(attempts)
            for v in found:
                if v.number != keep and v.tags.get(ATTEMPT_TAG) in ours:
                    call(lambda n=v.number: r.delete_version(c.model, n))  # type: ignore[misc]
            made = made and keep == number
            number = keep
        self.created[(c.model, digest)] = number
        if not made:
            return Entry(c.address, Verb.UNCHANGED, f"already registered as version {number}")
        return Entry(c.address, Verb.CREATED, f"version {number}")

    def _alias(self, c: Change) -> Entry:
        r, call = self.registry, self.policy.call
        if c.action is Action.DELETE:
            call(lambda: r.delete_alias(c.model, c.name))
            return Entry(c.address, Verb.DELETED, c.name)
        number = self.number(c.model, c.after_as(AliasTarget).target, c.address)
        call(lambda: r.set_alias(c.model, c.name, number))
        verb = Verb.CREATED if c.action is Action.CREATE else Verb.CONFIGURED
        return Entry(c.address, verb, f"-> version {number}")

    def number(self, prompt: str, target: Target, address: str) -> int:
        """The prompt version a plan value names: its number, or the version with its content
        (registered earlier in this run, or found in the registry)."""
        if not isinstance(target, Pending):
            return target
        digest = target.digest
        found = self.created.get((prompt, digest))
        if found is None:
            found = _lowest(self.policy.call(lambda: self.registry.prompt_versions(prompt)), digest)
        if found is None:
            raise BackendError(
                f"prompt '{prompt}' has no version with the content the plan binds "
                f"({digest[:19]}…); the prompt's own change did not go through",
                target=address,
            )
        return found

    def pins(self, pins: Sequence[PromptPin], address: str) -> dict[str, str]:
        """Binding key -> ``prompts:/<prompt>/<n>`` for an agent version being logged."""
        out = {}
        for pin in pins:
            target: Target = pin.version if pin.version is not None else Pending(pin.digest)
            out[pin.key] = pin.uri(self.number(pin.prompt, target, address))
        return out
