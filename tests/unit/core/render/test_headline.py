"""The plan's headline counts what is pending: never "No changes" while a warning says an agent
is still served or registered, or a failed rollout holds an agent short of its manifest."""

from __future__ import annotations

import json

from controller.core.diagnostics import Diagnostic, Diagnostics, Severity
from controller.core.manifest.schema import Rollout
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


def spec(*steps: dict[str, object]) -> Rollout:
    return Rollout.model_validate(
        {"canary": {"alias": "challenger"}, "promoteAlias": "champion", "steps": list(steps)}
    )


TIMED = spec({"weight": 20, "pause": "60s"}, {"weight": 100})
UNTIL_PROMOTED = spec({"weight": 20}, {"weight": 100})


def running(phase: Phase, message: str, *, wait: float | None = None, step: int = 0) -> Running:
    state = RolloutState(canary=3, stable=2, digest="d", phase=phase, step=step, message=message)
    weights = {2: 100} if phase.done else {2: 80, 3: 20}
    return Running("champion", 2, weights, state, Stored(), message, active=not phase.done,
                   wait=wait)  # fmt: skip


def test_failed_aborted_and_paused_until_promoted_are_held_the_rest_is_in_progress() -> None:
    progress = {
        "a": running(
            Phase.FAILED, "rolled back: error_rate 0.31 > 0.05 (1 failed measurement(s), limit 1)"
        ),
        "b": running(Phase.PROGRESSING, "step 1/2: 20% for 60 s", wait=40.0),
        "c": running(Phase.ABORTED, "aborted: all traffic to stable"),
        "d": running(Phase.PROMOTED, "promoted", step=1),
        "e": running(Phase.PAUSED, "paused until promoted"),
        "f": running(Phase.PAUSED, "inconclusive: errors not yet conclusive"),
    }
    specs = {"a": TIMED, "b": TIMED, "c": TIMED, "d": TIMED, "e": UNTIL_PROMOTED, "f": TIMED}
    reported = held_rollouts(progress, "abcdef", specs)
    assert [(h.agent, h.phase, h.step, h.attention) for h in reported] == [
        ("a", "Failed", 1, True),
        ("b", "Progressing", 1, False),
        ("c", "Aborted", 1, True),
        ("e", "Paused", 1, True),
        ("f", "Progressing", 1, False),
    ]  # d: promoted and done, the manifest's state reached
    assert reported[0].why == "error_rate 0.31 > 0.05 (1 failed measurement(s), limit 1)"
    assert reported[3].message == (
        "rollout of version 3 paused at step 1/2 (20 %): run `agentctl promote e` to continue, "
        "or `agentctl rollout abort e`"
    )
    assert reported[1].brief == "step 1/2, 20 %, next step in 40 s"
    assert reported[4].brief == (
        "step 1/2, 20 %, next step when its gates pass (inconclusive: errors not yet conclusive)"
    )
    assert held_rollouts(progress, ["b"], {}) == ()  # no spec.rollout any more: nothing to say


def test_a_rollout_paused_until_promoted_is_not_no_changes_and_exits_2() -> None:
    (paused,) = held_rollouts({"echo": running(Phase.PAUSED, "paused until promoted")},
                              ["echo"], {"echo": UNTIL_PROMOTED})  # fmt: skip
    p = Plan("me", agents=("echo",), held=(paused,))
    assert not p.reached
    assert render_plan(p, "text").splitlines() == [
        "No changes to apply, but 1 agent needs attention:",
        "  ! echo: rollout of version 3 paused at step 1/2 (20 %): run `agentctl promote echo` "
        "to continue, or `agentctl rollout abort echo`",
    ]
    data = json.loads(render_plan(p, "json"))
    assert [h["phase"] for h in data["held_rollouts"]] == ["Paused"]
    assert Plan.from_dict(data) == p


def test_a_rollout_in_progress_is_pending_work_not_no_changes() -> None:
    (going,) = held_rollouts({"echo": running(Phase.PROGRESSING, "step 1/2", wait=40.2)},
                             ["echo"], {"echo": TIMED})  # fmt: skip
    p = Plan("me", agents=("echo",), rolling=(going,))
    assert not p.reached
    assert headline(p) == (
        "No changes to apply now; 1 rollout in progress (echo: step 1/2, 20 %, next step in 40 s)."
    )
    md = render_plan(p, "markdown")
    assert "#### Rollouts in progress" in md and "No changes for" not in md
    data = json.loads(render_plan(p, "json"))
    assert data["held_rollouts"] == [] and data["rollouts_in_progress"][0]["wait_seconds"] == 40.2
    assert Plan.from_dict(data) == p


def test_markdown_does_not_list_an_agent_with_a_failed_rollout_as_no_changes() -> None:
    p = Plan("me", agents=("summarizer", "quiet"), held=(FAILED,))
    md = render_plan(p, "markdown")
    assert "No changes for: <code>quiet</code>." in md
    assert "<code>summarizer</code>: rollout of version 3 failed" in md
