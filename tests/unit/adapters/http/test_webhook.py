"""MLflow webhook deliveries: the signature MLflow makes, checked; stale, unsigned, forged or
malformed deliveries refused; and the controller's endpoint in front of it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from controller.adapters.http.endpoints import Endpoints, Probes
from controller.adapters.http.webhook import WebhookRefused, verify
from controller.engine.metrics import Metrics

NOW = 1_800_000_000.0
BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "deleted",
        "timestamp": "2027-01-15T08:00:00+00:00",
        "data": {"name": "bot", "alias": "champion"},
    }
).encode()


def signed(body: bytes = BODY, secret: str = "s3cret", at: float = NOW) -> dict[str, str]:
    """Headers as MLflow's webhooks/delivery.py makes them."""
    stamp = str(int(at))
    mac = hmac.new(secret.encode(), f"d-1.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "x-mlflow-delivery-id": "d-1",
        "x-mlflow-timestamp": stamp,
        "x-mlflow-signature": "v1," + base64.b64encode(mac).decode(),
    }


def test_a_genuine_delivery_is_read() -> None:
    delivery = verify("s3cret", signed(), BODY, NOW + 10)
    assert (delivery.event, delivery.model, delivery.alias) == (
        "model_version_alias.deleted",
        "bot",
        "champion",
    )
    assert delivery.relevant


@pytest.mark.parametrize(
    ("headers", "body", "status", "why"),
    [
        ({}, BODY, 401, "missing X-MLflow-Signature"),
        (signed(secret="other"), BODY, 401, "signature does not match"),
        (signed(), BODY + b" ", 401, "signature does not match"),
        (signed(at=NOW - 301), BODY, 401, "more than 300 s from now"),
        (signed(b"[]"), b"[]", 400, "not an MLflow webhook payload"),
    ],
)
def test_bad_deliveries_are_refused(
    headers: dict[str, str], body: bytes, status: int, why: str
) -> None:
    with pytest.raises(WebhookRefused) as info:
        verify("s3cret", headers, body, NOW)
    assert info.value.status == status and why in str(info.value)


def _post(port: int, headers: dict[str, str], body: bytes = BODY) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/mlflow", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_endpoint_wakes_the_loop_only_for_genuine_alias_events() -> None:
    woken: list[str] = []
    leading = {"now": True}
    ready = {"why": "the first reconcile has not ended yet"}
    ep = Endpoints(
        "127.0.0.1",
        0,
        Metrics(CollectorRegistry()),
        Probes(lambda: "", lambda: ready["why"]),
        webhook_secret="s3cret",
        on_webhook=lambda reason: bool(woken.append(reason) or leading["now"]),
        clock=lambda: NOW,
    ).start()
    try:
        assert _post(ep.port, {}) == 401 and woken == []
        assert _post(ep.port, signed()) == 202 and woken == ["webhook"]
        other = BODY.replace(b"model_version_alias", b"model_version")
        assert _post(ep.port, signed(other), other) == 204 and woken == ["webhook"]
        leading["now"] = False  # a standby: MLflow is told to deliver again
        assert _post(ep.port, signed()) == 503
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{ep.port}/readyz", timeout=5)
        assert info.value.code == 503
        ready["why"] = ""
        with urllib.request.urlopen(f"http://127.0.0.1:{ep.port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        ep.stop()


def test_without_a_secret_there_is_no_webhook_endpoint() -> None:
    ep = Endpoints(
        "127.0.0.1", 0, Metrics(CollectorRegistry()), Probes(lambda: "", lambda: "")
    ).start()
    try:
        assert _post(ep.port, signed()) == 404
    finally:
        ep.stop()


@pytest.mark.parametrize(("length", "status"), [("-1", 400), ("x", 400), (str(2 << 20), 413)])
def test_a_body_without_a_sane_length_is_refused(length: str, status: int) -> None:
    import http.client

    ep = Endpoints(
        "127.0.0.1",
        0,
        Metrics(CollectorRegistry()),
        Probes(lambda: "", lambda: ""),
        webhook_secret="s3cret",
        clock=lambda: NOW,
    ).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=5)
        conn.putrequest("POST", "/webhooks/mlflow")
        conn.putheader("Content-Length", length)
        conn.endheaders()
        assert conn.getresponse().status == status
    finally:
        ep.stop()


def test_a_signature_that_is_not_ascii_is_refused_not_a_crash() -> None:
    headers = {**signed(), "x-mlflow-signature": "v1,\u00e9t\u00e9"}
    with pytest.raises(WebhookRefused) as info:
        verify("s3cret", headers, BODY, NOW)
    assert info.value.status == 401
