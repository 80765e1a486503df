"""YAML read with positions: each document built as plain data (safely: no tags beyond YAML's
own, aliases expanded once and counted, so a "billion laughs" is refused) together with where each
path of it starts, so that a problem can name its file, line and column. Used for manifests and
for evaluation datasets written in YAML. No file I/O: the caller reads the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from controller.core.diagnostics import Location
from controller.core.manifest.checks import FieldPath, field_name

__all__ = ["MAX_NODES", "Builder", "Document", "Error", "Loader", "Refused", "documents", "mark"]

#: Reports one problem: where, the field's name ("" if none), the message.
Error = Callable[[Location, str, str], None]

#: At most this many nodes per document, counting each use of an alias in full (so a small file
#: of nested aliases, a "billion laughs", is refused instead of expanded).
MAX_NODES = 100_000


def mark(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its data, where each path starts, where the document starts."""

    data: Any
    locations: dict[FieldPath, Location]
    start: Location


def documents(text: str, file: str, error: Error, max_nodes: int = MAX_NODES) -> Iterator[Document]:
    """The documents of ``text`` (read from ``file``, as it is named in a diagnostic); a problem
    is reported through ``error`` and ends the reading (a document refused is skipped)."""
    loader = Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            builder = Builder(loader, file, error, max_nodes)
            try:
                data = builder.build(node, ())
            except Refused as exc:
                error(mark(file, exc.node.start_mark), "", exc.message)
                continue
            yield Document(data, builder.locations, mark(file, node.start_mark))
    except yaml.MarkedYAMLError as exc:
        loc = mark(file, exc.problem_mark or exc.context_mark)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        at = exc.problem_mark
        if at is not None and text[at.index : at.index + 1] == "\t":
            problem += " (a tab: YAML indents with spaces only)"
        error(loc, "", f"invalid YAML: {problem or exc}")
    except yaml.YAMLError as exc:
        error(Location(file, 1, 1), "", f"invalid YAML: {exc}")
    except RecursionError:
        error(Location(file, 1, 1), "", "invalid YAML: nested too deeply")
    finally:
        loader.dispose()


#: libyaml's parser where PyYAML was built with it (ten times faster; the same marks and nodes).
Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MERGE_TAG = "tag:yaml.org,2002:merge"


class Refused(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        self.node = node
        self.message = message
        super().__init__(message)


class Builder:
    """Build Python data from one YAML document, recording where each path starts.

    Each node is built once (an alias reuses the value), recursive aliases are refused, and the
    expanded size is counted against ``max_nodes``. Merge keys (``<<``) follow YAML: explicit keys
    override merged ones, and only two explicit keys that are equal are a duplicate.
    """

    def __init__(
        self, loader: yaml.SafeLoader, file: str, error: Error, max_nodes: int = MAX_NODES
    ) -> None:
        self.loader = loader
        self.file = file
        self.error = error
        self.max_nodes = max_nodes
        self.locations: dict[FieldPath, Location] = {}
        self._built: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, expanded size)
        self._active: set[int] = set()
        self._count = 0

    def _grow(self, node: yaml.Node, n: int) -> None:
        self._count += n
        if self._count > self.max_nodes:
            raise Refused(
                node, f"document has more than {self.max_nodes} nodes once aliases expand"
            )

    def build(self, node: yaml.Node, path: FieldPath) -> Any:
        self.locations.setdefault(path, mark(self.file, node.start_mark))
        key = id(node)
        if key in self._active:
            raise Refused(node, "invalid YAML: an alias refers to a node that contains it")
        if key in self._built:
            value, size = self._built[key]
            self._grow(node, size)
            return value
        self._active.add(key)
        start = self._count
        self._grow(node, 1)
        if isinstance(node, yaml.MappingNode):
            value = self._mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            value = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        else:
            value = self._scalar(node)
        self._active.discard(key)
        self._built[key] = (value, self._count - start)
        return value

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:
            raise Refused(node, f"invalid YAML value: {exc}") from None

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[Any, Any]:
        explicit = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
        self.loader.flatten_mapping(node)
        merged = len(node.value) - explicit  # flatten_mapping puts merged pairs first
        result: dict[Any, Any] = {}
        first_explicit: dict[Any, Location] = {}
        for i, (key_node, value_node) in enumerate(node.value):
            key = self._scalar(key_node)
            where = mark(self.file, key_node.start_mark)
            if not isinstance(key, str | int | float | bool) and key is not None:
                self.error(where, field_name(path), "keys must be scalars")
                continue
            child: FieldPath = (*path, str(key))
            if i >= merged:
                if key in first_explicit:
                    line = first_explicit[key].line
                    self.error(
                        where, field_name(child), f"duplicate key '{key}' (first at line {line})"
                    )
                    continue
                first_explicit[key] = where
            self.locations[child] = where
            result[key] = self.build(value_node, child)
        return result
