"""What a Kubernetes namespace holds of agentctl's objects, as read back. Pure data: no I/O.

The Kubernetes serving adapter only observes and writes: it reads each object it manages and
records here what that object says of itself (its spec digest, model, replicas, images, the
split a route carries). Whether that is what agentctl would write now is decided in the core
(:mod:`controller.core.plan.kube_outdated`), from the desired settings, never in the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ClusterState", "LiveAgent", "LiveObject", "LiveRoute"]


@dataclass(frozen=True, slots=True)
class LiveObject:
    """One object agentctl wrote, as the API server has it."""

    kind: str  # Deployment, Service, HTTPRoute
    name: str
    model: str = ""  # its agentctl.io/model annotation
    digest: str | None = None  # its agentctl.io/spec-digest annotation (None: it has none)
    replicas: int | None = None  # a Deployment's spec.replicas
    images: tuple[str | None, ...] = ()  # a Deployment's containers' images, in order


@dataclass(frozen=True, slots=True)
class LiveRoute:
    """An agent's route object, and what it carries: its HTTPRoute (router gateway) or its own
    Service (router service).

    ``weights`` is None when the split cannot be read (a Service without its weights
    annotation). An HTTPRoute also carries header routes (``headers``: (header, value, version)
    in rule order) and conversation affinity (``affinity``: (header, cookie); None: off), which
    a Service cannot. ``odd`` says why an HTTPRoute is not as agentctl writes routes (it names a
    Service agentctl does not serve, its rules are of another shape, its sessionPersistence is
    not what its affinity asks for); empty: it is."""

    object: LiveObject
    weights: Mapping[int, int] | None = field(default_factory=dict)
    shadow: tuple[int, int] | None = None
    odd: str = ""
    headers: tuple[tuple[str, str, int], ...] = ()
    affinity: tuple[str | None, str | None] | None = None

    @property
    def known(self) -> bool:
        """Whether the route is as agentctl writes routes (nothing ``odd``)."""
        return not self.odd


@dataclass(frozen=True, slots=True)
class LiveAgent:
    """Everything of one agent in the namespace: per version its Deployment and Service, and its
    route objects (both while the agent moves from one router to the other)."""

    deployments: Mapping[int, LiveObject] = field(default_factory=dict)
    services: Mapping[int, LiveObject] = field(default_factory=dict)
    http_route: LiveRoute | None = None
    agent_service: LiveRoute | None = None


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The namespace agentctl serves in, whether the cluster serves the Gateway API, and every
    agent's live objects. ``session_persistence`` says whether the cluster's HTTPRoute CRD has
    ``sessionPersistence`` in its rules (Gateway API's experimental channel); None: not read,
    since no HTTPRoute asks for affinity."""

    namespace: str
    gateway_api: bool
    agents: Mapping[str, LiveAgent] = field(default_factory=dict)
    session_persistence: bool | None = None
