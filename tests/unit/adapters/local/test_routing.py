"""Route choice without I/O: header routes first, then a conversation's version (weighted
rendezvous hashing), then the weights."""

from __future__ import annotations

import math
from collections import Counter

from controller.adapters.local.routing import Affinity, HeaderRoute, Route, conversation_draw

AFFINITY = Affinity(header="x-session-id")


def _share_ok(hits: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(hits - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_a_conversation_stays_on_one_version_and_the_split_follows_the_weights() -> None:
    route = Route.of({1: 80, 2: 20}, affinity=AFFINITY)
    n = 5000
    seen: Counter[int] = Counter()
    for i in range(n):
        key = f"conversation-{i}"
        versions = {route.choose(u, {1, 2}, key) for u in (0.0, 0.3, 0.7, 0.99)}
        assert len(versions) == 1, f"{key} went to {versions}"
        seen[versions.pop()] += 1  # type: ignore[index]
    assert _share_ok(seen[2], n, 0.2), seen


def test_a_change_of_weights_moves_only_the_conversations_it_must() -> None:
    before = Route.of({1: 80, 2: 20}, affinity=AFFINITY)
    after = Route.of({1: 50, 2: 50}, affinity=AFFINITY)
    n = 5000
    moved = Counter()
    for i in range(n):
        key = f"c{i}"
        a, b = before.choose(0.5, {1, 2}, key), after.choose(0.5, {1, 2}, key)
        if a != b:
            moved[(a, b)] += 1
    # Only from the version that lost weight to the one that gained it, and about 30 % of them.
    assert set(moved) == {(1, 2)}
    assert _share_ok(moved[(1, 2)], n, 0.3), moved


def test_a_version_that_stops_taking_traffic_moves_only_its_own_conversations() -> None:
    route = Route.of({1: 50, 2: 30, 3: 20}, affinity=AFFINITY)
    for i in range(2000):
        key = f"k{i}"
        was = route.choose(0.5, {1, 2, 3}, key)
        now = route.choose(0.5, {1, 2}, key)  # version 3 is not ready any more
        if was != 3:
            assert now == was


def test_without_a_key_or_without_affinity_the_draw_decides() -> None:
    plain = Route.of({1: 80, 2: 20})
    assert plain.choose(0.1, {1, 2}, "c1") == 1 and plain.choose(0.9, {1, 2}, "c1") == 2
    kept = Route.of({1: 80, 2: 20}, affinity=AFFINITY)
    assert kept.choose(0.1, {1, 2}) == 1 and kept.choose(0.9, {1, 2}) == 2
    assert kept.choose(0.5, set(), "c1") is None


def test_a_version_at_zero_percent_gets_no_conversation() -> None:
    route = Route.of({1: 100, 2: 0}, affinity=AFFINITY)
    assert {route.choose(0.5, {1, 2}, f"c{i}") for i in range(500)} == {1}


def test_draws_are_uniform_and_stable() -> None:
    draws = [conversation_draw(f"c{i}", 1) for i in range(4000)]
    assert all(0 < d < 1 for d in draws)
    assert _share_ok(sum(d < 0.5 for d in draws), 4000, 0.5)
    assert conversation_draw("same", 7) == conversation_draw("same", 7)
    assert conversation_draw("same", 7) != conversation_draw("same", 8)


def test_header_routes_come_first_and_need_a_ready_version() -> None:
    route = Route.of(
        {1: 100, 2: 0},
        headers=(HeaderRoute("x-agent-version", "canary", 2), HeaderRoute("x-user", "tester", 1)),
    )
    assert route.by_header({"x-agent-version": "canary"}, {1, 2}) == 2
    assert route.by_header({"x-agent-version": "canary"}, {1}) is None
    assert route.by_header({"x-agent-version": "Canary"}, {1, 2}) is None  # values are exact
    assert route.by_header({"x-user": "tester"}, {1, 2}) == 1
    assert route.by_header({}, {1, 2}) is None
    assert route.versions() == {1, 2}
