"""Typed change payloads: each kind of change carries its own frozen value, whose JSON form is
the plan's, and which reads back from that JSON as it was (and refuses JSON that is not one)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.core.plan.changes import (
    Action,
    AliasTarget,
    Change,
    Kind,
    ModelContents,
    ModelState,
    Payload,
    Pending,
    Plan,
    RolloutRecord,
    RoutingState,
    ServerState,
    ShadowState,
    TrafficSplit,
    VersionCreate,
    VersionState,
    payload_type,
)

D = "sha256:" + "d" * 64

# Each payload with the JSON the plan has always written for it.
CASES: list[tuple[Payload, dict[str, Any]]] = [
    (
        ModelState({"team": "a"}, "Answers questions.", name="bot"),
        {"name": "bot", "tags": {"team": "a"}, "description": "Answers questions."},
    ),
    (ModelState({"team": "a"}), {"tags": {"team": "a"}}),
    (ModelState({}, ""), {"tags": {}, "description": ""}),
    (
        ModelContents("bot", (1, 2), (("champion", 2),)),
        {"name": "bot", "versions": [1, 2], "aliases": {"champion": 2}},
    ),
    (
        VersionCreate(D, "agent.py", None, ("mlflow==3.17.2",), {"agentctl.io/source-digest": D}),
        {
            "version": None,
            "digest": D,
            "code": "agent.py",
            "config": None,
            "pip_requirements": ["mlflow==3.17.2"],
            "tags": {"agentctl.io/source-digest": D},
        },
    ),
    (
        VersionCreate(D, "a.py", "c.yaml", (), {}, "first"),
        {
            "version": None,
            "digest": D,
            "code": "a.py",
            "config": "c.yaml",
            "pip_requirements": [],
            "tags": {},
            "description": "first",
        },
    ),
    (VersionState(3, {"channel": "web"}), {"version": 3, "tags": {"channel": "web"}}),
    (VersionState(3, {}, "x"), {"version": 3, "tags": {}, "description": "x"}),
    (AliasTarget(2), {"version": 2}),
    (AliasTarget(Pending(D)), {"version": None, "digest": D}),
    (ServerState(1, "bot"), {"version": 1, "model": "bot"}),
    (ServerState(1, "bot", ready=False), {"version": 1, "model": "bot", "ready": False}),
    (ServerState(Pending(D), "bot"), {"version": None, "digest": D, "model": "bot"}),
    (
        TrafficSplit(((1, 80), (Pending(D), 20))),
        {"weights": [{"version": 1, "percent": 80}, {"version": None, "digest": D, "percent": 20}]},
    ),
    (ShadowState(2, 30), {"version": 2, "percent": 30}),
    (ShadowState(Pending(D), 5), {"version": None, "digest": D, "percent": 5}),
    (RolloutRecord({"agentctl.io/rollout": "{}"}), {"agentctl.io/rollout": "{}"}),
    (
        RoutingState((("x-agent-version", "canary", Pending(D)),), ("x-session-id", None)),
        {
            "headers": [
                {"header": "x-agent-version", "value": "canary", "version": None, "digest": D}
            ],
            "affinity": {"header": "x-session-id", "cookie": None},
        },
    ),
    (
        RoutingState((("x-user", "tester", 3),)),
        {"headers": [{"header": "x-user", "value": "tester", "version": 3}]},
    ),
]


@pytest.mark.parametrize(("value", "data"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_payload_writes_the_plans_json_and_reads_it_back(
    value: Payload, data: dict[str, Any]
) -> None:
    assert value.to_dict() == data
    assert list(value.to_dict()) == list(data)  # the key order the JSON renderer shows
    back = type(value).from_dict(json.loads(json.dumps(data)))
    assert back == value and type(back) is type(value)


def test_each_kind_and_action_has_its_payload_type() -> None:
    assert payload_type(Kind.REGISTERED_MODEL, Action.DELETE, after=False) is ModelContents
    assert payload_type(Kind.REGISTERED_MODEL, Action.UPDATE, after=False) is ModelState
    assert payload_type(Kind.MODEL_VERSION, Action.CREATE, after=True) is VersionCreate
    assert payload_type(Kind.MODEL_VERSION, Action.UPDATE, after=True) is VersionState
    assert payload_type(Kind.TRAFFIC, Action.UPDATE, after=False) is TrafficSplit


def test_a_change_refuses_a_payload_of_another_kind() -> None:
    with pytest.raises(TypeError, match=r"bot\.alias\.champion: after is a ShadowState"):
        Change("bot", "bot", Kind.ALIAS, "champion", Action.CREATE, None, ShadowState(1, 5), "")
    c = Change("bot", "bot", Kind.ALIAS, "champion", Action.CREATE, None, AliasTarget(1), "")
    assert c.after_as(AliasTarget).target == 1
    with pytest.raises(TypeError, match="no AliasTarget before"):
        c.before_as(AliasTarget)


def test_a_change_round_trips_through_json_with_typed_payloads() -> None:
    c = Change(
        "bot",
        "bot",
        Kind.TRAFFIC,
        "",
        Action.UPDATE,
        TrafficSplit(((1, 100),)),
        TrafficSplit(((1, 90), (2, 10))),
        "the traffic split differs",
    )
    data = json.loads(json.dumps(c.to_dict()))
    assert data["after"] == {
        "weights": [{"version": 1, "percent": 90}, {"version": 2, "percent": 10}]
    }
    back = Change.from_dict(data)
    assert back == c and isinstance(back.after, TrafficSplit)
    plan = Plan("agentctl", (c,), agents=("bot",))
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


MALFORMED = [
    (AliasTarget, {"version": "2"}),  # a number written as a string
    (AliasTarget, {"version": None}),  # known after apply, but no digest
    (ModelState, {"tags": {"team": 1}}),
    (ModelState, {"description": "no tags"}),
    (
        VersionCreate,
        {
            "version": 4,
            "digest": D,
            "code": "a.py",
            "config": None,
            "pip_requirements": [],
            "tags": {},
        },
    ),
    (ServerState, {"version": 1, "model": "bot", "ready": "yes"}),
    (TrafficSplit, {"weights": {"1": 100}}),
    (TrafficSplit, {"weights": [{"version": 1, "percent": True}]}),
    (ShadowState, [2, 30]),
    (RolloutRecord, {"agentctl.io/rollout": None}),
]


@pytest.mark.parametrize(("cls", "data"), MALFORMED)
def test_json_that_is_not_a_payload_is_refused(cls: type[Payload], data: Any) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        cls.from_dict(data)
