"""What promotion records on versions, read back: times without a clock in the core, approvals
by environment, which tags a copy carries; a plan's promotion steps through a saved plan."""

from __future__ import annotations

import datetime
import random

import pytest

from controller.core.environment.record import (
    aliased_at,
    aliased_at_tag,
    approval_of,
    approval_tags,
    iso,
    kept_in_copy,
    parse_iso,
)
from controller.core.environment.step import Gate, Step
from controller.core.plan.changes import Plan


@pytest.mark.parametrize("seed", range(3))
def test_iso_is_the_standard_library_s_utc_to_the_second(seed: int) -> None:
    rng = random.Random(seed)
    for t in [0, 951_782_400, 4_102_444_799, *(rng.randint(0, 5 * 10**9) for _ in range(2000))]:
        want = datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert iso(t) == want
        assert parse_iso(want) == t


@pytest.mark.parametrize(
    "text", [None, "", "yesterday", "2026-13-01T00:00:00Z", "2026-12-02 01:00:00"]
)
def test_an_unreadable_time_is_none(text: str | None) -> None:
    assert parse_iso(text) is None
    assert aliased_at({aliased_at_tag("champion"): text or ""}, "champion") is None


def test_an_approval_is_per_environment_and_its_decision_is_written_last() -> None:
    tags = approval_tags("prod", True, "alice", 1_800_000_000)
    assert list(tags)[-1] == "agentctl.io/approval.prod"
    assert tags["agentctl.io/approval.prod"] == "Approved"
    found = approval_of(tags, "prod")
    assert found is not None and (found.approved, found.by, found.at) == (
        True,
        "alice",
        1_800_000_000,
    )
    assert approval_of(tags, "staging") is None
    assert approval_of({"agentctl.io/approval.prod": "approved"}, "prod") is not None  # any case
    assert approval_of({"agentctl.io/approval.prod": "yes"}, "prod") is None


def test_a_copy_carries_the_verdict_and_digest_not_one_environment_s_history() -> None:
    assert kept_in_copy("agentctl.io/eval-verdict") and kept_in_copy("agentctl.io/source-digest")
    assert not kept_in_copy(aliased_at_tag("champion"))
    assert not kept_in_copy("agentctl.io/approval.prod")
    assert not kept_in_copy("agentctl.io/create-attempt")


def test_promotion_steps_survive_a_saved_plan() -> None:
    step = Step("bot", "prod", "staging", "bot-staging", 2, (Gate("approval", False, "waiting"),),
                None, 1, 120.0)  # fmt: skip
    plan = Plan("agentctl", environment="prod", promotions=(step,))
    again = Plan.from_dict(plan.to_dict())
    assert again.promotions == (step,) and again.environment == "prod"
    assert again.waiting == (step,) and not again.reached
