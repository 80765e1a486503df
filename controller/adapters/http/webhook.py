"""MLflow registry webhooks: is a delivery genuine, and does it concern agentctl. Pure data.

MLflow (3.3 and later) signs a delivery with the webhook's secret: the header
``X-MLflow-Signature`` is ``v1,`` followed by the base64 HMAC-SHA256 of
``"{delivery id}.{timestamp}.{raw body}"``, with ``X-MLflow-Delivery-Id`` and
``X-MLflow-Timestamp`` (Unix seconds). The body is ``{"entity", "action", "timestamp", "data"}``;
alias events are ``model_version_alias.created`` and ``model_version_alias.deleted``. A delivery
older (or newer) than ``tolerance`` seconds is refused, as the Standard Webhooks convention that
MLflow follows recommends, so that a captured request cannot be replayed later; a timestamp
that is not a finite number (``nan``, ``inf``) is refused even when signed. Within the window a
replay is caught by its delivery id (MLflow makes a new uuid4 per delivery and keeps it, with
the timestamp, when it retries): :mod:`controller.adapters.http.replay` remembers the ids until
:attr:`Delivery.expires`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TOLERANCE", "Delivery", "WebhookRefused", "verify"]

TOLERANCE = 300.0
_EVENTS = {"model_version_alias.created", "model_version_alias.deleted"}


class WebhookRefused(Exception):
    """Not a genuine delivery: its status (401 or 400) and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True, slots=True)
class Delivery:
    event: str  # "model_version_alias.created"
    model: str
    alias: str
    delivery_id: str = ""
    sent: float = 0.0  # its X-MLflow-Timestamp

    @property
    def expires(self) -> float:
        """When it stops being fresh: a replay after this is refused as stale, so its id need
        not be remembered longer."""
        return self.sent + TOLERANCE

    @property
    def relevant(self) -> bool:
        """Whether it can change what the controller plans (an alias moved by hand)."""
        return self.event in _EVENTS


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> Delivery:
    """The delivery, if it is signed with ``secret`` and fresh; else WebhookRefused.
    ``headers`` keys are lower case."""
    delivery_id = headers.get("x-mlflow-delivery-id", "")
    stamp = headers.get("x-mlflow-timestamp", "")
    signature = headers.get("x-mlflow-signature", "")
    if not (delivery_id and stamp and signature):
        raise WebhookRefused(401, "missing X-MLflow-Signature, -Timestamp or -Delivery-Id")
    try:
        sent = float(stamp)
    except ValueError:
        raise WebhookRefused(401, f"bad X-MLflow-Timestamp {stamp!r}") from None
    if not math.isfinite(sent):
        raise WebhookRefused(401, f"X-MLflow-Timestamp {stamp!r} is not a finite number")
    if abs(now - sent) > TOLERANCE:
        raise WebhookRefused(401, f"timestamp {stamp} is more than {TOLERANCE:.0f} s from now")
    signed = delivery_id.encode() + b"." + stamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    want = expected.encode()
    if not any(hmac.compare_digest(want, s.strip().encode()) for s in signature.split(" ")):
        raise WebhookRefused(401, "signature does not match")
    try:
        payload = json.loads(body)
        data = payload.get("data") or {}
        event = f"{payload['entity']}.{payload['action']}"
    except (ValueError, KeyError, AttributeError, TypeError):
        raise WebhookRefused(400, "body is not an MLflow webhook payload") from None
    return Delivery(event, str(data.get("name", "")), str(data.get("alias", "")), delivery_id, sent)
