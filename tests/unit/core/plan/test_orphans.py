"""What gc deletes: the owner's agentctl-logged runs and logged models that no version names,
old enough; everything else is kept."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.plan.orphans import orphans
from controller.core.state.logged import LoggedModel, LoggedRun, LoggedSnapshot, model_of_experiment
from controller.core.state.observed import (
    AGENT_TAG,
    DIGEST_TAG,
    OWNER_TAG,
    ObservedVersion,
    RegistrySnapshot,
)
from tests.support.builders import model, snapshot

NOW = 10_000_000
HOUR = 3600_000
TAGS = {OWNER_TAG: "team-a", AGENT_TAG: "bot", DIGEST_TAG: "sha256:1"}


def _logged(n: str, tags: dict[str, str] | None = None, age_ms: int = 2 * HOUR,
            name: str = "bot") -> tuple[LoggedRun, LoggedModel]:  # fmt: skip
    t = TAGS if tags is None else tags
    return (
        LoggedRun(f"r{n}", name, NOW - age_ms, t),
        LoggedModel(f"m-{n}", f"r{n}", name, NOW - age_ms, t),
    )


def _registry(*versions: ObservedVersion, owner: str = "team-a") -> RegistrySnapshot:
    bot = model("bot", owner=owner)
    return snapshot(replace(bot, versions={v.number: v for v in versions}))


def _found(
    logged: LoggedSnapshot, registry: RegistrySnapshot, min_age_s: float = 3600
) -> list[str]:
    return [o.id for o in orphans(logged, registry, "team-a", NOW, min_age_s)]


def test_only_what_no_version_names_is_an_orphan_logged_models_first() -> None:
    run1, lm1 = _logged("1")  # v1: by logged model
    run2, lm2 = _logged("2")  # v2: registered from the run's artifacts
    run3, lm3 = _logged("3")  # the interrupted apply's
    logged = LoggedSnapshot((run1, run2, run3), (lm1, lm2, lm3))
    registry = _registry(
        ObservedVersion(1, source="models:/m-1", run_id="r1"),
        ObservedVersion(2, source="runs:/r2/agent"),
    )
    found = orphans(logged, registry, "team-a", NOW, 3600)
    assert [(o.kind, o.id) for o in found] == [("logged_model", "m-3"), ("run", "r3")]
    assert found[0].agent == "bot" and found[0].digest == "sha256:1" and found[0].age_s == 7200


@pytest.mark.parametrize(
    ("why", "logged", "registry_owner"),
    [
        ("another owner's", _logged("9", {**TAGS, OWNER_TAG: "team-b"}), "team-a"),
        ("not logged by agentctl", _logged("9", {OWNER_TAG: "team-a"}), "team-a"),
        ("too young: an apply may still register it", _logged("9", age_ms=HOUR // 2), "team-a"),
        ("untagged, its model another owner's", _logged("9", {DIGEST_TAG: "d"}), "team-b"),
    ],
)
def test_kept(why: str, logged: tuple[LoggedRun, LoggedModel], registry_owner: str) -> None:
    assert _found(LoggedSnapshot(*([x] for x in logged)), _registry(owner=registry_owner)) == [], (
        why
    )  # type: ignore[arg-type]


def test_untagged_by_owner_it_is_the_owner_s_whose_model_it_was_logged_for() -> None:
    run, lm = _logged("9", {DIGEST_TAG: "sha256:9"})  # logged before runs carried the owner
    assert _found(LoggedSnapshot((run,), (lm,)), _registry()) == ["m-9", "r9"]
    # a logged model without tags goes by its run's
    assert _found(LoggedSnapshot((run,), (replace(lm, tags={}),)), _registry()) == ["m-9", "r9"]


def test_a_version_of_any_model_keeps_it() -> None:
    run, lm = _logged("5")
    theirs = replace(model("theirs", owner="team-b"),
                     versions={1: ObservedVersion(1, source="models:/m-5")})  # fmt: skip
    assert _found(LoggedSnapshot((run,), (lm,)), snapshot(theirs)) == []
    assert _found(LoggedSnapshot((run,), (lm,)), snapshot(theirs), min_age_s=0) == []


def test_experiment_names() -> None:
    assert model_of_experiment("/agentctl/bot") == "bot"
    assert model_of_experiment("/agentctl/") is None
    assert model_of_experiment("/Shared/bot") is None
