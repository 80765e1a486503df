"""An in-memory serving target for executor and loop tests: records every call, and refuses
what the local daemon refuses (stopping a version in the route, routing to a version that is not
served, a mirror without a route)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.core.errors import NotReady
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot


class FakeServing:
    def __init__(self) -> None:
        self.servers: dict[str, dict[int, ServedVersion]] = {}
        self.weights: dict[str, dict[int, int]] = {}
        self.mirrors: dict[str, tuple[int, int]] = {}
        self.routing: dict[str, tuple[tuple[tuple[str, str, int], ...], Any]] = {}
        self.models: dict[str, str] = {}
        self.calls: list[tuple[object, ...]] = []
        self.starts = 0
        #: (agent, version) pairs that start but do not become ready (a Deployment rolling out).
        self.slow: set[tuple[str, int]] = set()
        self.faults: dict[str, list[Exception]] = {}
        #: (agent, weights) of every verify_weight call, apart from ``calls`` (which are writes).
        self.verified: list[tuple[str, dict[int, int]]] = []
        #: agent -> how many more times verify_weight says the route has not caught up.
        self.lagging: dict[str, int] = {}

    def fail(self, op: str, *errors: Exception) -> None:
        """The next calls of ``op`` raise these, one each."""
        self.faults.setdefault(op, []).extend(errors)

    def observe(self) -> ServingSnapshot:
        agents = {}
        for agent in sorted(set(self.servers) | set(self.weights)):
            agents[agent] = AgentServing(
                agent,
                self.models.get(agent, agent),
                dict(self.servers.get(agent, {})),
                dict(self.weights.get(agent, {})),
                self.mirrors.get(agent),
                headers=self.routing.get(agent, ((), None))[0],
                affinity=self.routing.get(agent, ((), None))[1],
            )
        return ServingSnapshot(agents, "http://127.0.0.1:1")

    def start_version(self, agent: str, model: str, version: int) -> str:
        self.calls.append(("start", agent, version))
        if self.faults.get("start_version"):
            raise self.faults["start_version"].pop(0)
        have = self.servers.setdefault(agent, {}).get(version)
        if have is None or have.model != model or not have.ready:
            self.starts += 1
        ready = (agent, version) not in self.slow
        self.servers[agent][version] = ServedVersion(version, model, ready=ready)
        self.models[agent] = model
        if not ready:
            raise NotReady(agent, version, "0 of 1 replicas available")
        return f"http://127.0.0.1:{1000 + version}"

    def stop_version(self, agent: str, version: int) -> None:
        self.calls.append(("stop", agent, version))
        if version in self.weights.get(agent, {}) or self.mirrors.get(agent, (0, 0))[0] == version:
            raise AssertionError(f"stopped version {version} while it is in the route")
        self.servers.get(agent, {}).pop(version, None)
        if agent in self.servers and not self.servers[agent]:
            del self.servers[agent]

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        self.calls.append(("weights", agent, dict(weights)))
        missing = set(weights) - set(self.servers.get(agent, {}))
        if missing:
            raise AssertionError(f"traffic to versions that are not served: {missing}")
        old = self.weights.get(agent, {})
        for v, w in weights.items():
            if w > old.get(v, 0) and not self.servers[agent][v].ready:
                raise AssertionError(f"traffic moved to version {v}, which is not ready")
        self.weights[agent] = dict(weights)
        self.models[agent] = model

    def verify_weight(self, agent: str, weights: Mapping[int, int]) -> bool:
        self.verified.append((agent, dict(weights)))
        if self.faults.get("verify_weight"):
            raise self.faults["verify_weight"].pop(0)
        if self.lagging.get(agent, 0) > 0:  # a router that has not caught up yet
            self.lagging[agent] -= 1
            return False
        return self.weights.get(agent) == dict(weights)

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        self.calls.append(("mirror", agent, shadow))
        if agent not in self.weights and shadow is not None:
            raise AssertionError("a mirror without a route")
        if shadow is not None and shadow[0] not in self.servers.get(agent, {}):
            raise AssertionError(f"mirror to version {shadow[0]}, which is not served")
        if shadow is None:
            self.mirrors.pop(agent, None)
        else:
            self.mirrors[agent] = shadow

    def set_routing(
        self,
        agent: str,
        headers: Sequence[tuple[str, str, int]],
        affinity: tuple[str | None, str | None] | None,
    ) -> None:
        self.calls.append(("routing", agent, tuple(headers), affinity))
        if agent not in self.weights and (headers or affinity is not None):
            raise AssertionError("header routes without a route")
        for _, _, version in headers:
            if version not in self.servers.get(agent, {}):
                raise AssertionError(f"header route to version {version}, which is not served")
        if not headers and affinity is None:
            self.routing.pop(agent, None)
        else:
            self.routing[agent] = (tuple(headers), affinity)

    def remove_route(self, agent: str) -> None:
        self.calls.append(("unroute", agent))
        self.weights.pop(agent, None)
        self.mirrors.pop(agent, None)
        self.routing.pop(agent, None)
