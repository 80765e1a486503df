"""An agent's sources, resolved and digested: spec.source, and each named version's own source
(spec.versions[].source, field by field over spec.source), read from the working tree or, with
``revision``, from the manifests' git repository at that revision. Does file I/O.

Every problem is reported through ``error`` (a location, the field's name, a message), naming
the field that declared the file at fault.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.core.diagnostics import Location
from controller.core.manifest.checks import FieldPath, field_name
from controller.core.manifest.desired import DesiredAgent, ResolvedSource
from controller.core.manifest.schema import CURRENT
from controller.core.prompt.binding import PROMPTS_CONFIG_KEY
from controller.core.state.digest import normalize_requirement, source_digest
from controller.engine.files import MAX_SOURCE_BYTES, Unreadable, read_regular, shown_path
from controller.ports import SourceHistory

__all__ = ["Error", "resolve_sources"]

#: Reports one problem: where, the field's name ("" if none), the message.
Error = Callable[[Location, str, str], None]

_FIELDS = (("code", "code"), ("config", "config"), ("pip_requirements", "pipRequirements"))


@dataclass(frozen=True, slots=True)
class _At:
    """A git revision the files are read at, named by the entry at ``path`` (its ``revision``)."""

    history: SourceHistory
    commit: str
    revision: str
    path: FieldPath
    version: str


def _as_written(i: int) -> int | None:
    return i


def resolve_sources(
    agent: DesiredAgent,
    root: Path,
    error: Error,
    history: SourceHistory | None,
    *,
    source_as_written: bool = True,
    entry_as_written: Callable[[int], int | None] = _as_written,
) -> tuple[ResolvedSource | None, dict[str, ResolvedSource]] | None:
    """spec.source's resolved source (None if unset) and each named version's; None if any is
    at fault (each problem reported once).

    For a manifest that a repair changed: ``source_as_written`` says whether spec.source is as
    written (if not, it is neither resolved nor inherited from); ``entry_as_written`` maps the
    index of a spec.versions entry to its index in the file, or to None when the repair touched
    its source (then it is not resolved). A named version whose source is incomplete (no code or
    requirements, reported by the checks) is not resolved either."""
    spec = agent.manifest.spec
    seen: set[tuple[Location, str, str]] = set()

    def once(loc: Location, field_: str, message: str) -> None:
        # A file that several versions take from spec.source is at fault once.
        if (loc, field_, message) not in seen:
            seen.add((loc, field_, message))
            error(loc, field_, message)

    ok = True
    current = None
    base: dict[str, tuple[Any, FieldPath]] = {}
    if spec.source is not None and source_as_written:
        base = {n: (getattr(spec.source, n), ("spec", "source", k)) for n, k in _FIELDS}
        current = _resolve(base, agent, root, once, None)
        ok = current is not None
    elif spec.source is not None:
        ok = False
    own_sources: dict[str, ResolvedSource] = {}
    for i, entry in enumerate(spec.versions):
        own = entry.source
        if own is None or not isinstance(entry.version, str) or entry.version == CURRENT:
            continue  # not a named version (the checks report a source where none belongs)
        written = entry_as_written(i)
        path: FieldPath = ("spec", "versions", written if written is not None else i, "source")
        fields = dict(base)
        for n, k in _FIELDS:
            if getattr(own, n) is not None:
                fields[n] = (getattr(own, n), (*path, k))
        if written is None or "code" not in fields or "pip_requirements" not in fields:
            ok = False
            continue
        at = None
        if own.revision is not None:
            where: FieldPath = (*path, "revision")
            at = _revision(own.revision, where, entry.version, agent, root, once, history)
            if at is None:
                ok = False
                continue
        resolved = _resolve(fields, agent, root, once, at)
        if resolved is None:
            ok = False
        else:
            own_sources[entry.version] = resolved
    return (current, own_sources) if ok else None


def _revision(
    revision: str,
    path: FieldPath,
    version: str,
    agent: DesiredAgent,
    root: Path,
    error: Error,
    history: SourceHistory | None,
) -> _At | None:
    if history is None:
        error(agent.location(path), field_name(path), "a source revision needs a git reader, "
              "which this caller did not give; use the agentctl command")  # fmt: skip
        return None
    try:
        return _At(history, history.commit(str(root), revision), revision, path, version)
    except LookupError as exc:
        error(agent.location(path), field_name(path), str(exc))
        return None


def _resolve(
    fields: dict[str, tuple[Any, FieldPath]],
    agent: DesiredAgent,
    root: Path,
    error: Error,
    at: _At | None,
) -> ResolvedSource | None:
    code_raw, code_path = fields["code"]
    config_raw, config_path = fields.get("config", (None, ()))
    reqs_raw, req_path = fields["pip_requirements"]
    read: dict[str, tuple[str, bytes]] = {}  # kind -> (ref, bytes)
    ok = True
    for kind, raw, path in (("code", code_raw, code_path), ("config", config_raw, config_path)):
        if raw is None:
            continue
        found = _read(raw, agent, root, path, error, at)
        if found is None:
            ok = False
        else:
            read[kind] = found

    requirements: list[str] = []
    normalized: list[str] = []
    requirements_ref = None
    if isinstance(reqs_raw, str):
        found = _read(reqs_raw, agent, root, req_path, error, at)
        if found is None:
            return None
        requirements_ref, data = found
        display = f"{requirements_ref}@{at.revision}" if at else shown_path(root / requirements_ref)
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            error(Location(display, 1, 1), "", f"cannot read: {exc}")
            return None
        for lineno, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            if text.startswith("-"):
                error(Location(display, lineno, 1), "",
                      f"pip options are not supported here: {text!r}")  # fmt: skip
                ok = False
                continue
            try:
                normalized.append(normalize_requirement(text))
                requirements.append(text)
            except ValueError as exc:
                error(Location(display, lineno, 1), "", str(exc))
                ok = False
    else:
        for i, text in enumerate(reqs_raw):
            try:
                normalized.append(normalize_requirement(text))
                requirements.append(text)
            except ValueError as exc:
                error(agent.location((*req_path, i)), field_name((*req_path, i)), str(exc))
                ok = False
    if not requirements and ok:
        error(agent.location(req_path), field_name(req_path),
              "at least one pinned requirement is needed (e.g. mlflow==3.17.2)")  # fmt: skip
        ok = False
    if "config" in read and agent.manifest.spec.prompts:
        ok = _bindable(*read["config"], root, error, at) and ok
    if not ok or "code" not in read:
        return None
    code_ref, code_bytes = read["code"]
    config_ref, config_bytes = read.get("config", (None, None))
    return ResolvedSource(
        code_path=str(root / code_ref),
        config_path=str(root / config_ref) if config_ref is not None else None,
        code_ref=code_ref,
        config_ref=config_ref,
        pip_requirements=tuple(requirements),
        digest=source_digest(code_bytes, config_bytes, normalized),
        requirements_ref=requirements_ref,
        commit=at.commit if at is not None else None,
        revision=at.revision if at is not None else None,
    )


def _bindable(ref: str, data: bytes, root: Path, error: Error, at: _At | None) -> bool:
    """Whether the model config of an agent that binds prompts can take them, read as logging
    reads it (``yaml.safe_load``): one document, a mapping (or empty) whose ``prompts``, if
    set, is a mapping too; the pins are merged there."""
    display = f"{ref}@{at.revision}" if at else shown_path(root / ref)
    why = "the agent binds prompts (spec.prompts), which are pinned into its model config"
    try:
        text = data.decode("utf-8")
        docs = list(yaml.safe_load_all(text))
    except UnicodeDecodeError:
        return True  # logging reports it, as for any agent
    except (yaml.scanner.ScannerError, yaml.parser.ParserError):
        return True  # YAML syntax: the loader reports a .yaml file's, logging any other's
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (
            Location(display, mark.line + 1, mark.column + 1) if mark else Location(display, 1, 1)
        )
        error(where, "", f"{why}, which cannot be read: {exc.problem or exc}")
        return False
    if len(docs) > 1:
        error(Location(display, 1, 1), "",
              f"{why}, which must be one YAML document (it holds {len(docs)})")  # fmt: skip
        return False
    config = docs[0] if docs else None
    if config is None:
        return True
    if not isinstance(config, dict):
        error(Location(display, 1, 1), "",
              f"{why} under '{PROMPTS_CONFIG_KEY}': the config must be a mapping, not "
              f"{_a(config)}")  # fmt: skip
        return False
    own = config.get(PROMPTS_CONFIG_KEY) or {}
    if not isinstance(own, dict):
        error(_key_location(text, display), PROMPTS_CONFIG_KEY,
              f"{why}: '{PROMPTS_CONFIG_KEY}' must be a mapping, not {_a(own)}")  # fmt: skip
        return False
    return True


def _a(value: object) -> str:
    """What a YAML value is, in words: "a list", "a number"."""
    if isinstance(value, bool):
        return "true or false"
    kinds = {list: "a list", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _key_location(text: str, display: str) -> Location:
    """Where the config's own ``prompts`` value is written (its first line when merged in)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for key, value in node.value if isinstance(node, yaml.MappingNode) else ():
        if isinstance(key, yaml.ScalarNode) and key.value == PROMPTS_CONFIG_KEY:
            return Location(display, value.start_mark.line + 1, value.start_mark.column + 1)
    return Location(display, 1, 1)


def _read(
    raw: str, agent: DesiredAgent, root: Path, path: FieldPath, error: Error, at: _At | None
) -> tuple[str, bytes] | None:
    """The file ``raw`` names (relative to the manifest): its path relative to the root, and its
    bytes, from the working tree or at the revision."""
    loc, where = agent.location(path), field_name(path)
    if os.path.isabs(raw):
        error(loc, where, f"'{raw}' is absolute; give a path relative to the manifest")
        return None
    if at is not None:
        manifest_dir = posixpath.dirname(agent.manifest_ref)
        ref = posixpath.normpath(posixpath.join(manifest_dir, Path(raw).as_posix()))
        if ref == ".." or ref.startswith("../"):
            error(loc, where, f"'{raw}' is outside the repository root {root}")
            return None
        try:
            return ref, at.history.read(str(root), at.commit, ref, MAX_SOURCE_BYTES)
        except LookupError as exc:
            if path[: len(at.path) - 1] != at.path[:-1]:
                # Taken from spec.source: the entry's revision is what does not hold it.
                error(agent.location(at.path), field_name(at.path),
                      f"version '{at.version}' takes {where} at revision {at.revision}: {exc}")  # fmt: skip
            else:
                error(loc, where, f"{exc} (revision {at.revision})")
            return None
    target = (Path(agent.file).resolve().parent / raw).resolve()
    if not target.is_relative_to(root):
        error(loc, where, f"'{raw}' resolves to {target}, outside the repository root {root}")
        return None
    if not target.is_file():
        error(loc, where, f"'{raw}' ({target}) is not a file")
        return None
    try:
        return target.relative_to(root).as_posix(), read_regular(target, MAX_SOURCE_BYTES)
    except Unreadable as exc:
        if path[-1] == "pipRequirements":  # the requirements file itself is at fault
            error(Location(shown_path(target), 1, 1), "", exc.reason)
        else:
            error(loc, where, exc.reason)
        return None
