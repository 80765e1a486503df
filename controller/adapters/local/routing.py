"""Which version answers a request, and which gets a shadow copy. Pure data: no I/O.

No randomness of its own either: the caller passes a uniform number in [0, 1), so tests can
walk the whole range. A version that is not ready is never chosen; the weights of the ready ones
are renormalised, and a version at 0 % never answers (it is only kept warm).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

__all__ = ["Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """An agent's route: ``weights`` as (version, percent) pairs, and an optional shadow."""

    weights: tuple[tuple[int, int], ...]
    shadow: tuple[int, int] | None = None

    @classmethod
    def of(cls, weights: Mapping[int, int], shadow: tuple[int, int] | None = None) -> Route:
        return cls(tuple(sorted(weights.items())), shadow)

    def choose(self, u: float, ready: Container[int]) -> int | None:
        """The version for the request whose draw is ``u``; None if no weighted version is ready."""
        live = [(v, w) for v, w in self.weights if w > 0 and v in ready]
        total = sum(w for _, w in live)
        if not total:
            return None
        x = u * total
        for version, weight in live:
            x -= weight
            if x < 0:
                return version
        return live[-1][0]

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
        return names
