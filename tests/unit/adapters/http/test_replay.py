"""The webhook's replay cache: an id is accepted once until its delivery goes stale; the
cache never grows past its capacity, and forgetting leaves nothing behind."""

from __future__ import annotations

from controller.adapters.http.replay import ReplayCache


def test_the_replay_cache_forgets_ids_once_stale_and_never_grows_past_its_capacity() -> None:
    cache = ReplayCache(capacity=3)
    assert cache.first("a", expires=100.0, now=0.0) is True
    assert cache.first("a", expires=100.0, now=50.0) is False
    assert cache.first("b", expires=200.0, now=50.0) is True
    assert cache.first("c", expires=200.0, now=50.0) is True
    # Full of fresh ids: a new one is not accepted (503, delivered again), none is forgotten.
    assert cache.first("d", expires=200.0, now=60.0) is None
    assert cache.first("a", expires=100.0, now=60.0) is False and len(cache) == 3
    # "a" is stale after 100 (verify refuses its replays by timestamp): its room is reused.
    assert cache.first("d", expires=250.0, now=101.0) is True
    assert len(cache) == 3
    cache.forget("d")
    assert cache.first("d", expires=250.0, now=102.0) is True
    for i in range(1000):  # ids forgotten by hand leave nothing behind
        cache.forget("d")
        assert cache.first("d", expires=250.0 + i, now=103.0) is True
    assert len(cache) == 3 and len(cache._heap) <= 2 * 3 + 64 + 1
