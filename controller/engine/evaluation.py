"""An agent's ``spec.evaluation`` resolved from its files: the dataset's rows (a JSONL or YAML
file in the repository, or the name of an MLflow evaluation dataset), each code scorer's file
checked (inside the repository, Python that compiles, defining the function; never imported
nor run: validating runs no repository code) and digested, and one digest over all of it. Does file
I/O.

A problem of the dataset names the dataset file and the line of the row (with the field
``spec.evaluation.dataset``); a problem of a scorer's file, the file and line, or the manifest's
line, with the scorer's field.

Dataset rows: ``inputs`` (a mapping, required: the agent's arguments), ``expectations`` (a
mapping: what the scorers compare with) and ``tags`` (a mapping of strings), nothing else. A
JSONL file holds one JSON object a line (blank lines are skipped); a YAML file holds one list of
rows.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.core.diagnostics import Location
from controller.core.evaluation.spec import (
    EvaluationSpec,
    ScorerSpec,
    ThresholdSpec,
    evaluation_digest,
)
from controller.core.manifest.desired import DesiredAgent
from controller.core.manifest.evaluation import EVALUATION, not_json, scorer_name
from controller.core.manifest.problem import FieldPath, field_name
from controller.core.manifest.schema import ScorerRef
from controller.engine.files import MAX_SOURCE_BYTES, Unreadable, read_regular, shown_path
from controller.engine.yamlnodes import Error, documents

__all__ = ["MAX_DATASET_BYTES", "MAX_ROWS", "resolve_evaluation"]

#: The most rows a dataset file may hold: each is run on each version evaluated.
MAX_ROWS = 10_000
#: The most a dataset file may hold.
MAX_DATASET_BYTES = 10 * 1024 * 1024
#: The most problems reported of one dataset file (then how many more there are).
MAX_ROW_PROBLEMS = 10
_SUFFIXES = (".jsonl", ".yaml", ".yml")
_ROW_FIELDS = ("inputs", "expectations", "tags")
DATASET: FieldPath = (*EVALUATION, "dataset")


def resolve_evaluation(
    agent: DesiredAgent,
    root: Path,
    error: Error,
    as_written: Callable[[FieldPath], FieldPath | None] = lambda path: path,
) -> EvaluationSpec | None:
    """spec.evaluation resolved; None if it is not set or is at fault (each problem reported).

    ``as_written`` maps a path of the manifest as validated to the same place in the file, or
    to None when a repair touched it (see core.manifest.repair): such a part was reported
    already and is not resolved (nor is the whole)."""
    evaluation = agent.manifest.spec.evaluation
    if evaluation is None:
        return None
    ok = True
    rows: tuple[Mapping[str, Any], ...] = ()
    label = evaluation.dataset.label
    dataset_path = as_written(DATASET)
    if dataset_path is None:
        ok = False
    elif evaluation.dataset.file is not None:
        found = _dataset(evaluation.dataset.file, agent, root, dataset_path, error)
        if found is None:
            ok = False
        else:
            label, rows = found
    scorers: list[ScorerSpec] = []
    read: dict[Path, _Code | None] = {}  # a code scorer's file (None: at fault)
    for i, ref in enumerate(evaluation.scorers):
        path = as_written((*EVALUATION, "scorers", i))
        resolved = None if path is None else _scorer(ref, agent, root, path, error, read)
        if resolved is None:
            ok = False
        else:
            scorers.append(resolved)
    if not ok:
        return None
    thresholds = tuple(
        ThresholdSpec(t.scorer, t.min, t.max, t.max_drop) for t in evaluation.thresholds
    )
    name = evaluation.dataset.mlflow
    return EvaluationSpec(
        dataset=label,
        scorers=tuple(scorers),
        thresholds=thresholds,
        rows=rows,
        dataset_name=name,
        digest=evaluation_digest(rows, name, tuple(scorers), thresholds),
    )


def _file(
    raw: str, agent: DesiredAgent, root: Path, path: FieldPath, error: Error, what: str
) -> Path | None:
    """The file ``raw`` names (relative to the manifest), if it is one inside the root."""
    loc, where = agent.location(path), field_name(path)
    if os.path.isabs(raw):
        error(loc, where, f"'{raw}' is absolute; give a path relative to the manifest")
        return None
    target = (Path(agent.file).resolve().parent / raw).resolve()
    if not target.is_relative_to(root):
        error(loc, where, f"'{raw}' resolves to {target}, outside the repository root {root}")
        return None
    if not target.is_file():
        error(loc, where, f"{what} '{raw}' ({shown_path(target)}) is not a file")
        return None
    return target


def _text(target: Path, limit: int, loc: Location, where: str, error: Error) -> str | None:
    try:
        return read_regular(target, limit).decode("utf-8")
    except Unreadable as exc:
        error(loc, where, f"{shown_path(target)}: {exc.reason}")
    except UnicodeDecodeError as exc:
        error(Location(shown_path(target), 1, 1), where, f"cannot read: {exc}")
    return None


def _dataset(
    raw: str, agent: DesiredAgent, root: Path, path: FieldPath, error: Error
) -> tuple[str, tuple[Mapping[str, Any], ...]] | None:
    """The dataset file's name (relative to the root) and its rows; None if at fault."""
    written: FieldPath = (*path, "file") if (*path, "file") in agent.locations else path
    loc, where = agent.location(written), field_name(written)
    if not raw.endswith(_SUFFIXES):
        error(loc, where, f"'{raw}': a dataset is a .jsonl or .yaml/.yml file")
        return None
    target = _file(raw, agent, root, written, error, "dataset")
    if target is None:
        return None
    text = _text(target, MAX_DATASET_BYTES, loc, where, error)
    if text is None:
        return None
    rows = _Rows(shown_path(target), where, error)
    if target.suffix == ".jsonl":
        rows.read_jsonl(text)
    else:
        rows.read_yaml(text)
    if rows.refused == 0 and not rows.rows:
        error(Location(rows.file, 1, 1), where, "no rows: the dataset is empty")
        return None
    if rows.more is not None:
        more = rows.refused - MAX_ROW_PROBLEMS
        error(rows.more, where, f"and {more} more problems in this dataset, from this line on")
    if rows.refused:
        return None
    return target.relative_to(root).as_posix(), tuple(rows.rows)


@dataclass
class _Rows:
    """The rows of one dataset file as they are read, and its problems."""

    file: str  # as a diagnostic names it
    where: str  # the manifest field: spec.evaluation.dataset
    error: Error
    rows: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0  # problems found

    more: Location | None = None  # the first problem not reported

    def problem(self, loc: Location, message: str) -> None:
        self.refused += 1
        if self.refused <= MAX_ROW_PROBLEMS:
            self.error(loc, self.where, message)
        elif self.more is None:
            self.more = loc

    def full(self, loc: Location) -> bool:
        if len(self.rows) < MAX_ROWS:
            return False
        self.problem(
            loc,
            f"more than {MAX_ROWS} rows: each row runs on each version evaluated; keep a "
            "sample (or use an MLflow evaluation dataset)",
        )
        return True

    def read_jsonl(self, text: str) -> None:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            loc = Location(self.file, lineno, 1)
            if self.full(loc):
                return
            try:
                data = json.loads(line, object_pairs_hook=_no_twice, parse_constant=_no_constant)
            except (json.JSONDecodeError, _Twice) as exc:
                what = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                col = exc.colno if isinstance(exc, json.JSONDecodeError) else 1
                self.problem(Location(self.file, lineno, col), f"not a JSON object: {what}")
                continue
            self.row(data, _Line(loc))

    def read_yaml(self, text: str) -> None:
        def reported(loc: Location, where: str, message: str) -> None:
            self.problem(loc, f"{where}: {message}" if where else message)

        docs = list(documents(text, self.file, reported, max_nodes=50 * MAX_ROWS))
        if len(docs) > 1:
            self.problem(docs[1].start, "one YAML document: a list of rows")
            return
        if not docs or docs[0].data is None:
            return  # empty
        doc = docs[0]
        if not isinstance(doc.data, list):
            self.problem(
                doc.start,
                "a YAML dataset is a list of rows (`- inputs: {question: ...}`), not a "
                f"{_kind(doc.data)}",
            )
            return

        for i, data in enumerate(doc.data):

            def at(path: FieldPath, i: int = i) -> Location:
                for n in range(len(path), -1, -1):
                    loc = doc.locations.get((i, *path[:n]))
                    if loc is not None:
                        return loc
                return doc.start

            if self.full(at(())):
                return
            self.row(data, at)

    def row(self, data: Any, at: Callable[[FieldPath], Location]) -> None:
        if not isinstance(data, dict):
            self.problem(
                at(()),
                f'a row is a mapping with inputs (e.g. {{"inputs": {{"question": "..."}}}}), '
                f"not a {_kind(data)}",
            )
            return
        ok = True
        meant: set[str] = set()
        for key in data:
            if key not in _ROW_FIELDS:
                close = difflib.get_close_matches(str(key), _ROW_FIELDS, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                meant.update(close)
                self.problem(
                    at((key,)),
                    f"unknown field '{key}' in a row{hint} (allowed: {', '.join(_ROW_FIELDS)})",
                )
                ok = False
        if "inputs" not in data and "inputs" not in meant:
            self.problem(at(()), "a row without inputs (the agent's arguments): inputs is required")
            ok = False
        for key in _ROW_FIELDS:
            if key not in data:
                continue
            value = data[key]
            if not isinstance(value, dict):
                self.problem(at((key,)), f"{key} must be a mapping, not a {_kind(value)}")
                ok = False
            elif key == "inputs" and not value:
                self.problem(at((key,)), "inputs is empty: give the agent's arguments")
                ok = False
            elif key == "tags" and not all(isinstance(v, str) for v in value.values()):
                bad = next(k for k, v in value.items() if not isinstance(v, str))
                self.problem(at((key, bad)), f"tags.{bad}: a tag's value must be a string")
                ok = False
            else:
                found = not_json(value, (key,))
                if found is not None:
                    self.problem(at(found[0]), f"{field_name(found[0])}: {found[1]}")
                    ok = False
        if ok:
            self.rows.append(data)


@dataclass(frozen=True, slots=True)
class _Line:
    """Where each field of a JSONL row is: its line."""

    loc: Location

    def __call__(self, path: FieldPath) -> Location:
        return self.loc


class _Twice(ValueError):
    pass


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Twice(f"duplicate key '{key}'")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Twice(f"{name} is not a JSON number")


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


def _scorer(
    ref: ScorerRef,
    agent: DesiredAgent,
    root: Path,
    path: FieldPath,
    error: Error,
    read: dict[Path, _Code | None],
) -> ScorerSpec | None:
    name = scorer_name(ref)
    if ref.builtin is not None:
        return ScorerSpec(name=name, builtin=ref.builtin, args=dict(ref.args), model=ref.model)
    assert ref.code is not None
    code_path: FieldPath = (*path, "code")
    raw, _, function = ref.code.rpartition(":")
    target = _file(raw, agent, root, code_path, error, "scorer file")
    if target is None:
        return None
    if target not in read:
        read[target] = _code(target, agent.location(code_path), field_name(code_path), error)
    code = read[target]
    if code is None:
        return None
    if function not in code.functions:
        close = difflib.get_close_matches(function, code.functions, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        error(
            agent.location(code_path),
            field_name(code_path),
            f"{shown_path(target)} defines no top-level function '{function}'{hint} "
            f"(it defines: {', '.join(code.functions) or 'none'})",
        )
        return None
    ref_path = target.relative_to(root).as_posix()
    return ScorerSpec(name=name, code=ref_path, function=function, code_digest=code.digest)


@dataclass(frozen=True, slots=True)
class _Code:
    """A scorer file as read: the digest of its bytes, its top-level functions."""

    digest: str  # sha256:<hex>
    functions: list[str]


def _code(target: Path, loc: Location, where: str, error: Error) -> _Code | None:
    """The scorer file, if it is Python that compiles (compiled only: never imported nor run;
    parsing alone accepts what the compiler refuses, e.g. a ``from __future__`` import below
    another statement, or ``return`` outside a function)."""
    try:
        data = read_regular(target, MAX_SOURCE_BYTES)
    except Unreadable as exc:
        error(loc, where, f"{shown_path(target)}: {exc.reason}")
        return None
    try:
        with warnings.catch_warnings():  # an invalid escape's warning is not ours to print
            warnings.simplefilter("ignore")
            tree = ast.parse(data, filename=shown_path(target))
            compile(tree, shown_path(target), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
        line = getattr(exc, "lineno", None) or 1
        col = getattr(exc, "offset", None) or 1
        msg = getattr(exc, "msg", None) or str(exc)
        error(Location(shown_path(target), line, col), where, f"not valid Python: {msg}")
        return None
    functions = [
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    return _Code("sha256:" + hashlib.sha256(data).hexdigest(), functions)
