"""The local router's verify step: the route read back from the daemon's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.adapters.local.client import LocalServing


def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: dict[str, Any] | None) -> Any:
    serving = LocalServing(tmp_path / "run", "sqlite:///x.db", experiment_of=lambda m: "")
    asked: list[tuple[str, str]] = []

    def request(method: str, path: str, body: Any = None, **_: Any) -> Any:
        asked.append((method, path))
        return state

    monkeypatch.setattr(serving, "daemon", lambda: None if state is None else {"pid": 1})
    monkeypatch.setattr(serving, "_request", request)
    return serving, asked


def test_the_route_is_read_back_from_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = {"agents": {"bot": {"weights": {"1": 90, "2": 10}}}}
    serving, asked = local(tmp_path, monkeypatch, state)
    assert serving.verify_weight("bot", {1: 90, 2: 10})
    assert not serving.verify_weight("bot", {1: 100})
    assert not serving.verify_weight("bot", {1: 90, 2: 10, 3: 0})
    assert not serving.verify_weight("other", {1: 100})  # no route at all
    assert asked == [("GET", "/state")] * 4


def test_without_a_daemon_nothing_is_routed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving, asked = local(tmp_path, monkeypatch, None)
    assert not serving.verify_weight("bot", {1: 100})
    assert asked == []
