"""dev -> staging -> prod through the one reconcile, against the in-memory registry: the first
environment logs from source, each later one copies the version the one before serves once the
step's gates hold (evaluation verdict, soak, approval), nothing twice; prune never reaches
another environment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.environment.history import history
from controller.core.environment.overlay import environment_named, in_environment
from controller.core.environment.record import (
    PROMOTED_FROM_TAG,
    aliased_at_tag,
    approval_tags,
    iso,
)
from controller.core.evaluation.record import Recorded
from controller.core.manifest.desired import Desired
from controller.core.plan.changes import Kind
from controller.core.render.history import render_history
from controller.core.rollout.gates import Measurement
from controller.engine.loader import load
from tests.support.engine import reconcile
from tests.support.environment_manifests import DEV, PROD, STAGING, write_env_repo
from tests.support.fake_registry import FakeRegistry
from tests.support.prompt_manifests import BOUND_AGENT, TEXT_PROMPT, write_prompt_repo
from tests.support.sources import Source

NOW = 1_800_000_000.0
HOUR = 3600.0


def _env(root: Path, name: str) -> Desired:
    desired, _ = load(root)
    env = environment_named(desired, name)
    assert env is not None
    moved, diags = in_environment(desired, env)
    assert diags == []
    return moved


def _apply(root: Path, reg: FakeRegistry, env: str, now: float = NOW, **kw):  # type: ignore[no-untyped-def]
    return reconcile(_env(root, env), reg, apply=True, wall=lambda: now, **kw)


def _passed(reg: FakeRegistry, model: str, version: int) -> None:
    for k, v in Recorded("sha256:e", True, "run1", {"score": 1.0}).tags().items():
        reg.set_version_tag(model, version, k, v)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, FakeRegistry]:
    return write_env_repo(tmp_path, DEV, STAGING, PROD), FakeRegistry()


def test_dev_logs_from_source_into_its_own_model(world: tuple[Path, FakeRegistry]) -> None:
    root, reg = world
    result = _apply(root, reg, "dev")
    assert result.changeset is not None
    assert set(reg.models) == {"bot-dev"}
    assert reg.models["bot-dev"].tags["agentctl.io/environment"] == "dev"
    assert reg.models["bot-dev"].aliases == {"champion": 1}
    # The alias move is recorded on the version, at the reconcile's wall time.
    assert reg.models["bot-dev"].versions[1].tags[aliased_at_tag("champion")] == iso(NOW)


def test_staging_waits_for_the_verdict_and_the_soak_then_copies_once(
    world: tuple[Path, FakeRegistry],
) -> None:
    root, reg = world
    _apply(root, reg, "dev")
    waiting = _apply(root, reg, "staging", NOW + HOUR)
    [step] = waiting.plan.promotions
    assert (step.candidate, step.ready) == (1, False)
    assert [g.name for g in step.open_gates] == ["evaluation"]
    assert "no evaluation verdict recorded on models:/bot-dev/1" in step.summary()
    assert not [c for c in waiting.plan.changes if c.kind is Kind.MODEL_VERSION]
    assert not waiting.plan.reached
    _passed(reg, "bot-dev", 1)
    soaking = _apply(root, reg, "staging", NOW + 10 * 60)  # 10 minutes of 30
    [step] = soaking.plan.promotions
    assert [g.name for g in step.open_gates] == ["soak"]
    assert soaking.requeue_after == pytest.approx(20 * 60, abs=1)
    done = _apply(root, reg, "staging", NOW + HOUR)
    assert done.changeset is not None
    staging = reg.models["bot-staging"]
    assert staging.aliases == {"champion": 1}
    copy = staging.versions[1]
    assert copy.source == "models:/bot-dev/1"
    assert copy.tags[PROMOTED_FROM_TAG] == "models:/bot-dev/1"
    assert copy.tags["agentctl.io/eval-verdict"] == "passed"  # the verdict carried
    assert staging.tags["tier"] == "silver"  # staging overlays the model tags
    # dev's record of its own alias move is not carried: staging has its own.
    assert copy.tags[aliased_at_tag("champion")] == iso(NOW + HOUR)
    reg.writes.clear()
    again = _apply(root, reg, "staging", NOW + 2 * HOUR)
    assert (again.plan.changes, reg.writes) == ((), [])
    assert again.plan.reached


def test_prod_waits_for_an_approval_of_that_very_version(world: tuple[Path, FakeRegistry]) -> None:
    root, reg = world
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    logged = reg.models["bot-dev"].versions[1]
    reg.models["bot-dev"].versions[1] = replace(logged, source="models:/m-abc")
    _apply(root, reg, "staging", NOW + HOUR)
    waiting = _apply(root, reg, "prod", NOW + 2 * HOUR)
    [step] = waiting.plan.promotions
    assert [g.detail for g in step.open_gates] == [
        "waiting for approval (agentctl approve bot --env prod --version 1)"
    ]
    assert reg.models["main.prod.bot"].versions == {}
    for k, v in approval_tags("prod", False, "bob", NOW).items():
        reg.set_version_tag("bot-staging", 1, k, v)
    rejected = _apply(root, reg, "prod", NOW + 2 * HOUR)
    assert rejected.plan.promotions[0].open_gates[0].detail.startswith("rejected by bob at ")
    for k, v in approval_tags("prod", True, "alice", NOW).items():
        reg.set_version_tag("bot-staging", 1, k, v)
    _apply(root, reg, "prod", NOW + 2 * HOUR)
    prod = reg.models["main.prod.bot"]
    assert prod.aliases == {"champion": 1}
    assert prod.versions[1].source == "models:/bot-staging/1"
    # Traces and gc find the logged model behind a copy of a copy.
    assert prod.versions[1].model_id == reg.models["bot-staging"].versions[1].model_id == "m-abc"
    assert prod.description == "The bot, in production."

    # A newer version comes through staging: the approval of 1 does not let 2 in, and prod
    # keeps serving 1 meanwhile.
    (root / "config.yaml").write_text("greeting: hello\n")
    _apply(root, reg, "dev", NOW + 3 * HOUR)
    _passed(reg, "bot-dev", 2)
    _apply(root, reg, "staging", NOW + 5 * HOUR)
    assert reg.models["bot-staging"].aliases == {"champion": 2}
    held = _apply(root, reg, "prod", NOW + 5 * HOUR)
    [step] = held.plan.promotions
    assert (step.candidate, step.kept, step.ready) == (2, 1, False)
    assert prod.aliases == {"champion": 1} and set(prod.versions) == {1}


def test_prune_in_one_environment_never_reaches_another(world: tuple[Path, FakeRegistry]) -> None:
    root, reg = world
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    _apply(root, reg, "staging", NOW + HOUR)
    pruned = _apply(root, reg, "staging", NOW + HOUR, prune=True)
    assert pruned.plan.changes == ()
    assert not [w for w in pruned.plan.diagnostics.warnings if "no manifest declares" in w.message]
    assert set(reg.models) == {"bot-dev", "bot-staging"}


def test_history_shows_the_whole_path(world: tuple[Path, FakeRegistry]) -> None:
    root, reg = world
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    _apply(root, reg, "staging", NOW + HOUR)
    for k, v in approval_tags("prod", True, "alice", NOW + 2 * HOUR).items():
        reg.set_version_tag("bot-staging", 1, k, v)
    _apply(root, reg, "prod", NOW + 3 * HOUR)
    desired, _ = load(root)
    trail = history(desired, reg.observe(), "bot")
    assert [
        (v.env, v.model, v.version, v.promoted_from, v.verdict, v.aliases) for v in trail.versions
    ] == [
        ("dev", "bot-dev", 1, "", "passed", ("champion",)),
        ("staging", "bot-staging", 1, "models:/bot-dev/1", "passed", ("champion",)),
        ("prod", "main.prod.bot", 1, "models:/bot-staging/1", "passed", ("champion",)),
    ]
    assert trail.versions[1].approvals == (("prod", "approved", "alice", NOW + 2 * HOUR),)
    timed = [(e.at, e.env, e.text) for e in trail.events if e.at is not None]
    assert timed == [
        (NOW, "dev", "bot-dev@champion -> 1"),
        (NOW + HOUR, "staging", "bot-staging@champion -> 1"),
        (NOW + 2 * HOUR, "staging", "bot-staging/1 approved for prod by alice"),
        (NOW + 3 * HOUR, "prod", "main.prod.bot@champion -> 1"),
    ]
    [prod] = history(desired, reg.observe(), "bot", "prod").versions
    assert prod.model == "main.prod.bot"
    assert prod.approvals == (("prod", "approved", "alice", NOW + 2 * HOUR),), "what let it in"
    text = render_history(trail, "markdown")
    assert "| staging | bot-staging/1 |" in text and "approved for prod by alice" in text
    assert f"| {trail.versions[0].digest[:19]} |" in text


SOAKED_GATES = STAGING.replace(
    "    soak: 30m\n",
    "    soak: 30m\n    analysis:\n      - name: errors\n        metric: errorRate\n"
    "        source: traces\n        max: 0.1\n        minSamples: 5\n",
)


@pytest.mark.parametrize(
    ("measured", "promoted", "says"),
    [
        (
            Measurement(0.5, 20),
            False,
            "analysis errors: failed: 0.5 > 0.1 (errorRate 0.5 from 20 samples)",
        ),
        (
            Measurement(0.0, 2),
            False,
            "analysis errors: inconclusive: errorRate 0 from 2 samples, 5 needed",
        ),
        (Measurement(0.02, 20), True, ""),
    ],
)
def test_analysis_gates_are_measured_on_the_candidate_in_the_environment_before(
    tmp_path: Path, measured: Measurement, promoted: bool, says: str
) -> None:
    root = write_env_repo(tmp_path, DEV, SOAKED_GATES, PROD)
    reg = FakeRegistry()
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    # A plan measures nothing: the gate waits for apply (or the controller).
    dry = reconcile(_env(root, "staging"), reg, apply=False, wall=lambda: NOW + HOUR)
    assert "not measured by a plan" in dry.plan.promotions[0].summary()
    assert not [c for c in dry.plan.changes if c.kind is Kind.MODEL_VERSION]
    traces = Source(measured)
    result = _apply(root, reg, "staging", NOW + HOUR, providers={"traces": traces})
    [q] = traces.asked
    assert (q.model, q.version, q.metric, q.since) == ("bot-dev", 1, "errorRate", NOW)
    assert (1 in reg.models["bot-staging"].versions) is promoted
    if says:
        assert f"{says}" in result.plan.promotions[0].summary()


def test_a_model_made_again_upstream_does_not_pass_for_a_copy_made_before(
    world: tuple[Path, FakeRegistry],
) -> None:
    """bot-dev deleted and made again: its version 1 is other content; staging checks the gates
    for it (it is not the bot-dev/1 it copied before)."""
    root, reg = world
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    _apply(root, reg, "staging", NOW + HOUR)
    del reg.models["bot-dev"]
    (root / "config.yaml").write_text("greeting: hello\n")
    _apply(root, reg, "dev", NOW + 2 * HOUR)
    result = _apply(root, reg, "staging", NOW + 2 * HOUR + 5)
    [step] = result.plan.promotions
    assert (step.candidate, step.copied, step.ready) == (1, None, False)
    assert [g.name for g in step.open_gates] == ["evaluation", "soak"]
    assert set(reg.models["bot-staging"].versions) == {1}


def test_while_a_candidate_waits_the_environment_keeps_what_it_serves_not_its_newest_copy(
    world: tuple[Path, FakeRegistry],
) -> None:
    root, reg = world
    (root / "envs.yaml").write_text("---\n".join([DEV, STAGING.replace("30m", "0s"), PROD]))
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    _apply(root, reg, "staging")
    (root / "config.yaml").write_text("greeting: hello\n")  # B
    _apply(root, reg, "dev", NOW + 10)
    _passed(reg, "bot-dev", 2)
    _apply(root, reg, "staging", NOW + 20)
    assert reg.models["bot-staging"].aliases == {"champion": 2}
    (root / "config.yaml").write_text("greeting: hi\n")  # back to A: dev's champion is 1 again
    _apply(root, reg, "dev", NOW + 30)
    assert reg.models["bot-dev"].aliases == {"champion": 1}
    back = _apply(root, reg, "staging", NOW + 40)
    assert reg.models["bot-staging"].aliases == {"champion": 1}  # A came back through its gates
    assert back.plan.promotions[0].ready
    # C waits for its verdict: staging keeps what it serves (1), not its newest copy (2).
    (root / "config.yaml").write_text("greeting: good day\n")
    _apply(root, reg, "dev", NOW + 50)
    held = _apply(root, reg, "staging", NOW + 60)
    [step] = held.plan.promotions
    assert (step.candidate, step.kept, step.ready) == (3, 1, False)
    assert reg.models["bot-staging"].aliases == {"champion": 1}


def test_a_rejected_version_does_not_come_back_into_prod(world: tuple[Path, FakeRegistry]) -> None:
    root, reg = world
    (root / "envs.yaml").write_text("---\n".join([DEV, STAGING.replace("30m", "0s"), PROD]))
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    _apply(root, reg, "staging")
    for k, v in approval_tags("prod", True, "alice", NOW).items():
        reg.set_version_tag("bot-staging", 1, k, v)
    _apply(root, reg, "prod")
    (root / "config.yaml").write_text("greeting: hello\n")
    _apply(root, reg, "dev", NOW + 10)
    _passed(reg, "bot-dev", 2)
    _apply(root, reg, "staging", NOW + 20)
    for k, v in approval_tags("prod", True, "alice", NOW).items():
        reg.set_version_tag("bot-staging", 2, k, v)
    _apply(root, reg, "prod", NOW + 30)
    assert reg.models["main.prod.bot"].aliases == {"champion": 2}
    # Staging's 1 is rejected for prod afterwards; dev goes back to it.
    for k, v in approval_tags("prod", False, "bob", NOW + 40).items():
        reg.set_version_tag("bot-staging", 1, k, v)
    (root / "config.yaml").write_text("greeting: hi\n")
    _apply(root, reg, "dev", NOW + 50)
    _apply(root, reg, "staging", NOW + 60)
    assert reg.models["bot-staging"].aliases == {"champion": 1}
    held = _apply(root, reg, "prod", NOW + 70)
    assert reg.models["main.prod.bot"].aliases == {"champion": 2}
    assert held.plan.promotions[0].open_gates[0].detail.startswith("rejected by bob")


def test_a_prompt_bound_agent_is_copied_once_whatever_its_prompt_does_upstream(
    tmp_path: Path,
) -> None:
    """The copy carries the pins it was logged with: a prompt edit in dev is not bound into
    staging's candidate again (which made a second copy of the same version)."""
    prompt = TEXT_PROMPT.replace("  versions: [current, 3]\n", "").replace("    stable: 3\n", "")
    root = write_prompt_repo(tmp_path, prompt, agent=BOUND_AGENT)
    (root / "envs.yaml").write_text("---\n".join([DEV, STAGING.replace("30m", "0s")]))
    reg = FakeRegistry()
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    _apply(root, reg, "staging")
    assert set(reg.models["bot-staging"].versions) == {1}
    (root / "prompts" / "support-system.txt").write_text(
        "Be brief with {{customer}}: {{question}}\n"
    )
    _apply(root, reg, "dev", NOW + 10)  # prompt version 2, bot-dev/2 (not evaluated)
    assert reg.models["bot-dev"].aliases == {"champion": 2}
    reg.writes.clear()
    held = _apply(root, reg, "staging", NOW + 20)
    assert [g.name for g in held.plan.promotions[0].open_gates] == ["evaluation"]
    assert not [c for c in held.plan.changes if c.kind is Kind.MODEL_VERSION]
    assert set(reg.models["bot-staging"].versions) == {1}


def test_a_model_of_an_environment_no_longer_declared_is_reported(
    world: tuple[Path, FakeRegistry],
) -> None:
    root, reg = world
    reg.create_model("bot-qa", None, {"agentctl.io/owner": "agentctl", "agentctl.io/agent": "bot",
                                      "agentctl.io/environment": "qa"})  # fmt: skip
    result = _apply(root, reg, "dev", prune=True)
    assert "bot-qa" in reg.models  # never pruned from another environment
    assert any(
        w.message.startswith("registered model 'bot-qa' is managed by 'agentctl' in "
                             "environment 'qa', which the manifests no longer declare")
        for w in result.plan.diagnostics.warnings
    )  # fmt: skip


def test_a_promotion_from_another_registry_copies_the_files_over_once(
    world: tuple[Path, FakeRegistry],
) -> None:
    """Staging lives in another registry than dev: the candidate is read there, the copy is
    made here from its files (a logged model of its own, where trace gates look), with the
    lineage that finds it again; nothing is written to dev's registry."""
    root, dev = world
    _apply(root, dev, "dev")
    _passed(dev, "bot-dev", 1)
    staging, at = FakeRegistry(), "http://dev.example (workspace d)"
    staging.peers[at] = dev
    soaked = NOW + HOUR
    planned = _apply(root, staging, "staging", soaked, upstream=(dev, at))
    [step] = planned.plan.promotions
    assert step.ready, step.summary()
    [copy] = [c for c in planned.plan.changes if c.kind is Kind.MODEL_VERSION]
    assert "promoted: copy models:/bot-dev/1 from http://dev.example (workspace d)" in copy.reason
    writes_to_dev = list(dev.writes)
    version = staging.models["bot-staging"].versions[1]
    assert version.source == "models:/m-imported-bot-staging-1"
    assert version.model_id == "m-imported-bot-staging-1"
    assert version.tags[PROMOTED_FROM_TAG] == "models:/bot-dev/1"
    assert version.tags["agentctl.io/promoted-from-registry"] == at
    assert version.tags["agentctl.io/eval-verdict"] == "passed"
    assert staging.models["bot-staging"].aliases == {"champion": 1}
    again = _apply(root, staging, "staging", soaked + 1, upstream=(dev, at))
    assert not again.plan.has_changes, [c.reason for c in again.plan.changes]
    assert dev.writes == writes_to_dev, "the environment before is only read"
    missing = _apply(root, FakeRegistry(), "staging", soaked, upstream=(FakeRegistry(), at))
    [step] = missing.plan.promotions
    assert f"registered model 'bot-dev' in {at} does not exist yet" in step.summary()


def test_a_model_that_joins_a_later_environment_keeps_what_it_serves(tmp_path: Path) -> None:
    """A registered model logged and served before environments existed, named by a later one
    (registeredModel: "{agent}"): until a version is promoted in, it keeps its version and
    alias (nothing deleted without --prune), and only gains its environment tag."""
    from tests.support.manifests import GOOD, write_repo

    root = write_repo(tmp_path, GOOD)
    reg = FakeRegistry()
    desired, _ = load(root)
    reconcile(desired, reg, apply=True, wall=lambda: NOW)
    assert reg.models["bot"].aliases == {"champion": 1}
    prod = PROD.replace("registeredModel: main.prod.{agent}", 'registeredModel: "{agent}"')
    write_env_repo(tmp_path, DEV, STAGING, prod)
    joined = _apply(root, reg, "prod", NOW + 100)
    assert [(c.kind, c.action.value) for c in joined.plan.changes] == [
        (Kind.REGISTERED_MODEL, "update")
    ], [c.reason for c in joined.plan.changes]
    assert reg.models["bot"].aliases == {"champion": 1}
    assert reg.models["bot"].tags["agentctl.io/environment"] == "prod"


def test_prod_keeps_the_version_it_serves_when_from_names_another_alias(tmp_path: Path) -> None:
    """promotion.from: stable (an alias only staging holds): after A, B and back to A, prod
    serves A; a new candidate C waiting for approval leaves it there (not the newest copy)."""
    staging = STAGING.replace("    soak: 30m\n", "    soak: 0s\n").replace(
        "      tags: {tier: silver}", "      tags: {tier: silver}\n      aliases: {stable: current}"
    )
    prod = PROD.replace("promotion: {approval: true}", "promotion: {from: stable, approval: true}")
    root = write_env_repo(tmp_path, DEV, staging, prod)
    reg = FakeRegistry()
    t = NOW

    def cycle(greeting: str, approve: bool = True) -> None:
        nonlocal t
        (root / "config.yaml").write_text(f"greeting: {greeting}\n")
        t += 10
        _apply(root, reg, "dev", t)
        _passed(reg, "bot-dev", reg.models["bot-dev"].aliases["champion"])
        t += 10
        _apply(root, reg, "staging", t)
        stable = reg.models["bot-staging"].aliases["stable"]
        if approve:
            for k, v in approval_tags("prod", True, "alice", t).items():
                reg.set_version_tag("bot-staging", stable, k, v)
        t += 10
        _apply(root, reg, "prod", t)

    cycle("hi")
    cycle("hello")
    cycle("hi")
    assert reg.models["main.prod.bot"].aliases == {"champion": 1}
    cycle("good day", approve=False)
    assert reg.models["main.prod.bot"].aliases == {"champion": 1}


def test_a_rejection_after_the_version_came_in_is_reported_and_waits_for_nothing(
    world: tuple[Path, FakeRegistry],
) -> None:
    root, reg = world
    write_env_repo(root, DEV, STAGING.replace("30m", "0s"), PROD)
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    _apply(root, reg, "staging", NOW + 10)
    for k, v in approval_tags("prod", True, "alice", NOW).items():
        reg.set_version_tag("bot-staging", 1, k, v)
    _apply(root, reg, "prod", NOW + 20)
    for k, v in approval_tags("prod", False, "bob", NOW + 30).items():
        reg.set_version_tag("bot-staging", 1, k, v)
    after = _apply(root, reg, "prod", NOW + 40)
    [step] = after.plan.promotions
    assert reg.models["main.prod.bot"].aliases == {"champion": 1}
    assert after.plan.reached and not after.plan.waiting, "nothing to wait for"
    assert "is in prod as version 1 (since then: approval: rejected by bob" in step.summary()
    assert "`agentctl rollback` to leave it" in step.summary()


def test_the_controller_promotes_from_an_environment_in_another_registry(
    world: tuple[Path, FakeRegistry],
) -> None:
    """The controller of an environment whose environment before lives elsewhere reads the
    candidate there (as apply does), not in its own registry."""
    from controller.engine.loop import Controller
    from controller.engine.reconcile import Backends

    root, dev = world
    _apply(root, dev, "dev")
    _passed(dev, "bot-dev", 1)
    staging, at = FakeRegistry(), "http://dev.example"
    staging.peers[at] = dev
    ctl = Controller(
        lambda: _env(root, "staging"), staging, wall=lambda: NOW + HOUR,
        before=Backends(staging, upstream=dev, upstream_location=at),
    )  # fmt: skip
    ctl.reconcile("start")
    version = staging.models["bot-staging"].versions[1]
    assert version.tags["agentctl.io/promoted-from-registry"] == at
    assert staging.models["bot-staging"].aliases == {"champion": 1}


class _LostAnswer(FakeRegistry):
    """A copy that commits but whose answer is lost (a gateway timeout after the write), and
    that a lookup right after does not see yet."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0
        self.hidden: set[tuple[str, int]] = set()

    def copy_version(self, name, source, tags, from_registry=None):  # type: ignore[no-untyped-def]
        made = super().copy_version(name, source, tags, from_registry)
        if self.lost == 0:
            self.lost += 1
            self.hidden.add((name, made))
            from controller.core.errors import OutcomeUnknown

            raise OutcomeUnknown("504 gateway timeout", operation="create model version")
        return made

    def find_version(self, name, digest):  # type: ignore[no-untyped-def]
        found = super().find_version(name, digest)
        hidden, self.hidden = self.hidden, set()
        return None if (name, found) in hidden else found


def test_a_copy_whose_answer_was_lost_is_not_kept_twice(tmp_path: Path) -> None:
    from controller.engine.retry import RetryPolicy

    root = write_env_repo(tmp_path, DEV, STAGING.replace("30m", "0s"), PROD)
    reg = _LostAnswer()
    _apply(root, reg, "dev")
    _passed(reg, "bot-dev", 1)
    policy = RetryPolicy(sleep=lambda s: None, settle=0.0)
    _apply(root, reg, "staging", NOW + 10, policy=policy)
    assert set(reg.models["bot-staging"].versions) == {1}, "the second copy is deleted"
    assert reg.models["bot-staging"].aliases == {"champion": 1}
