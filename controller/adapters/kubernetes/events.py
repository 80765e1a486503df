"""Kubernetes Events (events.k8s.io/v1) for what the controller saw and did.

An event about an agent is recorded on that agent's route object (its HTTPRoute, or its Service
under router service), so that ``kubectl describe`` shows it there; an event with no agent
object (a registry-only agent, the manifests as a whole) goes on the controller's own Lease.
Recording never raises: an event that cannot be written is logged and reconciling goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from controller.adapters.kubernetes.serving import KubeApi, micro_time
from controller.core.errors import BackendError

__all__ = ["KubeEvents"]

log = logging.getLogger("agentctl.events")
Ref = dict[str, str]


class KubeEvents:
    def __init__(
        self,
        api: KubeApi,
        identity: str,
        object_of: Callable[[str], Ref | None],
        fallback: Callable[[], Ref | None] = lambda: None,
    ) -> None:
        self.api = api
        self.identity = identity
        self.object_of = object_of
        self.fallback = fallback

    def event(self, agent: str, reason: str, message: str, warning: bool = False) -> None:
        regarding = (self.object_of(agent) if agent else None) or self.fallback()
        if regarding is None:
            log.info("event %s %s (no object to record it on): %s", reason, agent, message)
            return
        namespace = regarding["namespace"]
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"generateName": f"{regarding['name']}-", "namespace": namespace},
            "eventTime": micro_time(datetime.now(UTC)),
            "reportingController": "agentctl.io/controller",
            "reportingInstance": self.identity[:128],
            "action": reason[:128],
            "reason": reason[:128],
            "type": "Warning" if warning else "Normal",
            "note": (f"agent {agent}: " if agent else "") + message[:900],
            "regarding": {k: v for k, v in regarding.items() if v},
        }
        try:
            self.api.request(
                "POST", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events", body=body
            )
        except BackendError as exc:
            log.warning("could not record event %s for %s: %s", reason, agent or "-", exc)
