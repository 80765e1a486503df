"""Agents' prompt bindings resolved: each ``spec.prompts`` entry to the prompt version it binds
(its content digest, and its number when the registry has it), and each source's digest bound to
them. Pure data: no I/O.

A binding to a prompt a ``kind: Prompt`` document declares resolves through that document (an
alias to ``current`` is the template as it is in the repository, even before apply registers
it); a binding to any other prompt resolves through the registry. The agent's version digest is
:func:`~controller.core.state.digest.bound_digest` over its files' digest and the bound contents,
so that a prompt change makes a new agent version, which then goes through the agent's rollout
and evaluation like a code change. Everything downstream (planner, rollouts, scope, ``eval``)
reads the bound digest as the source's digest.
"""

from __future__ import annotations

import difflib
from dataclasses import replace

from controller.core.diagnostics import Diagnostic, Severity
from controller.core.manifest.desired import Desired, DesiredAgent, DesiredPrompt, ResolvedSource
from controller.core.prompt.binding import Binding, PromptPin, pins_of
from controller.core.prompt.content import PromptContent
from controller.core.state.digest import bound_digest
from controller.core.state.observed import FAILED, ObservedModel, RegistrySnapshot

__all__ = ["bind_prompts", "content_of", "version_with_content"]


def content_of(model: ObservedModel, number: int) -> PromptContent | None:
    """The content of version ``number`` of a prompt, from its tags (None: no such version)."""
    version = model.versions.get(number)
    return PromptContent.from_tags(version.tags) if version is not None else None


def version_with_content(model: ObservedModel | None, digest: str) -> int | None:
    """The lowest-numbered usable version of a prompt whose content has ``digest``."""
    if model is None:
        return None
    hits = [
        v.number
        for v in model.versions.values()
        if v.status != FAILED and (c := PromptContent.from_tags(v.tags)) is not None
        and c.digest == digest
    ]  # fmt: skip
    return min(hits) if hits else None


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _resolve(
    b: Binding, declared: DesiredPrompt | None, observed: ObservedModel | None
) -> PromptPin | str:
    """The pin ``b`` resolves to, or why it cannot."""
    if declared is not None:
        ref: int | str | None = b.version
        if b.alias is not None:
            aliases = declared.manifest.spec.aliases
            if b.alias not in aliases:
                return (f"binding '{b.key}': prompt '{b.prompt}' declares no alias '{b.alias}'"
                        f"{_hint(b.alias, sorted(aliases))}")  # fmt: skip
            ref = aliases[b.alias]
        if ref == "current":
            digest = declared.content.digest
            return PromptPin(b.key, b.prompt, digest, version_with_content(observed, digest), b.ref)
        assert isinstance(ref, int)
        content = content_of(observed, ref) if observed is not None else None
        if content is None:
            return (f"binding '{b.key}': version {ref} of prompt '{b.prompt}' does not exist in "
                    "the registry")  # fmt: skip
        return PromptPin(b.key, b.prompt, content.digest, ref, b.ref)
    if observed is None:
        return (f"binding '{b.key}': prompt '{b.prompt}' does not exist in the registry and no "
                "Prompt manifest declares it")  # fmt: skip
    number = b.version
    if b.alias is not None:
        number = observed.aliases.get(b.alias)
        if number is None:
            have = sorted(observed.aliases)
            listed = f" (it has {', '.join(have)})" if have else " (it has none)"
            return (f"binding '{b.key}': prompt '{b.prompt}' has no alias '{b.alias}' in the "
                    f"registry{listed}{_hint(b.alias, have)}")  # fmt: skip
    assert number is not None
    content = content_of(observed, number)
    if content is None:
        return f"binding '{b.key}': version {number} of prompt '{b.prompt}' does not exist"
    return PromptPin(b.key, b.prompt, content.digest, number, b.ref)


def _bound(src: ResolvedSource, pins: tuple[PromptPin, ...]) -> ResolvedSource:
    if src.promoted_from is not None:
        return src  # a promotion's copy carries the pins it was logged with, and their digest
    files = src.files_digest or src.digest
    digest = bound_digest(files, {p.key: (p.prompt, p.digest) for p in pins})
    return replace(src, digest=digest, files_digest=files if pins else None, pins=pins)


def bind_prompts(desired: Desired, observed: RegistrySnapshot) -> tuple[Desired, list[Diagnostic]]:
    """``desired`` with every agent's sources bound to its prompts, and an error (at the
    agent's ``spec.prompts.<key>``) for each binding that resolves to nothing. Idempotent: a
    source already bound is bound again from its files' digest."""
    declared = desired.by_prompt()
    diags: list[Diagnostic] = []
    agents: list[DesiredAgent] = []
    for agent in desired.agents:
        bindings = agent.bindings
        if not bindings:
            agents.append(agent)
            continue
        pins: list[PromptPin] = []
        for b in bindings:
            found = _resolve(b, declared.get(b.prompt), observed.prompts.get(b.prompt))
            if isinstance(found, str):
                path = ("spec", "prompts", b.key)
                diags.append(
                    Diagnostic(
                        Severity.ERROR,
                        found,
                        agent.location(path),
                        f"spec.prompts.{b.key}",
                        agent.name,
                    )
                )
                continue
            pins.append(found)
        if len(pins) != len(bindings):
            agents.append(agent)
            continue
        pinned = tuple(pins)
        bound = replace(
            agent,
            source=_bound(agent.source, pinned) if agent.source is not None else None,
            named={n: _bound(s, pinned) for n, s in agent.named.items()},
        )
        agents.append(bound)
        diags += _pinned_to_nothing(bound, observed)
    return replace(desired, agents=tuple(agents)), diags


def _pinned_to_nothing(agent: DesiredAgent, observed: RegistrySnapshot) -> list[Diagnostic]:
    """A warning for each registered version of ``agent``'s sources that pins a prompt version
    the registry no longer has (deleted by hand): its model cannot load that prompt, and its
    content digest keeps it the version for that source, so no new version is logged."""
    model = observed.models.get(agent.model_name)
    if model is None:
        return []
    found = (model.version_with_digest(s.digest) for s in agent.sources)
    out = []
    for version in sorted({v.number for v in found if v is not None}):
        gone = [
            f"prompts:/{prompt}/{number}"
            for prompt, number in sorted(pins_of(model.versions[version].tags).values())
            # A prompt gone as a whole is registered again by the apply when declared (with
            # its numbers from 1: the pin may hold again), else the binding is in error.
            if prompt in observed.prompts and number not in observed.prompts[prompt].versions
        ]
        if gone:
            out.append(
                Diagnostic(
                    Severity.WARNING,
                    f"version {version} of '{model.name}' pins {', '.join(gone)}, which the "
                    "registry no longer has: it cannot load that prompt. Delete the version "
                    "for the next apply to log it again, pinned to the prompt as it is now",
                    agent=agent.name,
                )
            )
    return out
