"""Saved plans: the file's codec (checksum, format version, malformed files), the fingerprints
of what a plan was made from, and applying a saved plan exactly or refusing a stale one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.core.errors import InvalidPlanFile, StalePlan
from controller.core.plan.saved import SavedPlan, checksum, from_json, to_json
from controller.core.state.fingerprint import fingerprint
from controller.core.state.observed import ServedVersion, ServingSnapshot
from controller.engine.loader import load
from controller.engine.retry import RetryPolicy
from controller.engine.saved import read_saved, save, write_saved
from tests.support.builders import D1, D2, model, snapshot
from tests.support.engine import apply_saved, reconcile
from tests.support.fake_registry import FakeRegistry
from tests.support.fake_serving import FakeServing
from tests.support.manifests import GOOD, write_repo
from tests.support.prompt_manifests import BOUND_AGENT, write_prompt_repo

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=lambda s: None)


def planned(tmp_path: Path, serving: FakeServing | None = None) -> tuple[SavedPlan, FakeRegistry]:
    """A saved plan of GOOD against an empty in-memory registry."""
    root = write_repo(tmp_path, GOOD)
    desired, _ = load(root)
    reg = FakeRegistry()
    result = reconcile(desired, reg, apply=False, serving=serving)
    assert result.made is not None
    saved = save(
        result.plan,
        result.made,
        path=root,
        allow_empty=False,
        target="local" if serving is not None else "registry",
        owner="agentctl",
        prune=False,
        tracking_uri="http://user:secret@127.0.0.1:5000",
    )
    return saved, reg


# -- the codec ------------------------------------------------------------------------------------


def test_a_saved_plan_reads_back_as_it_was_written(tmp_path: Path) -> None:
    saved, _ = planned(tmp_path)
    text = to_json(saved)
    data = json.loads(text)
    assert data["kind"] == "agentctl-saved-plan" and data["format_version"] == "1"
    assert data["checksum"] == checksum({k: v for k, v in data.items() if k != "checksum"})
    assert data["manifests"] == {"path": str(tmp_path), "root": str(tmp_path), "allow_empty": False}
    assert data["target"] == {"kind": "registry", "namespace": None}
    assert data["fingerprints"]["serving"] is None
    back = from_json(text)
    assert back == saved
    assert [c.address for c in back.plan.changes] == [
        "bot.registered_model",
        "bot.model_version.current",
        "bot.alias.champion",
    ]


def _rewrite(text: str, edit: Any, *, keep_checksum: bool = False) -> str:
    data = json.loads(text)
    edit(data)
    if not keep_checksum:
        data["checksum"] = checksum({k: v for k, v in data.items() if k != "checksum"})
    return json.dumps(data)


def _tag(data: dict[str, Any]) -> None:
    data["plan"]["changes"][0]["after"]["tags"]["agentctl.io/owner"] = "mallory"


BAD = [
    (
        "tampered",
        lambda t: _rewrite(t, _tag, keep_checksum=True),
        "was changed after it was written",
    ),
    (
        "tampered manifests path",
        lambda t: _rewrite(t, lambda d: d["manifests"].update(path="/etc"), keep_checksum=True),
        "its checksum does not match",
    ),
    (
        "other format version",
        lambda t: _rewrite(t, lambda d: d.update(format_version="2")),
        "is a saved plan of format version '2'; this agentctl reads format version '1'",
    ),
    (
        "no format version",
        lambda t: _rewrite(t, lambda d: d.pop("format_version")),
        "format version None",
    ),
    ("malformed JSON", lambda t: t[:-20], "is not valid JSON"),
    ("not an object", lambda t: "[1, 2]", "is not a saved plan"),
    ("a plain plan", lambda t: json.dumps(json.loads(t)["plan"]), "is not a saved plan"),
    (
        "no checksum",
        lambda t: _rewrite(t, lambda d: d.pop("checksum"), keep_checksum=True),
        "has no checksum",
    ),
    (
        "missing field",
        lambda t: _rewrite(t, lambda d: d["fingerprints"].pop("registry")),
        "is malformed: missing 'registry'",
    ),
    (
        "unknown target",
        lambda t: _rewrite(t, lambda d: d["target"].update(kind="mesh")),
        "is malformed: target 'mesh' is none of registry, local, kubernetes",
    ),
    (
        "a change that is not one",
        lambda t: _rewrite(t, lambda d: d["plan"]["changes"][2].update(after={"version": "2"})),
        "is malformed: expected an integer, not '2'",
    ),
    (
        "a plan of another format version",
        lambda t: _rewrite(t, lambda d: d["plan"].update(format_version="0")),
        "is malformed: plan format '0' is not '1'",
    ),
    (
        "a summary that does not add up",
        lambda t: _rewrite(t, lambda d: d["plan"]["summary"].update(add=0)),
        "its plan does not read back as it was written",
    ),
]


@pytest.mark.parametrize(("what", "spoil", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_file_that_is_not_a_sound_saved_plan_is_refused(
    tmp_path: Path, what: str, spoil: Any, message: str
) -> None:
    saved, _ = planned(tmp_path)
    with pytest.raises(InvalidPlanFile) as info:
        from_json(spoil(to_json(saved)))
    assert message in str(info.value), what


def test_reading_a_file_names_it(tmp_path: Path) -> None:
    saved, _ = planned(tmp_path)
    file = tmp_path / "plan.json"
    write_saved(file, saved)
    assert read_saved(file) == saved
    file.write_text("{")
    with pytest.raises(InvalidPlanFile, match=rf"^{file} is not valid JSON"):
        read_saved(file)
    with pytest.raises(InvalidPlanFile, match=r"no-such\.json: cannot be read"):
        read_saved(tmp_path / "no-such.json")


# -- fingerprints ---------------------------------------------------------------------------------


def test_fingerprints_are_stable_and_see_every_change_of_what_the_plan_depends_on() -> None:
    bot = model("bot", tags={"team": "a"}, aliases={"champion": 1}, versions={1: D1})
    other = model("other", versions={1: D2})
    base = fingerprint(snapshot(bot, other), only={"bot"})
    assert base == fingerprint(snapshot(other, bot), only={"bot"})  # order does not matter
    assert base.startswith("sha256:") and len(base) == 71
    # A change elsewhere in a shared registry leaves it as it is...
    assert fingerprint(snapshot(bot, model("other", versions={1: D1})), only={"bot"}) == base
    # ...any change of the model does not: a tag, an alias, a version, the model's existence.
    moved = replace(bot, aliases={"champion": 2})
    tagged = replace(bot, tags={**bot.tags, "team": "b"})
    more = model("bot", tags={"team": "a"}, aliases={"champion": 1}, versions={1: D1, 2: D2})
    for changed in (snapshot(moved, other), snapshot(tagged, other), snapshot(more, other),
                    snapshot(other)):  # fmt: skip
        assert fingerprint(changed, only={"bot"}) != base
    assert fingerprint(snapshot(other), only={"bot"}) != fingerprint(snapshot(), only={"nothing"})


def test_a_serving_fingerprint_sees_servers_and_routes() -> None:
    fake = FakeServing()
    fake.start_version("bot", "bot", 1)
    fake.set_weights("bot", "bot", {1: 100})
    served = fake.observe()
    base = fingerprint(served, only={"bot"})
    assert fingerprint(replace(served, endpoint="elsewhere"), only={"bot"}) == base
    agent = served.agents["bot"]
    for changed in (
        replace(agent, weights={1: 90}),
        replace(agent, versions={1: ServedVersion(1, "bot", ready=False)}),
        replace(agent, shadow=(1, 10)),
    ):
        assert fingerprint(ServingSnapshot({"bot": changed}), only={"bot"}) != base


def test_a_desired_fingerprint_sees_manifests_and_sources_not_where_they_lie(
    tmp_path: Path,
) -> None:
    one, _ = load(write_repo(tmp_path / "a", GOOD))
    two, _ = load(write_repo(tmp_path / "b", GOOD))
    assert fingerprint(one) == fingerprint(two)
    (tmp_path / "b" / "config.yaml").write_text("greeting: hello\n")
    assert fingerprint(load(tmp_path / "b")[0]) != fingerprint(one)
    (tmp_path / "a" / "bot.yaml").write_text(
        GOOD.replace("percent: 100", "percent: 100\n  tags: {x: y}")
    )
    assert fingerprint(load(tmp_path / "a")[0]) != fingerprint(one)


# -- applying -------------------------------------------------------------------------------------


def test_a_saved_plan_is_applied_exactly(tmp_path: Path) -> None:
    saved, reg = planned(tmp_path)
    desired, _ = load(tmp_path)
    changeset = apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)
    assert [e.address for e in changeset.entries] == [c.address for c in saved.plan.changes]
    assert reg.models["bot"].aliases == {"champion": 1}
    # Once applied, the registry is not what the plan was made from any more.
    with pytest.raises(StalePlan, match=r"plan\.json: stale plan: the registry changed"):
        apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)


def test_a_stale_plan_writes_nothing(tmp_path: Path) -> None:
    saved, reg = planned(tmp_path)
    reg.create_model("bot", None, {})  # someone got there first
    reg.writes.clear()
    desired, _ = load(tmp_path)
    with pytest.raises(StalePlan, match="the registry changed since the plan was made"):
        apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)
    assert reg.writes == []

    saved, reg = planned(tmp_path / "again")
    (tmp_path / "again" / "config.yaml").write_text("greeting: hello\n")
    desired, _ = load(tmp_path / "again")
    with pytest.raises(StalePlan, match=f"the manifests under {tmp_path / 'again'}"):
        apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)
    assert reg.writes == [] and reg.models == {}


def test_a_plan_with_serving_is_stale_when_what_is_served_changed(tmp_path: Path) -> None:
    srv = FakeServing()
    saved, reg = planned(tmp_path, serving=srv)
    assert saved.serving is not None and saved.target == "local"
    desired, _ = load(tmp_path)
    srv.start_version("other", "other", 1)  # not the plan's agent: not its business
    srv.start_version("bot", "bot", 3)  # the plan's agent: a server it did not plan with
    srv.calls.clear()
    with pytest.raises(StalePlan, match="what the local serving target runs changed"):
        apply_saved(saved, desired, reg, file="plan.json", serving=srv, policy=NO_WAIT)
    assert reg.writes == [] and srv.calls == []
    srv.stop_version("bot", 3)
    srv.calls.clear()
    apply_saved(saved, desired, reg, file="plan.json", serving=srv, policy=NO_WAIT)
    assert srv.calls == [("start", "bot", 1), ("weights", "bot", {1: 100})]


def test_an_edit_with_its_checksum_recomputed_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """The checksum only guards against accidents: apply plans again from the same inputs and
    refuses changes that are not the ones that gives."""
    saved, reg = planned(tmp_path)

    def inject(data: dict[str, Any]) -> None:
        after = data["plan"]["changes"][0]["after"]
        del after["tags"]["agentctl.io/owner"]
        after["tags"]["injected"] = "by-mallory"
        after["description"] = "tampered"

    edited = from_json(_rewrite(to_json(saved), inject))  # a checksum that matches
    desired, _ = load(tmp_path)
    with pytest.raises(InvalidPlanFile, match="the file was edited"):
        apply_saved(edited, desired, reg, file="plan.json", policy=NO_WAIT)
    assert reg.writes == [] and reg.models == {}
    # The same plan, unedited, applies.
    apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)
    assert "injected" not in reg.models["bot"].tags


def test_the_file_records_where_and_how_the_plan_was_made_without_credentials(
    tmp_path: Path,
) -> None:
    saved, _ = planned(tmp_path)
    text = to_json(saved)
    assert "secret" not in text and "user" not in json.loads(text)["made"]["tracking_uri"]
    made = json.loads(text)["made"]
    assert made["tracking_uri"] == "http://127.0.0.1:5000"
    assert made["owner"] == "agentctl" and made["prune"] is False and made["scope"] is None
    assert isinstance(made["now"], float)


def test_a_saved_plan_is_stale_when_a_prompt_it_binds_or_declares_changed(tmp_path: Path) -> None:
    root = write_prompt_repo(tmp_path, agent=BOUND_AGENT)
    desired, _ = load(root)
    reg = FakeRegistry()

    def saved_now() -> SavedPlan:
        result = reconcile(desired, reg, apply=False)
        assert result.made is not None
        return save(result.plan, result.made, path=root, allow_empty=True, target="registry",
                    owner="agentctl", prune=False, tracking_uri="http://127.0.0.1:5000")  # fmt: skip

    saved = saved_now()
    (root / "prompts" / "support-system.txt").write_text("You help {{customer}}. {{question}}\n")
    edited, _ = load(root)
    with pytest.raises(StalePlan, match="the manifests under"):
        apply_saved(saved, edited, reg, file="plan.json", policy=NO_WAIT)
    assert reg.writes == []

    # Someone creates the declared prompt after the plan was made: the plan is stale.
    saved = saved_now()
    reg.create_prompt("support-system", None, {"someone": "else"})
    reg.writes.clear()
    with pytest.raises(StalePlan, match="the registry changed"):
        apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)
    assert reg.writes == []


def test_a_saved_prune_plan_is_stale_when_any_model_changed(tmp_path: Path) -> None:
    """What --prune deletes or keeps depends on every model, not only the plan's."""
    root = write_repo(tmp_path, GOOD)
    desired, _ = load(root)
    reg = FakeRegistry()
    reg.create_model("elsewhere", None, {})  # another team's: not the plan's business
    result = reconcile(desired, reg, apply=False, prune=True)
    assert result.made is not None
    saved = save(result.plan, result.made, path=root, allow_empty=False, target="registry",
                 owner="agentctl", prune=True, tracking_uri="http://127.0.0.1:5000")  # fmt: skip
    reg.create_model("agentctl-lock.agentctl", None, {})  # the apply's own lock: not a change
    applied = apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)
    assert [e.address for e in applied.entries] == [c.address for c in saved.plan.changes]
    del reg.models["bot"]
    saved = save(result.plan, result.made, path=root, allow_empty=False, target="registry",
                 owner="agentctl", prune=True, tracking_uri="http://127.0.0.1:5000")  # fmt: skip
    reg.set_model_tag("elsewhere", "team", "b")
    reg.writes.clear()
    with pytest.raises(StalePlan, match="the registry changed"):
        apply_saved(saved, desired, reg, file="plan.json", policy=NO_WAIT)
    assert reg.writes == []
