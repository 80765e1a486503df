"""Renderers: text reads like terraform's, markdown has a summary and a section per agent, and
JSON round-trips to the same plan."""

from __future__ import annotations

import html
import json
import re

from controller.core.manifest.schema import CURRENT
from controller.core.plan.changes import Plan
from controller.core.plan.planner import plan
from controller.core.render.formats import MARKER, render_plan
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot
from tests.support.builders import D2, agent, desired, model, snapshot


def sample() -> Plan:
    d = desired(agent("a", digest=D2, aliases={"champion": CURRENT}), agent("b"))
    return plan(d, snapshot(model("a", aliases={"champion": 1}, versions={1: "sha256:old"})))


def test_text_shows_each_change_and_the_summary() -> None:
    text = render_plan(sample(), "text")
    assert text.rstrip().endswith("Plan: 3 to add, 1 to change, 0 to destroy.")
    alias_block = text.split("# a.alias.champion", 1)[1].split("\n\n", 1)[0]
    assert "~ version = 1 -> (known after apply)" in alias_block
    assert "digest" not in alias_block
    assert "agentctl.io/managed-" not in text  # bookkeeping tags are not shown


def test_markdown_has_one_details_section_per_agent() -> None:
    md = render_plan(sample(), "markdown")
    assert md.splitlines()[0] == MARKER
    sections = re.findall(r"<details>\s*<summary><b>([^<]+)</b>[^:]*: ([^<]+)</summary>", md)
    assert sections == [("a", "1 to add, 1 to change"), ("b", "2 to add")]
    assert md.count("</details>") == 2
    assert "**Plan: 3 to add, 1 to change, 0 to destroy.**" in md


def test_json_round_trips() -> None:
    p = sample()
    data = json.loads(render_plan(p, "json"))
    assert data["format_version"] == "1"
    assert data["summary"] == {"add": 3, "change": 1, "destroy": 0, "evaluate": 0}
    assert Plan.from_dict(data) == p


def _new_version_in_traffic() -> Plan:
    """Traffic that sends 10 % to the version this apply creates."""
    a = agent(
        "a", digest=D2, versions=[1, CURRENT], aliases={"champion": 1, "challenger": CURRENT},
        serving={"traffic": [{"alias": "champion", "percent": 90},
                             {"alias": "challenger", "percent": 10}]},
    )  # fmt: skip
    served = ServingSnapshot({"a": AgentServing("a", "a", {1: ServedVersion(1, "a")}, {1: 100})})
    observed = snapshot(model("a", aliases={"champion": 1}, versions={1: "sha256:old"}))
    return plan(desired(a), observed, serving=served)


def test_a_new_version_in_the_traffic_split_is_known_after_apply() -> None:
    p = _new_version_in_traffic()
    weights = (
        '~ weights = [{"version": 1, "percent": 100}] -> '
        '[{"version": 1, "percent": 90}, {"version": (known after apply), "percent": 10}]'
    )
    text = render_plan(p, "text")
    assert weights in text and "null" not in text
    md = render_plan(p, "markdown")
    assert html.escape(weights) in md and "null" not in md
    # JSON stays machine-readable: the version is null, with the digest it will be created from.
    data = json.loads(render_plan(p, "json"))
    (traffic,) = [c for c in data["changes"] if c["address"] == "a.traffic"]
    assert traffic["after"]["weights"] == [
        {"version": 1, "percent": 90},
        {"version": None, "digest": D2, "percent": 10},
    ]


def test_only_what_apply_creates_is_known_after_apply_and_an_absent_value_is_left_out() -> None:
    p = plan(desired(agent("b")), snapshot())  # a source without a config
    (version,) = [c for c in p.changes if c.kind.value == "model_version"]
    assert version.after.to_dict()["config"] is None
    text = render_plan(p, "text")
    assert "+ version = (known after apply)" in text
    assert text.count("(known after apply)") == 1
    assert "config" not in text and "null" not in text


def test_a_value_that_goes_away_shows_null() -> None:
    from controller.core.plan.changes import Action, Change, Kind, ModelState
    from controller.core.render.formats import _attribute_lines

    before = ModelState({}, "an old description", name="b")
    after = ModelState({}, None, name="b")
    change = Change("b", "b", Kind.REGISTERED_MODEL, "", Action.UPDATE, before, after, "why")
    lines = _attribute_lines(change)
    assert ("-", "description", '"an old description" -> null') in lines
