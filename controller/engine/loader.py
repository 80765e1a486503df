"""Load a directory (or file) of manifests into :class:`~controller.core.manifest.desired.Desired`.

This module does file I/O: it reads YAML and the agents' source files (to digest them).
Every problem is collected as a :class:`~controller.core.diagnostics.Diagnostic` naming file, line,
column and field; if any is an error, :func:`load` raises :class:`~controller.core.errors.InvalidInput`
and returns nothing, so nothing downstream can act on half-valid input.

YAML documents that have neither ``apiVersion`` nor ``kind`` are not manifests (an agent's
``config.yaml`` may sit beside them) and are skipped.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from controller.core.diagnostics import Diagnostic, Diagnostics, Location, Severity
from controller.core.environment.overlay import in_environment
from controller.core.errors import InvalidInput
from controller.core.manifest.checks import FieldPath, check_manifest, field_name
from controller.core.manifest.desired import DEFAULTS_KIND, Desired, DesiredAgent, ResolvedSource
from controller.core.manifest.repair import Validated, validate
from controller.core.manifest.schema import (
    KIND,
    AgentManifest,
    AgentSpec,
    ServingDefaults,
    ServingDefaultsSpec,
)
from controller.core.manifest.schema_environment import ENVIRONMENT_KIND, EnvironmentSpec
from controller.core.manifest.schema_prompt import PROMPT_KIND, PromptSpec
from controller.core.plan.kube_objects import resolve_settings
from controller.engine.environments import BuiltEnvironment, build_environment, check_all
from controller.engine.evaluation import resolve_evaluation
from controller.engine.files import MAX_MANIFEST_BYTES, Unreadable, read_regular, shown_path
from controller.engine.prompts import PromptClaims, build_prompt
from controller.engine.source import resolve_sources
from controller.engine.yamlnodes import documents
from controller.ports import SourceHistory

__all__ = ["find_root", "git_work_tree", "load"]

_SKIP_DIRS = {"node_modules", "__pycache__"}
_SUFFIXES = (".yaml", ".yml")


@dataclass
class _Doc:
    data: Any
    locations: dict[FieldPath, Location]
    file: str
    start: Location


@dataclass
class _Collector:
    items: list[Diagnostic] = field(default_factory=list)

    def error(self, loc: Location | None, field_: str, message: str, agent: str = "") -> None:
        self.items.append(Diagnostic(Severity.ERROR, message, loc, field_, agent))

    def warn(self, loc: Location | None, field_: str, message: str, agent: str = "") -> None:
        self.items.append(Diagnostic(Severity.WARNING, message, loc, field_, agent))


def git_work_tree(path: Path) -> Path | None:
    """The nearest directory at or above ``path`` that holds ``.git``, if any."""
    start = path.resolve()
    if start.is_file():
        start = start.parent
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def find_root(path: Path) -> Path:
    """The repository root above ``path`` (the nearest directory with ``.git``), else its dir."""
    start = path.resolve()
    return git_work_tree(start) or (start.parent if start.is_file() else start)


def load(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    allow_empty: bool = False,
    partial: bool = False,
    history: SourceHistory | None = None,
) -> tuple[Desired, Diagnostics]:
    """Load every manifest under ``path``. Raise InvalidInput if any error is found, unless
    ``partial``: then return the agents that are valid, with the diagnostics of the rest.
    ``history`` reads the sources that name a git ``revision``."""
    base = Path(path)
    out = _Collector()
    if not base.exists():
        out.error(None, "", f"{base}: no such file or directory")
        raise InvalidInput(Diagnostics.of(out.items))
    root_dir = Path(root).resolve() if root is not None else find_root(base)

    # Every agent that validates, as written or once repaired (see core.manifest.repair), takes
    # part in the checks across documents, so that one run reports every problem; only the
    # agents without any error are desired.
    built: list[_Built] = []
    by_name: dict[str, _Built] = {}
    by_model: dict[str, _Built] = {}
    defaults: _Defaults | None = None
    prompts = PromptClaims()
    environments: list[BuiltEnvironment] = []
    for file in _manifest_files(base):
        display = shown_path(file)
        for doc in _read_documents(file, display, root_dir, out):
            kind, misspelt = _kind(doc, out)
            if kind == DEFAULTS_KIND:
                found = _build_defaults(doc, root_dir, out)
                if found is None or misspelt:
                    continue
                if defaults is not None:
                    out.error(
                        found.location,
                        "kind",
                        f"a second {DEFAULTS_KIND} document; the first is at "
                        f"{defaults.location} (one per desired state)",
                    )
                    continue
                defaults = found
                continue
            if kind == ENVIRONMENT_KIND:
                built_env = build_environment(
                    doc.data, doc.locations, doc.file, doc.start, root_dir, out, misspelt
                )
                if built_env is not None:
                    environments.append(built_env)
                continue
            if kind == PROMPT_KIND:
                built_prompt = build_prompt(
                    doc.data, doc.locations, doc.file, doc.start, root_dir, out, misspelt
                )
                if built_prompt is not None:
                    prompts.add(built_prompt, by_name, by_model, out)
                continue
            agent = _build_agent(doc, root_dir, out, history, misspelt)
            if agent is None:
                continue
            clash = _clash(agent, by_name, by_model) or prompts.clash(agent)
            if clash is not None:
                where, message = clash
                if not _repair_caused(agent, where):
                    out.error(agent.agent.location(where), field_name(where), message, agent.name)
                continue
            if not agent.validated.affects(_NAME):
                by_name[agent.agent.name] = agent
                if not agent.validated.affects(_MODEL):
                    by_model[agent.agent.model_name] = agent
            built.append(agent)

    wrong = prompts.check_bindings(built, out)
    built = [replace(b, valid=False) if i in wrong else b for i, b in enumerate(built)]
    agents = _check_settings(built, defaults, out)
    desired_prompts = sorted(
        (p.desired for p in prompts.kept if p.desired is not None), key=lambda p: p.name
    )
    desired_envs = check_all(
        environments,
        {b.name for b in built if b.name} | set(by_name),
        {p.prompt_name: f"prompt '{p.prompt_name}'" for p in prompts.kept},
        out,
    )
    # Each environment's overlays over the agents (a problem names the file that causes it).
    staged = Desired(tuple(agents), str(root_dir), environments=tuple(desired_envs))
    for env in desired_envs:
        out.items.extend(in_environment(staged, env)[1])
    if not agents and not desired_prompts and not out.items and not allow_empty:
        out.error(
            None,
            "",
            f"{base}: no Agent or Prompt manifests found (an empty desired state would prune "
            "every managed model and prompt; pass --allow-empty if that is meant)",
        )
    diags = Diagnostics.of(sorted(_once(out.items), key=_order))
    if diags.has_errors and not partial:
        raise InvalidInput(diags)
    agents.sort(key=lambda a: a.name)
    head = _head(root_dir, history) if agents else None
    if head is not None:  # recorded on what is logged from the working tree
        agents = [_at_head(a, head) for a in agents]
    return (
        Desired(
            tuple(agents),
            str(root_dir),
            defaults=defaults.manifest if defaults else None,
            defaults_location=defaults.location if defaults else None,
            defaults_ref=defaults.ref if defaults else "",
            prompts=tuple(desired_prompts),
            environments=tuple(desired_envs),
        ),
        diags,
    )


def _head(root: Path, history: SourceHistory | None) -> str | None:
    """The commit the working tree at ``root`` is at; None outside git (or without history)."""
    if history is None or git_work_tree(root) is None:
        return None
    try:
        return history.commit(str(root), "HEAD")
    except LookupError:  # a repository without a commit yet
        return None


def _at_head(agent: DesiredAgent, head: str) -> DesiredAgent:
    def at(src: ResolvedSource) -> ResolvedSource:
        return src if src.commit is not None else replace(src, head=head)

    return replace(
        agent,
        source=at(agent.source) if agent.source is not None else None,
        named={n: at(s) for n, s in agent.named.items()},
    )


def _once(items: list[Diagnostic]) -> list[Diagnostic]:
    """Without a problem that is also reported at the same place as part of another's message:
    a YAML dataset under the manifests' directory is read as a possible manifest too, and its
    invalid YAML is reported as the dataset's problem (with the manifest's field)."""

    def text(d: Diagnostic) -> str:
        return f"{d.field}: {d.message}" if d.field else d.message

    return [
        d
        for d in items
        if not any(e is not d and e.location == d.location and text(d) in e.message for e in items)
    ]


def _order(d: Diagnostic) -> tuple[str, int, int]:
    """By file, then line and column; a problem of no file (the path itself) first."""
    loc = d.location
    return (loc.file, loc.line, loc.column) if loc else ("", 0, 0)


_NAME: FieldPath = ("metadata", "name")
_MODEL: FieldPath = ("spec", "registeredModel")


@dataclass(frozen=True, slots=True)
class _Built:
    """An Agent document that validates, as written or repaired; ``valid``: without any error."""

    agent: DesiredAgent
    validated: Validated[AgentManifest]
    valid: bool
    name: str  # as written, for the diagnostics ("" if not a string)


@dataclass(frozen=True, slots=True)
class _Defaults:
    manifest: ServingDefaults
    doc: _Doc
    ref: str  # the file, relative to the root
    validated: Validated[ServingDefaults]

    @property
    def location(self) -> Location:
        return _deepest(self.doc, ("kind",))


def _kind(doc: _Doc, out: _Collector) -> tuple[str | None, bool]:
    """The document's kind, and whether it is misspelt: a kind that is not one of the four is
    reported, and the document is checked as the closest one (by its spec's fields only one
    kind has, else by the kind's spelling), so that its other problems are reported too."""
    data = doc.data
    kind = data.get("kind") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind in _KINDS:
        return kind, False
    spec = data.get("spec")
    keys = set(spec) if isinstance(spec, dict) else set()
    if keys & _AGENT_FIELDS:
        closest = KIND
    elif keys & _PROMPT_FIELDS:
        closest = PROMPT_KIND
    elif keys & _ENVIRONMENT_FIELDS:
        closest = ENVIRONMENT_KIND
    elif keys & _DEFAULTS_FIELDS:
        closest = DEFAULTS_KIND
    else:
        ratio = {k: difflib.SequenceMatcher(None, kind.lower(), k.lower()).ratio()
                 for k in _KINDS}  # fmt: skip
        closest = max(ratio, key=lambda k: ratio[k])
    out.error(
        _deepest(doc, ("kind",)),
        "kind",
        f"kind must be {KIND}, {PROMPT_KIND}, {ENVIRONMENT_KIND} or {DEFAULTS_KIND} (got {kind!r}); "
        f"checked as {closest}",
    )
    return closest, True


_KINDS = (KIND, PROMPT_KIND, ENVIRONMENT_KIND, DEFAULTS_KIND)
_DEFAULTS_FIELDS = {f.alias or n for n, f in ServingDefaultsSpec.model_fields.items()}
# The fields only one kind's spec has (versions, aliases, tags... are both an Agent's and a
# Prompt's).
_AGENT_FIELDS = {f.alias or n for n, f in AgentSpec.model_fields.items()}
_PROMPT_FIELDS = {f.alias or n for n, f in PromptSpec.model_fields.items()}
_ENVIRONMENT_FIELDS = {f.alias or n for n, f in EnvironmentSpec.model_fields.items()}
_AGENT_FIELDS, _PROMPT_FIELDS, _ENVIRONMENT_FIELDS = (
    _AGENT_FIELDS - _PROMPT_FIELDS - _DEFAULTS_FIELDS - _ENVIRONMENT_FIELDS,
    _PROMPT_FIELDS - _AGENT_FIELDS - _DEFAULTS_FIELDS - _ENVIRONMENT_FIELDS,
    _ENVIRONMENT_FIELDS - _AGENT_FIELDS - _PROMPT_FIELDS - _DEFAULTS_FIELDS,
)


def _build_defaults(doc: _Doc, root: Path, out: _Collector) -> _Defaults | None:
    if doc.data.get("kind") != DEFAULTS_KIND:  # misspelt, reported: check the rest all the same
        doc = replace(doc, data={**doc.data, "kind": DEFAULTS_KIND})
    validated = validate(doc.data, ServingDefaults)
    _report_validation(validated, doc, "", out)
    if validated.model is None:
        return None
    return _Defaults(validated.model, doc, _relative(doc.file, root), validated)


def _relative(file: str, root: Path) -> str:
    ref = Path(file).resolve()
    return ref.relative_to(root).as_posix() if ref.is_relative_to(root) else file


def _check_settings(
    built: list[_Built], defaults: _Defaults | None, out: _Collector
) -> list[DesiredAgent]:
    """Each agent's Kubernetes serving settings as resolved (its own over ServingDefaults):
    an agent whose settings cannot serve is reported and left out. The agents without any error
    are returned. A problem that a repair of either document may have caused is not reported."""
    under = defaults.manifest.spec.kubernetes if defaults else None
    unsure = defaults is not None and defaults.validated.affects(("spec", "kubernetes"))
    kept = []
    for b in built:
        agent = b.agent
        serving = agent.manifest.spec.serving
        if serving is None:
            if b.valid:
                kept.append(agent)
            continue
        if unsure or b.validated.affects(("spec", "serving", "kubernetes"), _NAME):
            continue  # the document is in error already; its settings are not what was written
        own = serving.kubernetes
        settings = resolve_settings(own, under)
        ok = True
        if (
            settings.router == "service"
            and serving.shadow is not None
            and not b.validated.affects(("spec", "serving", "shadow"))
        ):
            ok = False
            path: FieldPath = ("spec", "serving", "shadow")
            whence = "" if own and own.router else f" (router service from {DEFAULTS_KIND})"
            out.error(
                agent.location(path),
                field_name(path),
                f"router service{whence} cannot mirror traffic: a shadow needs router gateway "
                "(the Gateway API's RequestMirror filter)",
                agent.name,
            )
        rollout = agent.manifest.spec.rollout
        asked = (
            (("spec", "serving", "routes"), "header routes", bool(serving.routes)),
            (
                ("spec", "serving", "affinity"),
                "conversation affinity",
                serving.affinity is not None,
            ),
            (
                ("spec", "rollout", "headerRoute"),
                "a rollout's header route",
                rollout is not None and rollout.header_route is not None,
            ),
        )
        for path, what, given in asked:
            if settings.router == "service" and given and not b.validated.affects(path):
                ok = False
                whence = "" if own and own.router else f" (router service from {DEFAULTS_KIND})"
                out.error(
                    agent.location(path),
                    field_name(path),
                    f"router service{whence} cannot express {what}: one Service splits by "
                    "replicas only; they need router gateway (an HTTPRoute)",
                    agent.name,
                )
        if settings.replicas == 0 and settings.router != "service":
            ok = False
            message = (
                "replicas 0 would leave the traffic sent to each version with no server; use at "
                "least 1 (with router service, replicas is the agent's total)"
            )
            if own is not None and own.replicas is not None:
                path = ("spec", "serving", "kubernetes", "replicas")
                out.error(agent.location(path), field_name(path), message, agent.name)
            elif defaults is not None:
                path = ("spec", "kubernetes", "replicas")
                out.error(
                    _deepest(defaults.doc, path),
                    field_name(path),
                    message.replace(
                        "replicas 0", f"replicas 0, which agent {agent.name} takes,", 1
                    ),
                    agent.name,
                )
        if ok and b.valid:
            kept.append(agent)
    return kept


def _repair_caused(built: _Built, where: FieldPath) -> bool:
    """Whether a clash at ``where`` may be the repair's doing (a stand-in name, say)."""
    named = built.agent.manifest.spec.registered_model is not None
    return built.validated.affects(where) or (
        where == _MODEL and not named and built.validated.affects(_NAME)
    )


def _clash(
    built: _Built, by_name: dict[str, _Built], by_model: dict[str, _Built]
) -> tuple[FieldPath, str] | None:
    """An agent defined twice, or a registered model claimed by two agents."""
    agent = built.agent
    name_path: FieldPath = _NAME
    first = by_name.get(agent.name)
    if first is not None:
        return (
            name_path,
            f"agent '{agent.name}' is defined twice; first at {first.agent.location(name_path)}",
        )
    first = by_model.get(agent.model_name)
    if first is not None:
        return _MODEL, (
            f"registered model '{agent.model_name}' is already managed by agent "
            f"'{first.agent.name}' ({first.agent.location(name_path)})"
        )
    return None


def _manifest_files(base: Path) -> Iterator[Path]:
    if not base.is_dir():  # a file, or something named as one that the reader refuses
        yield base
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(_SUFFIXES) and not name.startswith("."):
                yield Path(dirpath) / name


def _read_documents(file: Path, display: str, root: Path, out: _Collector) -> Iterator[_Doc]:
    """The YAML documents of one manifest file: a regular file inside the repository root, of at
    most MAX_MANIFEST_BYTES (a symlink out of the root is refused unread)."""
    real = Path(os.path.realpath(file))
    if not real.is_relative_to(root) and real != Path(os.path.abspath(file)):
        out.error(
            Location(display, 1, 1),
            "",
            f"a symlink to {real}, outside the repository root {root}: not read",
        )
        return
    try:
        text = read_regular(file, MAX_MANIFEST_BYTES).decode("utf-8")
    except Unreadable as exc:
        out.error(Location(display, 1, 1), "", exc.reason)
        return
    except UnicodeDecodeError as exc:
        out.error(Location(display, 1, 1), "", f"cannot read: {exc}")
        return
    for doc in documents(text, display, out.error):
        yield _Doc(doc.data, doc.locations, display, doc.start)


def _build_agent(
    doc: _Doc, root: Path, out: _Collector, history: SourceHistory | None, misspelt: bool = False
) -> _Built | None:
    """An Agent document, validated and checked; ``misspelt``: its kind is in error (reported),
    the rest is checked as an Agent's."""
    data = doc.data
    if isinstance(data, list) and any(isinstance(x, dict) and "apiVersion" in x for x in data):
        out.error(doc.start, "", "one manifest per YAML document: separate them with '---'")
        return None
    if not isinstance(data, dict):
        return None  # data, not a manifest
    if "apiVersion" not in data and "kind" not in data:
        return None  # not a manifest: data such as an agent's config file
    if misspelt:
        data = {**data, "kind": KIND}
    name = ""
    if isinstance(data.get("metadata"), dict) and isinstance(data["metadata"].get("name"), str):
        name = data["metadata"]["name"]
    validated = validate(data, AgentManifest)
    _report_validation(validated, doc, name, out)
    manifest = validated.model
    if manifest is None:
        return None
    manifest_ref = _relative(doc.file, root)
    agent = DesiredAgent(manifest, doc.file, None, doc.locations, manifest_ref)
    # A repaired manifest's paths are those of the copy; a problem is reported where it stands
    # in the file, unless the repair touched what it follows from.
    problems = []
    for p in check_manifest(manifest):
        path, also = validated.original(p.path), [validated.original(a) for a in p.also]
        if not validated.affects(path, *also):
            problems.append(p)
            out.error(agent.location(path), field_name(path), p.message, name)

    def error(loc: Location, field_: str, message: str) -> None:
        out.error(loc, field_, message, name)

    # Sources are resolved (their errors reported too) as far as a repair left them as written:
    # spec.source if untouched, and each named version whose entry's source is untouched (its
    # errors at the entry's lines in the file, whatever else is wrong in the manifest).
    def entry_as_written(i: int) -> int | None:
        path = validated.original(("spec", "versions", i, "source"))
        written = path[2]
        return written if isinstance(written, int) and not validated.affects(path) else None

    resolved = resolve_sources(
        agent,
        root,
        error,
        history,
        source_as_written=not validated.affects(("spec", "source")),
        entry_as_written=entry_as_written,
    )

    def as_written(path: FieldPath) -> FieldPath | None:
        original = validated.original(path)
        return None if validated.affects(original) else original

    evaluation = resolve_evaluation(agent, root, error, as_written)
    evaluated = manifest.spec.evaluation is None or evaluation is not None
    ok = not misspelt and not validated.errors and not problems and resolved is not None
    ok = ok and evaluated
    source, own = resolved if resolved is not None else (None, {})
    agent = DesiredAgent(manifest, doc.file, source, doc.locations, manifest_ref, own, evaluation)
    return _Built(agent, validated, ok, name)


def _report_validation(validated: Validated[Any], doc: _Doc, agent: str, out: _Collector) -> None:
    for path, message in validated.errors:
        out.error(_deepest(doc, path), field_name(path), message, agent)


def _deepest(doc: _Doc, path: FieldPath) -> Location:
    for n in range(len(path), -1, -1):
        loc = doc.locations.get(path[:n])
        if loc is not None:
            return loc
    return doc.start
