"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

A candidate takes the Lease when it does not exist, when it names no holder, or when its record
has not changed for ``lease_duration`` seconds by the candidate's own clock (clocks of different
machines are never compared). The holder renews it every ``retry_period``; a holder that cannot
renew for ``renew_deadline`` (shorter than the lease) stops leading before anyone else may
start. Writes carry the resourceVersion read, so two candidates never both win: the API server
refuses the second (409). On a clean stop the holder releases the Lease, so a successor need
not wait out the lease.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controller.adapters.kubernetes.serving import Conflict, KubeApi, NotFound, micro_time
from controller.core.errors import BackendError
from controller.ports import Clock, SystemClock

__all__ = ["LeaderElector", "LeaseLock"]

log = logging.getLogger("agentctl.leader")


class LeaseLock:
    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        clock: Clock | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_duration = lease_duration
        self.clock = clock or SystemClock()
        self.now = now
        self._record = ""  # the Lease spec last read, as JSON
        self._seen_at = 0.0  # when, by our clock, it last changed
        self.holder = ""  # who held it at the last read

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _spec(self, acquired: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquired,
            "renewTime": micro_time(self.now()),
            "leaseTransitions": transitions,
        }

    def _seen(self, spec: dict[str, Any]) -> None:
        record = json.dumps(spec, sort_keys=True)
        if record != self._record:
            self._record, self._seen_at = record, self.clock.monotonic()
        self.holder = str(spec.get("holderIdentity") or "")

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True if this candidate holds the Lease after it."""
        path = f"{self._collection}/{self.name}"
        try:
            lease = self.api.request("GET", path)
        except NotFound:
            now = micro_time(self.now())
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, 0),
            }
            try:
                created = self.api.request("POST", self._collection, body=body)
            except Conflict:
                return False  # another candidate created it first
            self._seen(created["spec"])
            return True
        spec = dict(lease.get("spec") or {})
        self._seen(spec)
        holder = self.holder
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock.monotonic() < self._seen_at + duration:
            return False  # held, and renewed within the lease as far as we have seen
        mine = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        acquired = spec.get("acquireTime") if mine else None
        lease["spec"] = self._spec(acquired or micro_time(self.now()), transitions)
        try:
            updated = self.api.request("PUT", path, body=lease)  # carries resourceVersion
        except Conflict:
            return False  # someone else wrote it since our read
        self._seen(updated["spec"])
        return True

    def release(self) -> None:
        """Give the Lease up (if still ours), so that a successor need not wait it out."""
        path = f"{self._collection}/{self.name}"
        try:
            lease = self.api.request("GET", path)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(self.now()),
            }
            self.api.request("PUT", path, body=lease)
        except BackendError as exc:
            log.warning("could not release the Lease %s/%s: %s", self.namespace, self.name, exc)


class LeaderElector:
    """Keeps trying for the Lease in a thread of its own; ``is_leader`` is safe to call from
    any thread."""

    def __init__(
        self,
        lock: LeaseLock,
        *,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lock.lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration "
                f"(got {retry_period} < {renew_deadline} < {lock.lease_duration})"
            )
        self.lock = lock
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.clock = clock or SystemClock()
        self._leader = threading.Event()
        self._renewed = float("-inf")  # when the last successful renewal was *sent*

    def is_leader(self) -> bool:
        """Leading, and the last renewal sent less than the renew deadline ago: a deadline, not
        just a flag, so that a leader whose renewals hang stops leading in time even before
        its elector thread notices (the Lease lasts longer than the renew deadline)."""
        fresh = self.clock.monotonic() < self._renewed + self.renew_deadline
        return self._leader.is_set() and fresh

    def _set(self, leader: bool, why: str) -> None:
        if leader == self._leader.is_set():
            return
        if leader:
            self._leader.set()
        else:
            self._leader.clear()
        ident = f"{self.lock.namespace}/{self.lock.name} as {self.lock.identity}"
        log.warning("%s the Lease %s%s", "acquired" if leader else "lost", ident, why)
        if self.on_change is not None:
            self.on_change(leader)

    def run(self, stop: threading.Event) -> None:
        """Try for (or renew) the Lease every retry period until ``stop``; then release it if
        held. Set ``stop`` only once nothing is being applied any more."""
        while not stop.is_set():
            sent = self.clock.monotonic()
            try:
                held = self.lock.try_acquire_or_renew()
                failure = "" if held or self.lock.holder != self.lock.identity else "a conflict"
            except Exception as exc:
                held, failure = False, str(exc) or type(exc).__name__
                log.warning("Lease %s/%s: %s", self.lock.namespace, self.lock.name, failure)
            now = self.clock.monotonic()
            if held:
                self._renewed = sent
                self._set(True, "")
            elif not failure:  # someone else holds it
                self._set(False, f" (held by {self.lock.holder})")
            elif now - self._renewed >= self.renew_deadline:
                self._set(False, f" (not renewed for {self.renew_deadline:.0f} s: {failure})")
            stop.wait(self.retry_period)
        if self._leader.is_set():
            self.lock.release()
            self._set(False, " (released on stop)")
