"""The rollout's storage codec, table-driven: a state round-trips through registry tags; tags
that are not a readable state are no state (None), never a crash; :func:`read` picks the
rollout's tags, its state and the CLI's command out of a model's tags."""

from __future__ import annotations

import json

import pytest

from controller.core.rollout.codec import (
    STATE_TAG,
    TAG_PREFIX,
    Phase,
    RolloutState,
    Stored,
    read,
)
from controller.core.rollout.commands import COMMAND_TAG, Command
from controller.core.rollout.gates import Verdict

STATES = [
    RolloutState(2, 1, "sha256:abc"),
    RolloutState(2, 1, "d", step_started=1_000_000.5, measured_at=1_000_010.25),
    RolloutState(
        7, 3, "d", Phase.PAUSED, step=2, step_started=12.0,
        failures={"errors": 1, "slow": 2}, verdicts={"errors": Verdict.INCONCLUSIVE},
        message="inconclusive: errors not yet conclusive", measured_at=20.0,
    ),
    RolloutState(2, 1, "d", Phase.PROMOTED, step=3, message="promoted: v2 takes all traffic"),
    RolloutState(2, 1, "d", Phase.FAILED, failures={"errors": 2},
                 verdicts={"errors": Verdict.FAILED, "slow": Verdict.SUCCESSFUL}),
    RolloutState(2, 1, "d", Phase.ABORTED, consumed="abort@2", message="aborted: ünïcode ✓"),
]  # fmt: skip


@pytest.mark.parametrize("state", STATES)
def test_a_state_round_trips_through_one_tag(state: RolloutState) -> None:
    tags = state.to_storage()
    assert list(tags) == [STATE_TAG] and STATE_TAG.startswith(TAG_PREFIX)
    assert RolloutState.from_storage(tags) == state
    assert RolloutState.from_storage({**tags, "unrelated": "x", COMMAND_TAG: "abort@2"}) == state
    assert read({**tags, "team": "a"}).state == state


def test_the_stored_message_is_bounded() -> None:
    tags = RolloutState(2, 1, "d", message="x" * 5000).to_storage()
    back = RolloutState.from_storage(tags)
    assert back is not None and back.message == "x" * 1000


GOOD = json.loads(RolloutState(2, 1, "d").to_storage()[STATE_TAG])


def _with(**edits: object) -> dict[str, str]:
    return {STATE_TAG: json.dumps({**GOOD, **edits})}


@pytest.mark.parametrize(
    "garbage",
    [
        {},
        {"unrelated": "x"},
        {STATE_TAG: ""},
        {STATE_TAG: "{not json"},
        {STATE_TAG: "null"},
        {STATE_TAG: "42"},
        {STATE_TAG: '"a string"'},
        {STATE_TAG: "[1, 2, 3]"},
        {STATE_TAG: '{"canary": "x"}'},
        {STATE_TAG: "[" * 100_000},  # too deep for the JSON parser
        _with(canary="two"),
        _with(stable=None),
        _with(phase="Sideways"),
        _with(step=[0]),
        _with(stepStarted="yesterday"),
        _with(failures=["errors"]),
        _with(failures={"errors": "many"}),
        _with(verdicts={"errors": "Maybe"}),
        _with(verdicts=None),
        _with(measuredAt={}),
        {STATE_TAG: json.dumps({k: v for k, v in GOOD.items() if k != "digest"})},
    ],
)
def test_tags_that_hold_no_readable_state_are_none(garbage: dict[str, str]) -> None:
    assert RolloutState.from_storage(garbage) is None
    stored = read(garbage)
    assert stored.state is None
    assert dict(stored.tags) == {k: v for k, v in garbage.items() if k.startswith(TAG_PREFIX)}


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({}, Stored()),
        ({"team": "a", "agentctl.io/owner": "agentctl"}, Stored()),
        (
            {COMMAND_TAG: "promote@2:0", "team": "a"},
            Stored({COMMAND_TAG: "promote@2:0"}, None, Command("promote", 2, step=0)),
        ),
        (
            {COMMAND_TAG: "nonsense"},
            Stored({COMMAND_TAG: "nonsense"}, None, None),
        ),
        (
            {**STATES[2].to_storage(), COMMAND_TAG: "abort@7", "team": "a"},
            Stored(
                {COMMAND_TAG: "abort@7", **STATES[2].to_storage()},
                STATES[2],
                Command("abort", 7),
            ),
        ),
        (
            {TAG_PREFIX + "legacy": "x", **STATES[0].to_storage()},
            Stored({TAG_PREFIX + "legacy": "x", **STATES[0].to_storage()}, STATES[0], None),
        ),
    ],
)
def test_read_takes_the_rollouts_tags_its_state_and_command(
    tags: dict[str, str], expected: Stored
) -> None:
    stored = read(tags)
    assert stored == expected
    assert list(stored.tags) == sorted(stored.tags)  # as the plan shows them
    assert stored.record == {k: v for k, v in stored.tags.items() if k != COMMAND_TAG}


def test_the_command_tag_is_part_of_the_rollouts_record() -> None:
    assert COMMAND_TAG.startswith(TAG_PREFIX) and COMMAND_TAG != STATE_TAG
