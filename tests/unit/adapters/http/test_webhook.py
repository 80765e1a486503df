"""MLflow webhook deliveries: the signature MLflow makes, checked; stale, unsigned, forged or
malformed deliveries refused; and the controller's endpoint in front of it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from controller.adapters.http.endpoints import Endpoints, Probes
from controller.adapters.http.replay import ReplayCache
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


_ids = itertools.count(1)


def signed(
    body: bytes = BODY,
    secret: str = "s3cret",
    at: float = NOW,
    *,
    stamp: str = "",
    delivery_id: str = "",
) -> dict[str, str]:
    """Headers as MLflow's webhooks/delivery.py makes them: a new delivery id each time unless
    one is given (MLflow makes a uuid4 per delivery)."""
    stamp = stamp or str(int(at))
    delivery_id = delivery_id or f"d-{next(_ids)}"
    signed = f"{delivery_id}.{stamp}.".encode() + body
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "x-mlflow-delivery-id": delivery_id,
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
        (signed(stamp="nan"), BODY, 401, "not a finite number"),
        (signed(stamp="inf"), BODY, 401, "not a finite number"),
        (signed(stamp="-inf"), BODY, 401, "not a finite number"),
        (signed(stamp="NaN"), BODY, 401, "not a finite number"),
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


def _endpoints(**kwargs: object) -> Endpoints:
    return Endpoints(
        "127.0.0.1",
        0,
        Metrics(CollectorRegistry()),
        Probes(lambda: "", lambda: ""),
        webhook_secret="s3cret",
        clock=lambda: NOW,
        **kwargs,  # type: ignore[arg-type]
    ).start()


def test_a_delivery_is_accepted_once_within_its_window() -> None:
    woken: list[str] = []
    ep = _endpoints(on_webhook=lambda reason: bool(woken.append(reason)) or True)
    try:
        first = signed()
        assert _post(ep.port, first) == 202
        assert _post(ep.port, first) == 409  # replayed, still fresh and correctly signed
        other = BODY.replace(b"model_version_alias", b"model_version")
        ignored = signed(other)
        assert _post(ep.port, ignored, other) == 204
        assert _post(ep.port, ignored, other) == 409
        assert woken == ["webhook"]
        assert _post(ep.port, signed()) == 202  # another delivery of the same event
        assert woken == ["webhook", "webhook"]
    finally:
        ep.stop()


def test_a_delivery_a_standby_refused_is_accepted_when_delivered_again() -> None:
    leading = {"now": False}
    ep = _endpoints(on_webhook=lambda reason: leading["now"])
    try:
        headers = signed()
        assert _post(ep.port, headers) == 503  # MLflow retries with the same id and timestamp
        leading["now"] = True
        assert _post(ep.port, headers) == 202
        assert _post(ep.port, headers) == 409
    finally:
        ep.stop()


def test_a_full_replay_cache_asks_mlflow_to_deliver_again() -> None:
    ep = _endpoints(replays=ReplayCache(capacity=1))
    try:
        assert _post(ep.port, signed()) == 202
        assert _post(ep.port, signed()) == 503
    finally:
        ep.stop()


async def _burst(port: int, n: int) -> tuple[int, list[str]]:
    """``n`` connections opened at once, each asking /healthz: how many were answered 200,
    and the errors of the others."""
    start = asyncio.Event()

    async def ask() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return "ok" if answer.startswith(b"HTTP/1.0 200") else repr(answer[:40])

    async def one() -> str:
        await start.wait()
        try:
            return await asyncio.wait_for(ask(), timeout=30)
        except (OSError, TimeoutError) as exc:
            return type(exc).__name__

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    return results.count("ok"), [r for r in results if r != "ok"]


def test_a_burst_of_2000_connections_is_queued_not_reset() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 5000 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (5000, hard))
    ep = Endpoints(
        "127.0.0.1", 0, Metrics(CollectorRegistry()), Probes(lambda: "", lambda: "")
    ).start()
    try:
        ok, errors = asyncio.run(_burst(ep.port, 2000))
    finally:
        ep.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (ok, {e: errors.count(e) for e in errors}) == (2000, {})


# -- which events wake the loop: MLflow's own event names and example payloads -----------------

#: What can change a plan: a model's alias, and a prompt's alias, versions and tags.
WAKING = {
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_tag.set",  # an approval for an environment
    "model_version_tag.deleted",
    "prompt_alias.created",
    "prompt_alias.deleted",
    "prompt_version.created",
    "prompt_tag.set",
    "prompt_tag.deleted",
    "prompt_version_tag.set",
    "prompt_version_tag.deleted",
}


def _mlflow_events() -> dict[str, bytes]:
    """Every event MLflow 3.17.2 delivers -> its body, as mlflow/webhooks/delivery.py makes it
    from the payload class's own example."""
    from mlflow.webhooks.types import EVENT_TO_PAYLOAD_CLASS

    return {
        f"{entity.value}.{action.value}": json.dumps(
            {
                "entity": entity.value,
                "action": action.value,
                "timestamp": "2027-01-15T08:00:00+00:00",
                "data": payload.example(),
            }
        ).encode()
        for (entity, action), payload in EVENT_TO_PAYLOAD_CLASS.items()
    }


def test_the_waking_events_are_mlflows_own_names() -> None:
    from controller.adapters.http.webhook import EVENTS

    assert set(EVENTS) == WAKING
    assert WAKING.issubset(_mlflow_events())  # a misspelt event would never arrive


@pytest.mark.parametrize("event", sorted(_mlflow_events()))
def test_each_mlflow_event_wakes_the_loop_only_if_it_can_change_a_plan(event: str) -> None:
    body = _mlflow_events()[event]
    delivery = verify("s3cret", signed(body), body, NOW)
    assert delivery.event == event
    assert delivery.relevant == (event in WAKING)


def test_a_prompt_events_subject_is_read_from_its_payload() -> None:
    events = _mlflow_events()
    data = {e: json.loads(b)["data"] for e, b in events.items()}

    def subject(event: str) -> str:
        return verify("s3cret", signed(events[event]), events[event], NOW).subject

    alias = data["prompt_alias.created"]
    assert subject("prompt_alias.created") == f"{alias['name']}@{alias['alias']}"
    created = data["prompt_version.created"]
    assert subject("prompt_version.created") == f"{created['name']}/{created['version']}"
    tag = data["prompt_version_tag.set"]
    assert subject("prompt_version_tag.set") == f"{tag['name']}/{tag['version']} {tag['key']}"
    ptag = data["prompt_tag.deleted"]
    assert subject("prompt_tag.deleted") == f"{ptag['name']} {ptag['key']}"


def test_a_payload_whose_data_is_not_an_object_is_refused() -> None:
    body = json.dumps({"entity": "prompt_alias", "action": "created", "data": ["x"]}).encode()
    with pytest.raises(WebhookRefused) as info:
        verify("s3cret", signed(body), body, NOW)
    assert info.value.status == 400


def test_the_endpoint_wakes_the_loop_on_a_prompt_alias_moved_by_hand() -> None:
    woken: list[str] = []
    ep = _endpoints(on_webhook=lambda reason: bool(woken.append(reason)) or True)
    try:
        events = _mlflow_events()
        moved = events["prompt_alias.created"]
        assert _post(ep.port, signed(moved), moved) == 202 and woken == ["webhook"]
        created = events["prompt.created"]  # a prompt agentctl would not own: nothing to plan
        assert _post(ep.port, signed(created), created) == 204 and woken == ["webhook"]
        version = events["prompt_version.created"]
        assert _post(ep.port, signed(version), version) == 202 and woken == ["webhook"] * 2
    finally:
        ep.stop()
