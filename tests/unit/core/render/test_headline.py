"""The plan's headline counts what is pending: never "No changes" while a warning says an agent
is still served or registered, or a failed rollout holds an agent short of its manifest."""

from __future__ import annotations

import json

from controller.core.diagnostics import Diagnostic, Diagnostics, Severity
from controller.core.plan.changes import Plan
from controller.core.plan.held import HeldRollout, held_rollouts
from controller.core.render.formats import headline, render_plan
from controller.core.rollout.codec import Phase, RolloutState, Stored
from controller.core.rollout.progress import Running

FAILED = HeldRollout(
    "summarizer", canary=3, stable=2, phase="Failed", step=2, steps=3,
    why="error_rate 0.31 > 0.05 (2 failed measurement(s), limit 2)",
)  # fmt: skip
LEFT_OVER = Diagnostic(
    Severity.WARNING,
    "agent 'old' is served but no manifest declares it any more; apply with --prune to stop "
    "serving it",
    agent="old",
)


def test_nothing_pending_is_no_changes() -> None:
    assert headline(Plan("me")) == "No changes. The registry and serving match the manifests."
    assert render_plan(Plan("me"), "text") == headline(Plan("me"))
    assert Plan("me").reached and not Plan("me", held=(FAILED,)).reached


def test_a_left_over_agent_is_not_no_changes() -> None:
    p = Plan("me", diagnostics=Diagnostics.of([LEFT_OVER]))
    text = render_plan(p, "text")
    assert text.splitlines() == [
        "No changes to apply, but 1 agent needs attention:",
        "  ! old: " + LEFT_OVER.message,
    ]
    md = render_plan(p, "markdown")
    assert "**No changes to apply, but 1 agent needs attention:**" in md
    assert "No changes." not in md and "#### Needs attention" in md


def test_a_failed_rollout_is_shown_with_its_gate_figures_in_every_format() -> None:
    p = Plan("me", agents=("summarizer",), held=(FAILED,))
    assert not p.reached
    text = render_plan(p, "text")
    assert text.splitlines()[1] == (
        "  ! summarizer: rollout of version 3 failed at step 2/3 (error_rate 0.31 > 0.05 "
        "(2 failed measurement(s), limit 2)); traffic stays on version 2 until the canary or "
        "spec.rollout changes"
    )
    md = render_plan(p, "markdown")
    assert "rollout of version 3 failed at step 2/3" in md
    data = json.loads(render_plan(p, "json"))
    assert data["held_rollouts"][0]["canary"] == 3 and data["held_rollouts"][0]["phase"] == "Failed"
    assert Plan.from_dict(data).held == (FAILED,)


def test_changes_and_attention_are_both_counted() -> None:
    from controller.core.plan.planner import plan
    from tests.support.builders import agent, desired, snapshot

    changes = plan(desired(agent("a")), snapshot())
    p = Plan("me", changes=changes.changes, diagnostics=Diagnostics.of([LEFT_OVER]))
    assert headline(p).startswith("Plan: ") and headline(p).endswith(" 1 agent needs attention.")


def test_only_failed_or_aborted_rollouts_are_held() -> None:
    def running(phase: Phase, message: str) -> Running:
        state = RolloutState(canary=3, stable=2, digest="d", phase=phase, step=1, message=message)
        weights = {2: 100} if phase.done else {2: 80, 3: 20}
        return Running("champion", 2, weights, state, Stored(), message, active=not phase.done)

    progress = {
        "a": running(
            Phase.FAILED, "rolled back: error_rate 0.31 > 0.05 (1 failed measurement(s), limit 1)"
        ),
        "b": running(Phase.PROGRESSING, "step 2/3: 20%"),
        "c": running(Phase.ABORTED, "aborted: all traffic to stable"),
        "d": running(Phase.PROMOTED, "promoted"),
    }
    held = held_rollouts(progress, ["a", "b", "c", "d"], {"a": 3, "c": 3})
    assert [(h.agent, h.phase, h.step, h.why) for h in held] == [
        ("a", "Failed", 2, "error_rate 0.31 > 0.05 (1 failed measurement(s), limit 1)"),
        ("c", "Aborted", 2, "all traffic to stable"),
    ]
    assert held_rollouts(progress, ["b"], {}) == ()
