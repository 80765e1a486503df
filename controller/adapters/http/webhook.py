"""MLflow registry webhooks: is a delivery genuine, and does it concern agentctl. Pure data.

MLflow (3.3 and later) signs a delivery with the webhook's secret: the header
``X-MLflow-Signature`` is ``v1,`` followed by the base64 HMAC-SHA256 of
``"{delivery id}.{timestamp}.{raw body}"``, with ``X-MLflow-Delivery-Id`` and
``X-MLflow-Timestamp`` (Unix seconds). The body is ``{"entity", "action", "timestamp", "data"}``.
The events that can change what the controller plans (:data:`EVENTS`): a model's alias set or
deleted (``model_version_alias.created`` / ``.deleted``), a version's tag set or deleted
(``model_version_tag.set`` / ``.deleted``: an approval for an environment, a verdict), and, for
a prompt of the Prompt
Registry, which MLflow reports as events of their own (``data`` holds ``name`` and ``alias``,
``version`` or ``key``): ``prompt_alias.created`` / ``.deleted``, ``prompt_version.created``,
``prompt_tag.set`` / ``.deleted`` and ``prompt_version_tag.set`` / ``.deleted``. A delivery
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

__all__ = ["EVENTS", "TOLERANCE", "Delivery", "WebhookRefused", "verify"]

TOLERANCE = 300.0
#: ``entity.action`` of the deliveries that wake the loop (mlflow/webhooks/types.py's names).
EVENTS = frozenset(
    {
        "model_version_alias.created",
        "model_version_alias.deleted",
        "model_version_tag.set",
        "model_version_tag.deleted",
        "prompt_alias.created",
        "prompt_alias.deleted",
        "prompt_version.created",
        "prompt_tag.set",
        "prompt_tag.deleted",
        "prompt_version_tag.set",
        "prompt_version_tag.deleted",
    }
)


class WebhookRefused(Exception):
    """Not a genuine delivery: its status (401 or 400) and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True, slots=True)
class Delivery:
    event: str  # "model_version_alias.created"
    model: str  # the registered model's or prompt's name
    alias: str
    delivery_id: str = ""
    sent: float = 0.0  # its X-MLflow-Timestamp
    version: str = ""
    key: str = ""  # a tag event's tag

    @property
    def subject(self) -> str:
        """What it is about, for the log: ``bot@champion``, ``support-system/3 team``."""
        out = self.model
        if self.alias:
            out += f"@{self.alias}"
        elif self.version:
            out += f"/{self.version}"
        return f"{out} {self.key}" if self.key else out

    @property
    def expires(self) -> float:
        """When it stops being fresh: a replay after this is refused as stale, so its id need
        not be remembered longer."""
        return self.sent + TOLERANCE

    @property
    def relevant(self) -> bool:
        """Whether it can change what the controller plans (an alias moved by hand, an approval
        given, a prompt version or tag made or edited by hand)."""
        return self.event in EVENTS


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
        if not isinstance(data, Mapping):
            raise TypeError(data)
    except (ValueError, KeyError, AttributeError, TypeError):
        raise WebhookRefused(400, "body is not an MLflow webhook payload") from None
    return Delivery(
        event,
        str(data.get("name", "")),
        str(data.get("alias", "")),
        delivery_id,
        sent,
        version=str(data.get("version", "")),
        key=str(data.get("key", "")),
    )
