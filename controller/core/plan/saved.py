"""A saved plan: the file ``agentctl plan --out`` writes and ``agentctl apply FILE`` applies.
Pure data: no I/O (the engine reads and writes the file).

Like Terraform's saved plans, the file carries what apply needs to apply exactly the plan that
was shown, and to refuse when that is no longer the plan it would make:

- ``format_version`` (of this file's layout; another is refused, never guessed at);
- ``plan``: the plan, changes with their typed payloads (:meth:`Plan.to_dict`);
- ``manifests``: where they were loaded from (path, root, ``allow_empty``), to load them again;
- ``target``: the serving target it was planned against (``registry``, ``local``,
  ``kubernetes`` and its namespace);
- ``fingerprints`` (:func:`controller.core.state.fingerprint.fingerprint`): of the desired state,
  and of the observed registry and serving target restricted to what the plan's agents depend
  on; any that differs on apply makes the plan stale;
- ``made``: how the plan was made (owner, ``--prune``, the agents ``--changed-since`` scoped it
  to, the clock its rollout decisions read) and where (the tracking URI without credentials, the
  Kubernetes API server): apply refuses another registry or cluster, and plans again from the
  same inputs, which the fingerprints prove unchanged, refusing a file whose changes are not the
  ones that gives (an edit with its checksum recomputed);
- ``checksum``: ``sha256:<hex>`` of the canonical JSON of everything else, so that a file edited
  after it was written is refused (a guard against accidents and truncation, not a signature).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.errors import InvalidPlanFile
from controller.core.plan.changes import Plan

__all__ = [
    "FILE_KIND",
    "SAVED_FORMAT",
    "TARGETS",
    "Made",
    "Manifests",
    "SavedPlan",
    "checksum",
    "from_json",
    "to_json",
]

FILE_KIND = "agentctl-saved-plan"
SAVED_FORMAT = "1"
TARGETS = ("registry", "local", "kubernetes")


@dataclass(frozen=True, slots=True)
class Manifests:
    """Where the plan's manifests were loaded from: the PATH given and the root (absolute)."""

    path: str
    root: str
    allow_empty: bool = False


@dataclass(frozen=True, slots=True)
class Made:
    """How and where the plan was made: what apply needs to plan it again, and to refuse another
    registry or cluster. ``scope`` (agent -> why) is None for a plan of every agent."""

    owner: str
    prune: bool
    now: float  # Unix seconds: the clock the rollouts' decisions read
    tracking_uri: str  # without user info
    cluster: str | None = None  # the Kubernetes API server
    scope: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """A plan and what it was made from. ``serving`` is None when the plan was made without a
    serving target (``--target registry``); ``namespace`` is the Kubernetes target's."""

    plan: Plan
    manifests: Manifests
    target: str
    desired: str  # fingerprint of the desired state
    registry: str  # fingerprint of the registry, restricted to the plan's models
    serving: str | None = None  # fingerprint of the serving target, restricted to its agents
    namespace: str | None = None
    made: Made = Made("", False, 0.0, "")

    def body(self) -> dict[str, Any]:
        """The file's content, without its checksum."""
        return {
            "kind": FILE_KIND,
            "format_version": SAVED_FORMAT,
            "manifests": {
                "path": self.manifests.path,
                "root": self.manifests.root,
                "allow_empty": self.manifests.allow_empty,
            },
            "target": {"kind": self.target, "namespace": self.namespace},
            "fingerprints": {
                "desired": self.desired,
                "registry": self.registry,
                "serving": self.serving,
            },
            "made": {
                "owner": self.made.owner,
                "prune": self.made.prune,
                "now": self.made.now,
                "tracking_uri": self.made.tracking_uri,
                "cluster": self.made.cluster,
                "scope": dict(self.made.scope) if self.made.scope is not None else None,
            },
            "plan": self.plan.to_dict(),
        }


def checksum(body: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of ``body``'s canonical JSON (keys sorted, no spaces, ASCII)."""
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def to_json(saved: SavedPlan) -> str:
    """The file's text: the body and its checksum, indented for a reader."""
    body = saved.body()
    return json.dumps({**body, "checksum": checksum(body)}, indent=2) + "\n"


def from_json(text: str) -> SavedPlan:
    """Read a saved plan back; raise :class:`InvalidPlanFile` saying what is wrong with it."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidPlanFile(f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != FILE_KIND:
        raise InvalidPlanFile(
            "is not a saved plan (`agentctl plan --out FILE` writes one; a plan printed with "
            "--format json cannot be applied)"
        )
    version = data.get("format_version")
    if version != SAVED_FORMAT:
        raise InvalidPlanFile(
            f"is a saved plan of format version {version!r}; this agentctl reads format "
            f"version {SAVED_FORMAT!r}: plan again with this agentctl"
        )
    body = {k: v for k, v in data.items() if k != "checksum"}
    written = data.get("checksum")
    if not isinstance(written, str):
        raise InvalidPlanFile("is malformed: it has no checksum")
    if written != checksum(body):
        raise InvalidPlanFile(
            "was changed after it was written (its checksum does not match its content): plan "
            "again rather than edit a saved plan"
        )
    try:
        saved = _saved(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InvalidPlanFile(f"is malformed: {what}") from None
    if saved.plan.to_dict() != body["plan"]:
        raise InvalidPlanFile("is malformed: its plan does not read back as it was written")
    return saved


def _saved(body: Mapping[str, Any]) -> SavedPlan:
    manifests, target, prints = body["manifests"], body["target"], body["fingerprints"]
    made = body["made"]
    scope = made["scope"]
    if scope is not None and not (
        isinstance(scope, dict) and all(isinstance(v, str) for v in scope.values())
    ):
        raise ValueError(f"scope {scope!r} is not a mapping of agent to reason")
    if not isinstance(made["now"], int | float) or isinstance(made["now"], bool):
        raise ValueError(f"now {made['now']!r} is not a time")
    if target["kind"] not in TARGETS:
        raise ValueError(f"target {target['kind']!r} is none of {', '.join(TARGETS)}")
    return SavedPlan(
        plan=Plan.from_dict(body["plan"]),
        manifests=Manifests(
            path=_text(manifests["path"]),
            root=_text(manifests["root"]),
            allow_empty=_flag(manifests["allow_empty"]),
        ),
        target=target["kind"],
        namespace=_optional(target["namespace"]),
        desired=_text(prints["desired"]),
        registry=_text(prints["registry"]),
        serving=_optional(prints["serving"]),
        made=Made(
            owner=_text(made["owner"]),
            prune=_flag(made["prune"]),
            now=float(made["now"]),
            tracking_uri=_text(made["tracking_uri"]),
            cluster=_optional(made["cluster"]),
            scope=dict(scope) if scope is not None else None,
        ),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value
