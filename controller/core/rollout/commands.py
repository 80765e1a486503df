"""Rollout commands: how ``agentctl promote / abort / rollback`` ask the controller to act. Pure
data.

The CLI never moves traffic itself (as in Argo Rollouts, it sets a request that the controller
acts on): it writes one registry tag on the agent's registered model, :data:`COMMAND_TAG`,
holding ``promote@<canary>:<step>``, ``abort@<canary>`` or ``rollback@<canary>=<version>``. A
command names the rollout it is for (its canary) and, a promote, the step it skips, so that a
stale one, or one acted on twice, does nothing: the controller records the last command it
acted on in the rollout's state and leaves the tag in place (deleting it could delete a newer
one written meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["COMMAND_TAG", "Command", "CommandKind"]

#: The registry tag through which the CLI asks; it sits under the rollout's tag prefix
#: (:data:`controller.core.rollout.codec.TAG_PREFIX`), so that clearing a rollout's record
#: clears it too.
COMMAND_TAG = "agentctl.io/rollout.command"

CommandKind = Literal["promote", "abort", "rollback"]


@dataclass(frozen=True, slots=True)
class Command:
    """A request from the CLI, read from :data:`COMMAND_TAG`."""

    kind: CommandKind
    canary: int  # the rollout it is for
    step: int | None = None  # promote: the step it skips
    version: int | None = None  # rollback: where traffic goes

    def to_tag(self) -> str:
        """The command as the tag's value (also what the state records once it is acted on)."""
        if self.kind == "promote":
            return f"promote@{self.canary}:{self.step}"
        if self.kind == "rollback":
            return f"rollback@{self.canary}={self.version}"
        return f"abort@{self.canary}"

    @classmethod
    def parse(cls, text: str | None) -> Command | None:
        """The command a tag's value holds; None if none, or if it is not one (it is then
        ignored, and cleared with the rollout's record)."""
        if not text:
            return None
        try:
            kind, _, rest = text.partition("@")
            if kind == "promote":
                canary, _, step = rest.partition(":")
                return cls("promote", int(canary), step=int(step))
            if kind == "rollback":
                canary, _, version = rest.partition("=")
                return cls("rollback", int(canary), version=int(version))
            if kind == "abort":
                return cls("abort", int(rest))
        except ValueError:
            return None
        return None

    def is_for(self, canary: int) -> bool:
        """Whether the command is for the rollout of ``canary``."""
        return self.canary == canary

    def skips(self, step: int) -> bool:
        """Whether the command is a promote of step ``step`` (a promote given for another step,
        one since left, does nothing)."""
        return self.kind == "promote" and self.step == step
