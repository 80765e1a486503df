"""What a plan would write to a cluster, object by object, from server-side dry runs. Pure data.

A serving target that can dry-run its writes (Kubernetes) turns a plan's serving changes into
:class:`ObjectPreview` values; :mod:`controller.core.render.formats` shows each as a diff of the live object
against what the API server says it would become. Nothing in here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ObjectPreview", "display"]

#: Fields the API server owns: left out of a diff so that it shows only what agentctl changes.
_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


@dataclass(frozen=True, slots=True)
class ObjectPreview:
    """One object a plan would write. ``before`` is the live object (None: it does not exist);
    ``after`` what the dry run returned (None: deleted, or no dry run: ``note`` says why)."""

    agent: str
    kind: str
    name: str
    namespace: str
    action: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    note: str = ""

    @property
    def address(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "action": self.action,
            "before": display(self.before),
            "after": display(self.after),
            "note": self.note,
        }


def display(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The object without its status and the metadata the API server keeps for itself."""
    if obj is None:
        return None
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    out["metadata"] = meta
    return out
