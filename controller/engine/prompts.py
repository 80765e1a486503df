"""A ``kind: Prompt`` document built into a :class:`~controller.core.manifest.desired.DesiredPrompt`:
validated (repaired as agents are, so that every problem shows in one run), checked
(:mod:`controller.core.manifest.prompts`), and its template file read and parsed. Does file I/O.

The template is a file relative to the manifest, inside the repository root, a regular file of
at most :data:`MAX_TEMPLATE_BYTES`, in UTF-8. Its format is ``spec.format``, else chat for a
``.yaml``/``.yml``/``.json`` file, else text. A chat template is one YAML (or JSON) list of
messages ``{role, content}``. A problem of the template names the template file, line and column
(with the manifest's field ``spec.template``); a problem of where it is, the manifest's line.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from controller.core.diagnostics import Location
from controller.core.manifest.desired import DesiredAgent, DesiredPrompt
from controller.core.manifest.problem import FieldPath, field_name
from controller.core.manifest.prompts import check_bindings as check_agent_bindings
from controller.core.manifest.prompts import check_prompt
from controller.core.manifest.repair import Validated, validate
from controller.core.manifest.schema import AgentManifest
from controller.core.manifest.schema_prompt import PROMPT_KIND, PromptManifest
from controller.core.prompt.content import PromptContent
from controller.core.prompt.template import line_column, syntax_problems, variable_uses
from controller.engine.files import Unreadable, read_regular, shown_path
from controller.engine.yamlnodes import documents

__all__ = [
    "MAX_TEMPLATE_BYTES",
    "AgentDoc",
    "BuiltPrompt",
    "PromptClaims",
    "Report",
    "at_path",
    "build_prompt",
]

#: The most a template file may hold.
MAX_TEMPLATE_BYTES = 1024 * 1024
TEMPLATE: FieldPath = ("spec", "template")
VARIABLES: FieldPath = ("spec", "variables")
_NAME: FieldPath = ("metadata", "name")
_MODEL: FieldPath = ("spec", "registeredModel")
_CHAT_SUFFIXES = (".yaml", ".yml", ".json")
_MESSAGE_FIELDS = ("role", "content")


class Report(Protocol):
    """Where problems go (the loader's collector)."""

    def error(self, loc: Location | None, field_: str, message: str, agent: str = "") -> None: ...

    def warn(self, loc: Location | None, field_: str, message: str, agent: str = "") -> None: ...


class AgentDoc(Protocol):
    """An Agent document as the loader holds it (its ``_Built``)."""

    @property
    def agent(self) -> DesiredAgent: ...
    @property
    def validated(self) -> Validated[AgentManifest]: ...
    @property
    def name(self) -> str: ...
    @property
    def valid(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    """A Prompt document that validates, as written or repaired; ``desired`` is None when it has
    any error (its own, or its template's)."""

    manifest: PromptManifest
    validated: Validated[PromptManifest]
    file: str
    locations: Mapping[FieldPath, Location]
    start: Location
    name: str  # metadata.name as written, for the diagnostics ("" if not a string)
    desired: DesiredPrompt | None

    @property
    def prompt_name(self) -> str:
        return self.manifest.prompt_name

    def location(self, path: FieldPath) -> Location:
        """Where ``path`` (of the manifest as validated) stands in the file."""
        return at_path(self.locations, self.start, self.validated.original(path))


def build_prompt(
    data: dict[str, Any],
    locations: Mapping[FieldPath, Location],
    file: str,
    start: Location,
    root: Path,
    report: Report,
    misspelt: bool = False,
) -> BuiltPrompt | None:
    """A Prompt document validated, checked and its template read; None if even a repair does
    not validate it. ``misspelt``: its kind is in error (reported), the rest is checked as a
    Prompt's."""
    if misspelt:
        data = {**data, "kind": PROMPT_KIND}
    name = ""
    if isinstance(data.get("metadata"), dict) and isinstance(data["metadata"].get("name"), str):
        name = data["metadata"]["name"]
    validated = validate(data, PromptManifest)
    for path, message in validated.errors:
        report.error(at_path(locations, start, path), field_name(path), message, name)
    manifest = validated.model
    if manifest is None:
        return None
    built = BuiltPrompt(manifest, validated, file, locations, start, name, None)
    ok = not misspelt and not validated.errors
    for p in check_prompt(manifest):
        path, also = validated.original(p.path), [validated.original(a) for a in p.also]
        if not validated.affects(path, *also):
            ok = False
            report.error(at_path(locations, start, path), field_name(path), p.message, name)
    if validated.affects(TEMPLATE, ("spec", "format")):
        return built  # reported already; the template is not what was written
    # variables a repair touched are not what was written: the template is checked without them
    read = _Template(built, root, report, variables=not validated.affects(VARIABLES)).read()
    if read is None or not ok:
        return built
    content, ref = read
    manifest_ref = _relative(file, root)
    desired = DesiredPrompt(manifest, file, content, ref, dict(locations), manifest_ref)
    return replace(built, desired=desired)


@dataclass
class PromptClaims:
    """The Prompt documents that validate and the names they claim: metadata.name is unique
    across Agent and Prompt documents (changes are keyed by it); a registered prompt name is
    unique among prompts and is no agent's registered model (MLflow has one namespace for
    both)."""

    kept: list[BuiltPrompt] = field(default_factory=list)
    by_name: dict[str, BuiltPrompt] = field(default_factory=dict)
    by_prompt: dict[str, BuiltPrompt] = field(default_factory=dict)

    def add(
        self,
        p: BuiltPrompt,
        agents: Mapping[str, AgentDoc],
        models: Mapping[str, AgentDoc],
        out: Report,
    ) -> None:
        named: FieldPath = ("spec", "name") if p.manifest.spec.name is not None else _NAME
        name_ok = not p.validated.affects(_NAME)
        prompt_ok = not p.validated.affects(named)
        problem: tuple[FieldPath, str] | None = None
        first = self.by_name.get(p.name) if name_ok else None
        agent = agents.get(p.name) if name_ok else None
        model = models.get(p.prompt_name) if prompt_ok else None
        other = self.by_prompt.get(p.prompt_name) if prompt_ok else None
        if first is not None:
            problem = _NAME, f"prompt '{p.name}' is defined twice; first at {first.location(_NAME)}"
        elif agent is not None:
            problem = (
                _NAME,
                (
                    f"name '{p.name}' is already used by agent '{p.name}' "
                    f"({agent.agent.location(_NAME)}); metadata.name is unique across Agent and "
                    "Prompt documents"
                ),
            )
        elif other is not None:
            problem = (
                named,
                (
                    f"prompt '{p.prompt_name}' is already managed by Prompt '{other.name}' "
                    f"({other.location(_NAME)})"
                ),
            )
        elif model is not None:
            problem = (
                named,
                (
                    f"'{p.prompt_name}' is the registered model of agent '{model.agent.name}' "
                    f"({model.agent.location(_NAME)}); MLflow keeps models and prompts in one "
                    "namespace: give the prompt another name"
                ),
            )
        if problem is not None:
            out.error(p.location(problem[0]), field_name(problem[0]), problem[1], p.name)
            return
        if name_ok:
            self.by_name[p.name] = p
        if prompt_ok:
            self.by_prompt[p.prompt_name] = p
        self.kept.append(p)

    def clash(self, built: AgentDoc) -> tuple[FieldPath, str] | None:
        """An agent named as a prompt, or whose registered model is a prompt's name."""
        agent = built.agent
        first = self.by_name.get(agent.name)
        if first is not None:
            return _NAME, (
                f"name '{agent.name}' is already used by prompt '{agent.name}' "
                f"({first.location(_NAME)}); metadata.name is unique across Agent and Prompt "
                "documents"
            )
        first = self.by_prompt.get(agent.model_name)
        if first is not None:
            return _MODEL, (
                f"registered model '{agent.model_name}' is the name of prompt '{first.name}' "
                f"({first.location(_NAME)}); MLflow keeps models and prompts in one namespace"
            )
        return None

    def check_bindings(self, built: Sequence[AgentDoc], out: Report) -> set[int]:
        """Each agent's spec.prompts against the prompts declared (see
        core.manifest.prompts.check_bindings), each problem reported; the indices of the agents
        with a wrong binding (they are not desired)."""
        declared: dict[str, PromptManifest] = {
            name: p.manifest
            for name, p in self.by_prompt.items()
            if not p.validated.affects(("spec", "aliases"), ("spec", "versions"))
        }
        wrong = set()
        for i, b in enumerate(built):
            for problem in check_agent_bindings(b.agent.manifest.spec.prompts, declared):
                path = b.validated.original(problem.path)
                if not b.validated.affects(path):
                    wrong.add(i)
                    out.error(b.agent.location(path), field_name(path), problem.message, b.name)
        return wrong


def at_path(locations: Mapping[FieldPath, Location], start: Location, path: FieldPath) -> Location:
    """Where the deepest written prefix of ``path`` stands; else the document's ``start``."""
    for n in range(len(path), -1, -1):
        loc = locations.get(path[:n])
        if loc is not None:
            return loc
    return start


def _relative(file: str, root: Path) -> str:
    ref = Path(file).resolve()
    return ref.relative_to(root).as_posix() if ref.is_relative_to(root) else file


@dataclass
class _Template:
    """Reading and parsing one prompt's template file; every problem reported."""

    built: BuiltPrompt
    root: Path
    report: Report
    variables: bool = True  # check the template's variables against spec.variables
    shown: str = ""  # the template file as a diagnostic names it
    ok: bool = True

    def error(self, loc: Location, message: str) -> None:
        self.ok = False
        self.report.error(loc, field_name(TEMPLATE), message, self.built.name)

    def read(self) -> tuple[PromptContent, str] | None:
        """The content of the version 'current', and the template file relative to the root."""
        spec = self.built.manifest.spec
        raw = spec.template
        here = self.built.location(TEMPLATE)
        if os.path.isabs(raw):
            self.error(here, f"'{raw}' is absolute; give a path relative to the manifest")
            return None
        target = (Path(self.built.file).resolve().parent / raw).resolve()
        if not target.is_relative_to(self.root):
            self.error(
                here, f"'{raw}' resolves to {target}, outside the repository root {self.root}"
            )
            return None
        self.shown = shown_path(target)
        if not target.exists():
            self.error(here, f"template '{raw}' ({self.shown}) does not exist")
            return None
        try:
            text = read_regular(target, MAX_TEMPLATE_BYTES).decode("utf-8")
        except Unreadable as exc:
            self.error(here, f"template {self.shown}: {exc.reason}")
            return None
        except UnicodeDecodeError as exc:
            self.error(Location(self.shown, 1, 1), f"the template is not UTF-8 text: {exc}")
            return None
        kind = spec.format or ("chat" if target.suffix.lower() in _CHAT_SUFFIXES else "text")
        template: str | tuple[Mapping[str, str], ...] | None
        template = self._text(text) if kind == "text" else self._chat(text)
        if template is None or not self.ok:
            return None
        config = spec.model_config_.to_mlflow() if spec.model_config_ is not None else None
        content = PromptContent(kind, template, spec.response_format, config)
        for i, variable in enumerate(spec.variables if self.variables and spec.variables else ()):
            if variable not in content.variables:
                path: FieldPath = ("spec", "variables", i)
                self.report.warn(
                    self.built.location(path),
                    field_name(path),
                    f"variable '{variable}' is declared but the template never uses it",
                    self.built.name,
                )
        return content, target.relative_to(self.root).as_posix()

    # -- text ---------------------------------------------------------------------------------

    def _text(self, text: str) -> str | None:
        if not text.strip():
            self.error(Location(self.shown, 1, 1), "the template is empty")
            return None
        self._check(text, text, 0)
        return text

    def _check(self, text: str, source: str, base: int) -> None:
        """The placeholders of ``text`` (one message's content, or the whole text template),
        which stands in the file's ``source`` at or after ``base``: syntax, then variables."""
        for offset, message in syntax_problems(text):
            self.error(self._where(source, base, text, offset), f"does not parse: {message}")
        declared = self.built.manifest.spec.variables
        if declared is None or not self.variables:
            return
        for use in variable_uses(text):
            if use.name in declared:
                continue
            close = difflib.get_close_matches(use.name, declared, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            listed = ", ".join(sorted(declared)) or "none"
            self.error(
                self._where(source, base, text, use.offset),
                f"unknown variable '{use.name}' in the template; declared: {listed}{hint}",
            )

    def _where(self, source: str, base: int, text: str, offset: int) -> Location:
        """The line and column in the file of ``text[offset:]``: exact when ``text`` is the
        file; for a chat message, where the same characters first stand in the file after the
        message's ``content`` key (else that key itself)."""
        if text is source:
            return Location(self.shown, *line_column(source, offset))
        snippet = text[offset : offset + 80].split("\n", 1)[0]
        found = source.find(snippet, base) if snippet else -1
        return Location(self.shown, *line_column(source, found if found >= 0 else base))

    # -- chat ---------------------------------------------------------------------------------

    def _chat(self, text: str) -> tuple[Mapping[str, str], ...] | None:
        def reported(loc: Location, where: str, message: str) -> None:
            self.error(loc, f"{where}: {message}" if where else message)

        docs = list(documents(text, self.shown, reported))
        if not self.ok:
            return None
        if len(docs) > 1:
            self.error(docs[1].start, "a chat template is one YAML document: a list of messages")
            return None
        if not docs or docs[0].data is None:
            self.error(Location(self.shown, 1, 1), "the template is empty")
            return None
        doc = docs[0]
        example = "(`- role: system` / `  content: You are ...`)"
        if not isinstance(doc.data, list) or not doc.data:
            what = "an empty list" if doc.data == [] else f"a {_kind(doc.data)}"
            self.error(
                doc.start,
                f"a chat template is a list of messages with role and content {example}, "
                f"not {what}",
            )
            return None
        messages: list[dict[str, str]] = []
        for i, item in enumerate(doc.data):

            def at(*path: str | int, i: int = i) -> Location:
                return at_path(doc.locations, doc.start, (i, *path))

            if not isinstance(item, dict):
                self.error(at(), f"message {i + 1} is a {_kind(item)}, not a mapping {example}")
                continue
            meant: set[str] = set()  # a field an unknown key is close to: not also "missing"
            for key in item:
                if key not in _MESSAGE_FIELDS:
                    close = difflib.get_close_matches(str(key), _MESSAGE_FIELDS, n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    meant.update(close)
                    self.error(
                        at(str(key)),
                        f"message {i + 1}: unknown field '{key}' (a message has role and "
                        f"content){hint}",
                    )
            message: dict[str, str] = {}
            for key in _MESSAGE_FIELDS:
                value = item.get(key)
                if key not in item:
                    if key not in meant:
                        self.error(at(), f"message {i + 1} has no {key}")
                elif not isinstance(value, str) or not value.strip():
                    what = "an empty string" if isinstance(value, str) else f"a {_kind(value)}"
                    self.error(at(key), f"message {i + 1}: {key} must be text, not {what}")
                else:
                    message[key] = value
            if len(message) == len(_MESSAGE_FIELDS):
                base = _offset(text, at("content"))
                self._check(message["content"], text, base)
                messages.append(message)
        return tuple(messages) if self.ok else None


def _offset(text: str, loc: Location) -> int:
    """The offset in ``text`` of a line and column."""
    start = 0
    for _ in range(loc.line - 1):
        start = text.find("\n", start) + 1
    return start + loc.column - 1


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "mapping",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)
