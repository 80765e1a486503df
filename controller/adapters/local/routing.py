"""Which version answers a request, and which gets a shadow copy. Pure data: no I/O.

No randomness of its own either: the caller passes a uniform number in [0, 1), so tests can
walk the whole range. A version that is not ready is never chosen; the weights of the ready ones
are renormalised, and a version at 0 % never answers (it is only kept warm).

Two things come before the weights:

- **Header routes** (:class:`HeaderRoute`, Argo Rollouts' ``setHeaderRoute``): a request whose
  header has the given value goes to the route's version, whatever its weight (a 0 % canary
  included), as long as that version is ready; the first route that matches wins.
- **Affinity**: a request that carries a conversation id (a ``key``) goes where its
  conversation went, with no state kept: weighted rendezvous hashing (Schindelhauer and
  Schomaker; Thaler and Ravishankar's HRW) gives each (key, version) a score ``weight /
  -ln(h)`` with ``h`` a hash of both in (0, 1), and the key goes to the best score. The share of
  keys per version follows the weights; when weights change, a key moves only from a version
  that lost weight to one that gained it, and when a version stops taking traffic only its own
  keys move. A router restart changes nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Container, Mapping
from dataclasses import dataclass

__all__ = ["Affinity", "HeaderRoute", "Route", "conversation_draw"]


@dataclass(frozen=True, slots=True)
class HeaderRoute:
    """Requests whose ``header`` (compared case-insensitively) is exactly ``value`` go to
    ``version``."""

    header: str
    value: str
    version: int

    def to_dict(self) -> dict[str, object]:
        return {"header": self.header, "value": self.value, "version": self.version}


@dataclass(frozen=True, slots=True)
class Affinity:
    """Where a request's conversation id is read: the body's ``context.conversation_id`` (and
    the OpenAI ``conversation``) always; also ``header`` and ``cookie`` when set."""

    header: str | None = None
    cookie: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"header": self.header, "cookie": self.cookie}


def conversation_draw(key: str, version: int) -> float:
    """A uniform number in (0, 1) for a conversation id and a version: the same on every router."""
    digest = hashlib.blake2b(f"{version}\x00{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


@dataclass(frozen=True, slots=True)
class Route:
    """An agent's route: ``weights`` as (version, percent) pairs, an optional shadow, header
    routes and an optional conversation affinity."""

    weights: tuple[tuple[int, int], ...]
    shadow: tuple[int, int] | None = None
    headers: tuple[HeaderRoute, ...] = ()
    affinity: Affinity | None = None

    @classmethod
    def of(
        cls,
        weights: Mapping[int, int],
        shadow: tuple[int, int] | None = None,
        headers: tuple[HeaderRoute, ...] = (),
        affinity: Affinity | None = None,
    ) -> Route:
        return cls(tuple(sorted(weights.items())), shadow, headers, affinity)

    def choose(self, u: float, ready: Container[int], key: str | None = None) -> int | None:
        """The version for the request whose draw is ``u`` (or whose conversation is ``key``,
        when the route keeps conversations together); None if no weighted version is ready."""
        live = [(v, w) for v, w in self.weights if w > 0 and v in ready]
        if not live:
            return None
        if key is not None and self.affinity is not None:
            return max(live, key=lambda vw: vw[1] / -math.log(conversation_draw(key, vw[0])))[0]
        total = sum(w for _, w in live)
        x = u * total
        for version, weight in live:
            x -= weight
            if x < 0:
                return version
        return live[-1][0]

    def by_header(self, headers: Mapping[str, str], ready: Container[int]) -> int | None:
        """The version of the first header route the request matches, if that version is ready."""
        for route in self.headers:
            if headers.get(route.header) == route.value and route.version in ready:
                return route.version
        return None

    def mirror(self, u: float, ready: Container[int]) -> int | None:
        """The shadow version if this request (draw ``u``) is copied to it, else None."""
        if self.shadow is None:
            return None
        version, percent = self.shadow
        return version if u * 100 < percent and version in ready else None

    def versions(self) -> set[int]:
        names = {v for v, _ in self.weights}
        if self.shadow is not None:
            names.add(self.shadow[0])
        names.update(r.version for r in self.headers)
        return names
