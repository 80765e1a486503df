"""Plan one agent's serving: desired servers, weights and shadow vs. what the target reports.

Pure data: no I/O. The planner resolves the manifest's targets (aliases, ``current``) to version
numbers first, or to :class:`~controller.core.plan.changes.Pending` for a version this apply creates; this
module compares the result with an :class:`~controller.core.state.observed.AgentServing` and emits changes:

- ``served_version`` create / update (not ready: wait for it) / replace (other model) / delete;
- ``traffic`` create / update / delete: the whole route, version -> percent;
- ``shadow`` create / update / delete: the version that receives copies, and its percent;
- ``routes`` create / update / delete: header routes to named versions and conversation
  affinity, what the router looks at before the weights.

Every version named in traffic is served, a 0 % one too (kept warm, so that moving traffic back is
instant); the shadow version and the versions of header routes are served. Servers start before traffic moves to them and stop only
after traffic has left them (the phase order in :mod:`controller.core.plan.planner`), so that a change of
split never sends a request to a server that is not there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.core.plan.changes import (
    Action,
    Kind,
    Payload,
    Pending,
    RoutingState,
    ServerState,
    ShadowState,
    Target,
    TrafficSplit,
)
from controller.core.state.observed import AgentServing

__all__ = ["DesiredServing", "Target", "plan_serving", "remove_serving"]

_ChangeFn = Callable[[Kind, str, Action, Payload | None, Payload | None, str], None]


@dataclass(frozen=True, slots=True)
class DesiredServing:
    """An agent's serving with every target resolved. Weights of one version are summed."""

    weights: Mapping[Target, int]
    shadow: tuple[Target, int] | None = None
    #: A pending version's digest -> the manifest's name for it (``current``, ``stable``...): the
    #: address of its ``served_version`` change, as its ``version`` change is named.
    names: Mapping[str, str] = field(default_factory=dict)
    routing: RoutingState = field(default_factory=RoutingState)

    @property
    def versions(self) -> list[Target]:
        wanted = list(self.weights)
        if self.shadow is not None and self.shadow[0] not in self.weights:
            wanted.append(self.shadow[0])
        for _, _, target in self.routing.headers:
            if target not in wanted:
                wanted.append(target)
        return wanted


def _name(target: Target, names: Mapping[str, str]) -> str:
    if isinstance(target, Pending):
        return names.get(target.digest, "current")
    return str(target)


def _split(weights: Mapping[Target, int]) -> TrafficSplit:
    def order(t: Target) -> tuple[int, int]:
        return (1, 0) if isinstance(t, Pending) else (0, t)

    return TrafficSplit(tuple((t, weights[t]) for t in sorted(weights, key=order)))


def _observed_split(weights: Mapping[int, int]) -> TrafficSplit:
    return TrafficSplit(tuple((v, weights[v]) for v in sorted(weights)))


def plan_serving(
    agent: str,
    model: str,
    desired: DesiredServing,
    observed: AgentServing | None,
    change: _ChangeFn,
) -> int:
    """Emit the changes that make ``observed`` what ``desired`` says; return how many objects
    were found as desired."""
    unchanged = 0
    have = observed.versions if observed is not None else {}
    wanted = desired.versions
    for target in wanted:
        after = ServerState(target, model)
        server = have.get(target) if isinstance(target, int) else None
        if server is None:
            why = (
                "the version this apply registers is not served"
                if isinstance(target, Pending)
                else f"version {target} is not served"
            )
            change(
                Kind.SERVED_VERSION, _name(target, desired.names), Action.CREATE, None, after, why
            )
        elif server.model != model:
            before = ServerState(server.version, server.model)
            change(
                Kind.SERVED_VERSION,
                _name(target, desired.names),
                Action.REPLACE,
                before,
                after,
                f"version {target} is served from model '{server.model}'",
            )
        elif not server.ready:
            before = ServerState(server.version, server.model, ready=False)
            why = server.status or f"restarted {server.restarts} times"
            change(
                Kind.SERVED_VERSION,
                _name(target, desired.names),
                Action.UPDATE,
                before,
                ServerState(target, model, ready=True),
                f"waiting for {agent} v{target} to become available ({why})",
            )
        elif server.outdated:
            before = ServerState(server.version, server.model)
            change(
                Kind.SERVED_VERSION,
                _name(target, desired.names),
                Action.UPDATE,
                before,
                after,
                f"version {target}: {server.outdated}",
            )
        else:
            unchanged += 1

    after_weights = _split(desired.weights)
    if observed is None or not observed.weights:
        change(Kind.TRAFFIC, "", Action.CREATE, None, after_weights, "no route serves it")
    else:
        before_weights = _observed_split(observed.weights)
        if before_weights != after_weights or observed.route_outdated:
            change(
                Kind.TRAFFIC,
                "",
                Action.UPDATE,
                before_weights,
                after_weights,
                "the traffic split differs"
                if before_weights != after_weights
                else f"the route: {observed.route_outdated}",
            )
        else:
            unchanged += 1

    have_shadow = observed.shadow if observed is not None else None
    if desired.shadow is None:
        if have_shadow is not None:
            change(
                Kind.SHADOW,
                "",
                Action.DELETE,
                ShadowState(*have_shadow),
                None,
                "the manifest declares no shadow",
            )
    else:
        target, percent = desired.shadow
        after_shadow = ShadowState(target, percent)
        if have_shadow is None:
            change(Kind.SHADOW, "", Action.CREATE, None, after_shadow, "no shadow is mirrored")
        elif (have_shadow[0], have_shadow[1]) != (target, percent):
            change(
                Kind.SHADOW,
                "",
                Action.UPDATE,
                ShadowState(*have_shadow),
                after_shadow,
                "the shadow differs",
            )
        else:
            unchanged += 1

    have_routing = (
        RoutingState(observed.headers, observed.affinity)
        if observed is not None
        else RoutingState()
    )
    if have_routing != desired.routing:
        if desired.routing.empty:
            action, why = Action.DELETE, "the manifest declares no header routes nor affinity"
        elif have_routing.empty:
            action, why = Action.CREATE, "no header route nor affinity is set"
        else:
            action, why = Action.UPDATE, "the header routes or affinity differ"
        change(
            Kind.ROUTES,
            "",
            action,
            None if have_routing.empty else have_routing,
            None if desired.routing.empty else desired.routing,
            why,
        )
    elif not desired.routing.empty:
        unchanged += 1

    keep = {t for t in wanted if isinstance(t, int)}
    for number in sorted(set(have) - keep):
        change(
            Kind.SERVED_VERSION,
            str(number),
            Action.DELETE,
            ServerState(number, have[number].model),
            None,
            f"no traffic, shadow or header route names version {number} any more",
        )
    return unchanged


def remove_serving(observed: AgentServing, why: str, change: _ChangeFn) -> None:
    """Stop serving an agent: its route (the shadow goes with it), then every server."""
    if observed.weights or observed.route_outdated:
        change(
            Kind.TRAFFIC,
            "",
            Action.DELETE,
            _observed_split(observed.weights),
            None,
            why,
        )
    else:
        if observed.shadow is not None:
            change(Kind.SHADOW, "", Action.DELETE, ShadowState(*observed.shadow), None, why)
        if observed.headers or observed.affinity is not None:
            before = RoutingState(observed.headers, observed.affinity)
            change(Kind.ROUTES, "", Action.DELETE, before, None, why)
    for number in sorted(observed.versions):
        change(
            Kind.SERVED_VERSION,
            str(number),
            Action.DELETE,
            ServerState(number, observed.versions[number].model),
            None,
            why,
        )
