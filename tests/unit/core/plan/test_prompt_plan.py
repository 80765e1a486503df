"""The plan's prompt rows and what it says of prompts beside them: `--prune` deletes only the owned
undeclared prompts nothing uses (one a desired agent binds, or an aliased agent version is
pinned to, stays, with a warning that says why); an agent named as a prompt is an error; an
agent version pinned to a prompt version gone is reported."""

from __future__ import annotations

from dataclasses import replace

from controller.core.manifest.desired import DesiredPrompt
from controller.core.manifest.schema_prompt import PromptManifest
from controller.core.plan.changes import Action, Kind
from controller.core.plan.planner import plan
from controller.core.prompt.binding import PROMPTS_TAG, pins_of, pins_tag
from controller.core.prompt.content import PromptContent
from controller.core.state.observed import (
    DIGEST_TAG,
    OWNER_TAG,
    PROMPT_TAG,
    ObservedModel,
    ObservedVersion,
)
from tests.support.builders import agent, desired, model, snapshot


def _prompt(name: str = "support-system", owner: str = "agentctl") -> ObservedModel:
    return ObservedModel(name, "", {OWNER_TAG: owner, PROMPT_TAG: name}, {"production": 1},
                         {1: ObservedVersion(1)})  # fmt: skip


def _pinned_bot(alias: bool) -> ObservedModel:
    bot = model("bot", aliases={"champion": 2} if alias else {}, versions={1: None, 2: None})
    pin = {PROMPTS_TAG: pins_tag({"system": "prompts:/support-system/1"})}
    return replace(bot, versions={**bot.versions, 2: ObservedVersion(2, tags=pin)})


def _pruned(agents: tuple = (), models: tuple = (), prune: bool = True) -> tuple[list, list]:
    """The prompt's rows and warnings in the whole plan (the agents' rows decide what stays
    aliased)."""
    registry = replace(snapshot(*models), prompts={"support-system": _prompt()})
    p = plan(desired(*agents), registry, prune=prune)
    prunes = [(c.kind, c.model, c.action) for c in p.changes if c.model == "support-system"]
    return prunes, [d.message for d in p.diagnostics.warnings if d.agent == "support-system"]


PRUNED = [(Kind.PROMPT, "support-system", Action.DELETE)]
#: The bot serving its version 2, which is pinned to the prompt.
SERVING_2 = agent("bot", digest=None, versions=[2], aliases={"champion": 2})


def test_an_owned_prompt_nothing_uses_is_pruned() -> None:
    serving_1 = agent("bot", digest=None, versions=[1], aliases={"champion": 1})
    prunes, diags = _pruned(agents=(serving_1,), models=(_pinned_bot(alias=False),))
    assert (prunes, diags) == (PRUNED, [])
    # The version pinned to it gets an alias in this plan: it stays.
    assert _pruned(agents=(SERVING_2,), models=(_pinned_bot(alias=False),))[0] == []


def test_without_prune_it_is_a_warning() -> None:
    prunes, diags = _pruned(prune=False)
    assert prunes == []
    assert diags == ["prompt 'support-system' is managed by 'agentctl' but no manifest declares "
                     "it any more; apply with --prune to delete it"]  # fmt: skip


def test_a_prompt_a_desired_agent_binds_is_not_pruned() -> None:
    bound = agent("bot", prompts={"system": "support-system@production"})
    prunes, diags = _pruned(agents=(bound,))
    assert prunes == []
    assert diags == ["prompt 'support-system' is managed by 'agentctl' and no manifest declares "
                     "it any more, but it is not pruned: agent 'bot' binds it"]  # fmt: skip


def test_a_prompt_an_aliased_agent_version_is_pinned_to_is_not_pruned() -> None:
    prunes, diags = _pruned(agents=(SERVING_2,), models=(_pinned_bot(alias=True),))
    assert prunes == []
    assert diags == ["prompt 'support-system' is managed by 'agentctl' and no manifest declares "
                     "it any more, but it is not pruned: aliased versions are pinned to it "
                     "(bot/2)"]  # fmt: skip


def test_the_aliases_that_count_are_those_after_the_plan_so_one_apply_converges() -> None:
    # The pinned version loses its alias in this plan (the bot serves version 1 now)...
    serving_1 = agent("bot", digest=None, versions=[1], aliases={"champion": 1})
    assert _pruned(agents=(serving_1,), models=(_pinned_bot(alias=True),))[0] == PRUNED
    # ...or its model is pruned with it.
    assert _pruned(models=(_pinned_bot(alias=True),))[0] == PRUNED
    # Without --prune the model stays, aliased: so does the prompt.
    assert _pruned(models=(_pinned_bot(alias=True),), prune=False)[1][0].endswith("(bot/2)")


def test_another_owner_s_prompt_is_neither_pruned_nor_mentioned() -> None:
    registry = replace(snapshot(), prompts={"support-system": _prompt(owner="team-b")})
    p = plan(desired(), registry, prune=True)
    assert (p.changes, p.diagnostics.warnings) == ((), ())


def test_pins_round_trip_and_a_foreign_value_is_skipped_entry_by_entry() -> None:
    tag = pins_tag({"user": "prompts:/u/3", "system": "prompts:/support-system/12"})
    assert tag == "system=prompts:/support-system/12,user=prompts:/u/3"
    assert pins_of({PROMPTS_TAG: tag}) == {"system": ("support-system", 12), "user": ("u", 3)}
    assert pins_of({PROMPTS_TAG: "a=prompts:/p/x,b=models:/m/1,c=prompts:/q/2,=,"}) == {
        "c": ("q", 2)
    }
    assert pins_of({}) == {}


def test_an_agent_whose_registered_model_is_a_prompt_s_name_is_an_error_and_plans_nothing() -> None:
    registry = replace(snapshot(), prompts={"bot": _prompt("bot")})
    p = plan(desired(agent("bot"), agent("other", registeredModel="support-system")), registry)
    (err,) = p.diagnostics.errors
    assert (err.agent, err.field) == ("bot", "metadata.name")
    assert err.message.startswith("a prompt named 'bot' exists; prompts and models share one")
    assert {c.agent for c in p.changes} == {"other"}


def test_an_agent_version_pinned_to_a_prompt_version_gone_is_reported() -> None:
    """The bound digest is the prompt's content: a version logged against prompt version 1
    still matches when 1 was deleted and 2 holds the same content, so no new version is logged;
    the plan says so, and how to get one."""
    bound = agent("bot", prompts={"system": "support-system@production"})
    content = PromptContent("text", "Hi.").tags()
    prompt = replace(_prompt(), aliases={"production": 2},
                     versions={2: ObservedVersion(2, tags=content)})  # fmt: skip
    first = plan(desired(bound), replace(snapshot(), prompts={"support-system": prompt}))
    [new] = [c for c in first.changes if c.kind is Kind.MODEL_VERSION]
    digest = new.after.digest  # type: ignore[union-attr]
    pinned = {PROMPTS_TAG: pins_tag({"system": "prompts:/support-system/1"}), DIGEST_TAG: digest}
    bot = replace(
        model("bot", aliases={"champion": 1}), versions={1: ObservedVersion(1, tags=pinned)}
    )
    registry = replace(snapshot(bot), prompts={"support-system": prompt})
    p = plan(desired(bound), registry)
    assert not [c for c in p.changes if c.kind is Kind.MODEL_VERSION]
    [warning] = [w.message for w in p.diagnostics.warnings if w.agent == "bot"]
    assert warning.startswith("version 1 of 'bot' pins prompts:/support-system/1, which the "
                              "registry no longer has")  # fmt: skip
    ok = replace(prompt, versions={1: ObservedVersion(1, tags=content), **prompt.versions})
    again = plan(desired(bound), replace(snapshot(bot), prompts={"support-system": ok}))
    assert [w.agent for w in again.diagnostics.warnings] == ["support-system"]  # (not pruned)


def test_no_warning_when_the_whole_prompt_is_gone_and_the_apply_registers_it_again() -> None:
    manifest = PromptManifest.model_validate(
        {"apiVersion": "agentctl.io/v1alpha1", "kind": "Prompt",
         "metadata": {"name": "support-system"},
         "spec": {"template": "t.txt", "aliases": {"production": "current"}}}
    )  # fmt: skip
    declared = DesiredPrompt(manifest, "p.yaml", PromptContent("text", "Hi."), "t.txt")
    bound = agent("bot", prompts={"system": "support-system@production"})
    wanted = replace(desired(bound), prompts=(declared,))
    [new] = [c for c in plan(wanted, snapshot()).changes if c.kind is Kind.MODEL_VERSION]
    tags = {PROMPTS_TAG: pins_tag({"system": "prompts:/support-system/1"}),
            DIGEST_TAG: new.after.digest}  # type: ignore[union-attr]  # fmt: skip
    bot = replace(
        model("bot", aliases={"champion": 1}), versions={1: ObservedVersion(1, tags=tags)}
    )
    p = plan(wanted, snapshot(bot))  # the prompt is gone as a whole: registered again
    assert [c.kind for c in p.changes][:1] == [Kind.PROMPT]
    assert [w.message for w in p.diagnostics.warnings] == []
    # Gone but its version 1 only (2 holds the same content): the pin is broken.
    kept = ObservedModel("support-system", "", {OWNER_TAG: "agentctl", PROMPT_TAG: "support-system"},
                         {}, {2: ObservedVersion(2, tags=PromptContent("text", "Hi.").tags())})  # fmt: skip
    p = plan(wanted, replace(snapshot(bot), prompts={"support-system": kept}))
    assert [w.message[:49] for w in p.diagnostics.warnings] == [
        "version 1 of 'bot' pins prompts:/support-system/1"
    ]
