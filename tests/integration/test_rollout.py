"""Progressive delivery end to end: real model servers of the example support bot behind the
real router, the real MLflow server (registry, and the traces the served versions write), driven
by the installed `agentctl` while callers send requests.

- a healthy version walks every step and is promoted; the `agentctl apply --wait` carrying it
  is killed in the middle and a new one resumes at the same step;
- a version whose config makes it raise is rolled back by its trace gate before 50 %, and the
  callers' errors stay within what its weight let through;
- `abort` and `rollback` converge, and a second apply changes nothing.
"""

from __future__ import annotations

import json
import math
import os
import signal

import pytest

from tests.support import rollout_bench
from tests.support.local import LOCAL
from tests.support.rollout_bench import MANIFEST, Bench, Calls, new_version, rollout, until

pytestmark = pytest.mark.integration

bench = rollout_bench.bench


def test_a_healthy_version_walks_every_step_is_promoted_and_a_restart_resumes(
    bench: Bench,
) -> None:
    b = bench
    new_version(b, "v2 says hi.")
    gates = """\
        - name: errors
          metric: errorRate
          source: traces
          max: 0.1
          minSamples: 3
        - name: p95
          metric: latencyP95
          source: router
          max: 10000
          minSamples: 3
"""
    steps = """\
      - weight: 20
        pause: 12s
      - weight: 50
        pause: 12s
      - weight: 100
"""
    b.manifest.write_text(MANIFEST + rollout(steps, gates))
    calls = Calls()
    callers = b.call_while(calls)
    try:
        first = b.apply_wait("first")
        # Once at 50 % (step 2), kill it (no cleanup) and start another: it resumes there.
        state = until(
            lambda: (s := b.state()) is not None and s.step == 1 and s, 240, "the 50 % step"
        )
        until(lambda: b.weights() == {1: 50, 2: 50}, 10, "50 % of the traffic on v2")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        second = b.apply_wait("second")
        code = second.wait(300)
        text = b.log("second")
        assert code == 0, text
    finally:
        calls.stop.set()
        for t in callers:
            t.join(40)
    resumed = text.splitlines()
    rollout_lines = [
        line
        for line in resumed
        if line.startswith(("support-bot: rollout:", "support-bot.rollout:"))
    ]
    assert rollout_lines and "step 2/3: 50%" in rollout_lines[0], rollout_lines
    assert "step 1/3" not in text
    final = b.state()
    assert final is not None and final.phase.value == "Promoted" and final.digest == state.digest
    assert b.champion() == 2 and b.weights() == {2: 100}
    # Every gate was measured on the canary and passed; the callers saw no error.
    assert calls.errors() == 0, calls.by_version()
    assert set(calls.by_version()) == {"1", "2"}
    # The old version is stopped after the scale-down delay; a second apply changes nothing.
    again = b.apply()
    assert again.code == 0 and "No changes." in again.out, again.out + again.err
    status = b.agentctl("status", "support-bot", env=LOCAL)
    assert status.code == 0, status.err
    assert "Promoted" in status.out and "champion" in status.out, status.out


def test_a_failing_version_is_rolled_back_by_its_trace_gate_before_half_the_traffic(
    bench: Bench,
) -> None:
    b = bench
    # Questions about refunds raise in v2 (every caller asks one); log_model's own validation
    # question does not, so v2 registers.
    new_version(b, "v2 says hi.", 'fail_on: "refund"\n')
    gates = """\
        - name: errors
          metric: errorRate
          source: traces
          max: 0.1
          minSamples: 5
          failureLimit: 2
"""
    steps = """\
      - weight: 10
        pause: 90s
      - weight: 50
        pause: 30s
      - weight: 100
"""
    b.manifest.write_text(MANIFEST + rollout(steps, gates))
    calls = Calls()
    callers = b.call_while(calls)
    try:
        p = b.apply_wait("failing")
        code = p.wait(400)
    finally:
        calls.stop.set()
        for t in callers:
            t.join(40)
    text = b.log("failing")
    assert code == 1, text
    assert "the rollout of support-bot failed and was rolled back" in text
    state = b.state()
    assert state is not None and state.phase.value == "Failed", state
    assert state.step == 0 and "errors" in state.message, state
    assert b.champion() == 1 and b.weights() == {1: 100}
    assert "50%" not in text
    # Callers' errors: only requests the canary answered, about 10 % of those sent while it had
    # traffic (4 sigma above); none once it was rolled back.
    n = len(calls.seen)
    errors = calls.errors()
    canary = calls.by_version().get("2", 0)
    assert errors == canary and errors > 0, calls.by_version()
    assert errors <= n * 0.10 + 4 * math.sqrt(n * 0.10 * 0.90), (errors, n)
    # It stays rolled back: another apply changes nothing, and the plan says why.
    again = b.apply()
    assert again.code == 0, again.out + again.err
    assert again.out.startswith("No changes to apply, but 1 agent needs attention:"), again.out
    held = "  ! support-bot: rollout of version 2 failed at step 1/3 (errors "
    assert held in again.out and "traffic stays on version 1 until the canary" in again.out
    # plan: the manifest asks for v2, which the controller refuses to reach: exit 2, in every
    # format, with the gate's figures.
    plan = b.agentctl("plan", str(b.root), "--detailed-exitcode", env=LOCAL)
    assert plan.code == 2, plan.out + plan.err
    assert held in plan.out and "No changes." not in plan.out
    md = b.agentctl("plan", str(b.root), "-f", "markdown", "--detailed-exitcode", env=LOCAL)
    assert md.code == 2 and "#### Needs attention" in md.out
    assert "rollout of version 2 failed at step 1/3 (errors " in md.out
    js = b.agentctl("plan", str(b.root), "-f", "json", "--detailed-exitcode", env=LOCAL)
    assert js.code == 2, js.err
    (record,) = json.loads(js.out)["held_rollouts"]
    assert (record["agent"], record["canary"], record["stable"], record["phase"]) == (
        "support-bot",
        2,
        1,
        "Failed",
    )
    assert (
        record["step"] == 1 and record["why"].startswith("errors ") and " > 0.1 " in record["why"]
    )
    # The PR action plans with --target registry: the record is a registry tag, so it is shown
    # there too, with the same exit code.
    reg = b.agentctl("plan", str(b.root), "--target", "registry", "--detailed-exitcode")
    assert reg.code == 2, reg.out + reg.err
    assert held in reg.out and "No changes." not in reg.out
    status = b.agentctl("status", "support-bot", env=LOCAL)
    assert "Failed" in status.out and "rolled back: errors" in status.out, status.out


def test_abort_and_rollback_converge_and_a_second_apply_changes_nothing(bench: Bench) -> None:
    b = bench
    # Before any rollout: the error is about the missing record (not --to-version), and says
    # what to do instead.
    none = b.agentctl("rollback", "support-bot", "--to-version", "9", env=LOCAL)
    assert none.code == 1 and "support-bot has no recorded rollout" in none.err, none.err
    assert "(versions: 1)" in none.err and "`agentctl apply`" in none.err, none.err
    new_version(b, "v2 says hi.")
    hold = """\
      - weight: 30
      - weight: 100
"""
    b.manifest.write_text(MANIFEST + rollout(hold))
    assert b.apply().code == 0  # v2 registered, started beside v1 without traffic
    assert b.weights() == {1: 100, 2: 0}
    started = b.apply()
    assert started.code == 0, started.err
    assert b.weights() == {1: 70, 2: 30} and b.champion() == 1
    assert "paused until promoted" in started.out

    nothing = b.agentctl("abort", "summarizer", env=LOCAL)
    assert nothing.code == 1 and "agent 'summarizer'" in nothing.err
    assert ": support-bot" in nothing.err, nothing.err  # the agents there are
    aborted = b.agentctl("abort", "support-bot", env=LOCAL)
    assert aborted.code == 0, aborted.err
    assert b.apply().code == 0
    state = b.state()
    assert state is not None and state.phase.value == "Aborted"
    assert b.weights() == {1: 100} and b.champion() == 1
    again = b.apply()
    assert again.out.startswith("No changes to apply, but 1 agent needs attention:"), again.out
    assert "rollout of version 2 was aborted at step 1/2" in again.out, again.out

    # A new rollout (the steps changed), promoted by hand, then rolled back from history.
    b.manifest.write_text(
        MANIFEST + rollout("      - weight: 50\n      - weight: 100\n", delay="1s")
    )
    assert b.apply().code == 0
    assert b.weights() == {1: 50, 2: 50}
    promoted = b.agentctl("promote", "support-bot", env=LOCAL)
    assert promoted.code == 0, promoted.err
    done = b.apply("--wait", "--timeout", "120")
    assert done.code == 0, done.out + done.err
    assert b.champion() == 2 and b.weights() == {2: 100}
    rolled = b.agentctl("rollback", "support-bot", env=LOCAL)
    assert rolled.code == 0 and "roll back to v1" in rolled.out, rolled.out + rolled.err
    assert b.apply().code == 0
    assert b.champion() == 1 and b.weights() == {1: 100}
    after = b.apply().out
    assert "rollout of version 2 was aborted" in after and "(agentctl rollback)" in after, after
    bad = b.agentctl("rollback", "support-bot", "--to-version", "9", env=LOCAL)
    assert bad.code == 1 and "version 9" in bad.err

    # Git's way: the manifest back to v1's source converges to v1 with nothing left to do.
    b.config.write_text(b.config.read_text().replace("v2 says hi.", "Hi, this is the support bot."))
    b.manifest.write_text(MANIFEST)
    reverted = b.apply()
    assert reverted.code == 0, reverted.err
    assert b.champion() == 1 and b.weights() == {1: 100}
    assert "No changes." in b.apply().out


def test_a_paused_or_running_rollout_is_never_no_changes(bench: Bench) -> None:
    """A pause without a duration waits for `agentctl promote`: plan says so (every target, exit
    2); a timed pause is a rollout in progress, not "No changes" either."""
    b = bench
    new_version(b, "v2 says hi.")
    b.manifest.write_text(MANIFEST + rollout("      - weight: 20\n      - weight: 100\n"))
    for _ in range(2):  # register v2 (served at 0 %), then start the rollout: step 1, 20 %
        done = b.apply()
        assert done.code == 0, done.out + done.err
    assert b.weights() == {1: 80, 2: 20} and b.champion() == 1
    paused = (
        "  ! support-bot: rollout of version 2 paused at step 1/2 (20 %): run `agentctl "
        "promote support-bot` to continue, or `agentctl rollout abort support-bot`"
    )
    for target in ("local", "registry"):
        plan = b.agentctl("plan", str(b.root), "--target", target, "--detailed-exitcode",
                          env=LOCAL)  # fmt: skip
        assert plan.code == 2, plan.out + plan.err
        assert plan.out.startswith("No changes to apply, but 1 agent needs attention:"), plan.out
        assert paused in plan.out
    js = b.agentctl("plan", str(b.root), "-f", "json", env=LOCAL)
    assert [h["phase"] for h in json.loads(js.out)["held_rollouts"]] == ["Paused"]

    # The same canary with a long timed pause: a new rollout, under way by itself.
    b.manifest.write_text(
        MANIFEST + rollout("      - weight: 20\n        pause: 600s\n      - weight: 100\n")
    )
    assert b.apply().code == 0
    plan = b.agentctl("plan", str(b.root), "--target", "registry", "--detailed-exitcode")
    assert plan.code == 2, plan.out + plan.err
    assert plan.out.startswith(
        "No changes to apply now; 1 rollout in progress (support-bot: step 1/2, 20 %, next step in "
    ), plan.out
    assert "match the manifests" not in plan.out
