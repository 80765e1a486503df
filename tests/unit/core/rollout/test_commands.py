"""Rollout commands, table-driven: each command's tag and back; a tag that is not a command is
None; which rollout and step a command is for."""

from __future__ import annotations

import pytest

from controller.core.rollout.commands import Command

COMMANDS = [
    (Command("promote", 2, step=0), "promote@2:0"),
    (Command("promote", 12, step=3), "promote@12:3"),
    (Command("abort", 2), "abort@2"),
    (Command("rollback", 2, version=1), "rollback@2=1"),
    (Command("rollback", 5, version=9), "rollback@5=9"),
]


@pytest.mark.parametrize(("command", "tag"), COMMANDS)
def test_a_command_is_written_and_read_back(command: Command, tag: str) -> None:
    assert command.to_tag() == tag
    assert Command.parse(tag) == command


@pytest.mark.parametrize(
    "text",
    [
        None, "", "promote", "promote@", "promote@2", "promote@2:", "promote@x:1", "promote@2:x",
        "promote@2:1:3", "abort", "abort@", "abort@two", "rollback@2", "rollback@2=",
        "rollback@=1", "rollback@2=v1", "nuke@2", "Promote@2:0", "@2",
    ],
)  # fmt: skip
def test_what_is_not_a_command_is_none(text: str | None) -> None:
    assert Command.parse(text) is None


@pytest.mark.parametrize(
    ("command", "canary", "step", "is_for", "skips"),
    [
        (Command("promote", 2, step=0), 2, 0, True, True),
        (Command("promote", 2, step=0), 2, 1, True, False),  # a step since left
        (Command("promote", 2, step=0), 3, 0, False, True),  # another rollout's
        (Command("abort", 2), 2, 0, True, False),
        (Command("abort", 2), 3, 0, False, False),
        (Command("rollback", 2, version=1), 2, 0, True, False),
    ],
)
def test_which_rollout_and_step_a_command_is_for(
    command: Command, canary: int, step: int, is_for: bool, skips: bool
) -> None:
    assert command.is_for(canary) is is_for
    assert command.skips(step) is skips
