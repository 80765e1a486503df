"""The webhook's replay cache: each delivery id is accepted once while its delivery is fresh.

An id is remembered until its delivery's freshness window ends (after that a replay is refused
as stale anyway), so the cache holds at most the ids of one window. It is bounded all the same:
when ``capacity`` ids are remembered and none has expired, a new delivery is not accepted
(the endpoint answers 503 and MLflow delivers it again later) rather than forgetting an id that
could then be replayed. Only deliveries whose signature was checked reach it, so only the
holder of the secret can fill it. Thread-safe: the endpoints serve each request on a thread.
"""

from __future__ import annotations

import heapq
import threading

__all__ = ["ReplayCache"]


class ReplayCache:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # (expires, id), soonest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def first(self, delivery_id: str, expires: float, now: float) -> bool | None:
        """True if ``delivery_id`` is new (it is remembered until ``expires``), False if it was
        accepted before, None if the cache is full of ids still fresh."""
        with self._lock:
            self._expire(now)
            if delivery_id in self._expiry:
                return False
            if len(self._expiry) >= self.capacity:
                return None
            self._expiry[delivery_id] = expires
            heapq.heappush(self._heap, (expires, delivery_id))
            return True

    def forget(self, delivery_id: str) -> None:
        """Accept ``delivery_id`` again (it was not acted on: MLflow is asked to deliver it
        again)."""
        with self._lock:
            self._expiry.pop(delivery_id, None)

    def _expire(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            expires, delivery_id = heapq.heappop(self._heap)
            if self._expiry.get(delivery_id) == expires:
                del self._expiry[delivery_id]
        # Ids forgotten by hand leave their heap entries behind: drop them once they dominate.
        if len(self._heap) > 2 * len(self._expiry) + 64:
            self._heap = [(e, d) for e, d in self._heap if self._expiry.get(d) == e]
            heapq.heapify(self._heap)
