"""What a pull request sees: the agents a change touches, aliases and traffic before -> after in
the markdown comment (parsed, not compared to a frozen string), annotations, no secrets."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from controller.core.diagnostics import Diagnostic, Location, Severity
from controller.core.manifest.schema import CURRENT
from controller.core.plan.planner import plan
from controller.core.plan.scope import select
from controller.core.render.annotations import escape_data, escape_property, workflow_commands
from controller.core.render.formats import REDACTED, redact, render_plan
from tests.support.builders import D1, D2, agent, desired, model, snapshot


def in_repo(a, manifest: str, code: str = "agents/x/agent.py"):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    source = replace(a.source, code_ref=code) if a.source else None
    return replace(a, manifest_ref=manifest, source=source)


def test_scope_is_the_agents_a_change_touches_plus_unregistered_sources() -> None:
    a = in_repo(agent("a"), "a.yaml", "agents/a/agent.py")
    b = in_repo(agent("b"), "b.yaml", "agents/b/agent.py")
    c = in_repo(agent("c", digest=D2), "c.yaml", "agents/c/agent.py")
    registered = snapshot(
        model("a", versions={1: D1}), model("b", versions={1: D1}), model("c", versions={1: D1})
    )
    scope = select(desired(a, b, c), {"b.yaml", "agents/a/agent.py", "README.md"}, registered)
    assert scope == {
        "a": "agents/a/agent.py changed",
        "b": "b.yaml changed",
        "c": "its source digest is not registered yet",
    }
    assert select(desired(a, b), {"README.md"}, registered) == {}


def test_a_serving_defaults_change_scopes_every_serving_agent() -> None:
    from dataclasses import replace

    serving = {"traffic": [{"alias": "champion", "percent": 100}]}
    a = in_repo(agent("a", aliases={"champion": CURRENT}, serving=serving), "a.yaml")
    b = in_repo(agent("b"), "b.yaml")
    registered = snapshot(model("a", versions={1: D1}), model("b", versions={1: D1}))
    d = replace(desired(a, b), defaults_ref="defaults.yaml")
    assert select(d, {"defaults.yaml"}, registered) == {"a": "defaults.yaml changed"}
    assert select(d, {"README.md"}, registered) == {}


def test_plan_in_scope_only_plans_those_agents() -> None:
    d = desired(
        agent("a", aliases={"champion": CURRENT}), agent("b", aliases={"champion": CURRENT})
    )
    p = plan(d, snapshot(), scope={"b": "b.yaml changed"})
    assert p.agents == ("b",)
    assert {c.agent for c in p.changes} == {"b"}
    assert p.views[0].scope == "b.yaml changed"


class _Sections(HTMLParser):
    """Collects the text of each <details> section of a markdown comment."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "details":
            self._depth += 1
            self.sections.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.sections[-1] += data


def only_section(md: str) -> str:
    """The text of the one <details> section of a markdown comment."""
    parser = _Sections()
    parser.feed(md)
    (section,) = parser.sections
    return section


def table(section: str, heading: str) -> dict[str, list[str]]:
    """The rows of the markdown table under **heading**, keyed by first cell."""
    lines = section.split(f"**{heading}**", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:  # past the header and |---| rows
        if not line.startswith("|"):
            break
        rows.append(line.strip("|").split("|"))
    return {cells[0].strip().strip("`"): [c.strip() for c in cells[1:]] for cells in rows}


def test_markdown_shows_aliases_and_traffic_before_and_after() -> None:
    base = agent(
        "a",
        digest=D1,
        versions=[CURRENT],
        aliases={"champion": CURRENT},
        serving={"traffic": [{"alias": "champion", "percent": 100}]},
    )
    head = agent(
        "a",
        digest=D2,
        versions=[1, CURRENT],
        aliases={"champion": 1, "challenger": CURRENT},
        serving={
            "traffic": [
                {"alias": "champion", "percent": 80},
                {"alias": "challenger", "percent": 20},
            ],
            "shadow": {"version": CURRENT, "percent": 5},
        },
    )
    obs = snapshot(model("a", aliases={"champion": 1}, versions={1: D1}))
    md = render_plan(plan(desired(head), obs, baseline=desired(base)), "markdown")
    section = only_section(md)
    assert table(section, "Aliases") == {
        "challenger": ["—", "new version (known after apply)"],
        "champion": ["version 1", "version 1"],
    }
    assert table(section, "Traffic") == {
        "alias champion": ["100%", "80%"],
        "alias challenger": ["—", "20%"],
        "shadow: version current": ["—", "5% (copy)"],
    }
    assert re.search(r"^\*\*Plan: 2 to add, 1 to change, 0 to destroy\.\*\*$", md, re.M)


def test_no_secrets_in_the_comment() -> None:
    d = desired(
        agent(
            "a",
            tags={"api_token": "t0p-secret", "owner_url": "https://bob:hunter2@example.test/x"},
            description="uses ghp_abcdefghijklmnopqrstuvwx for pulls",
        )
    )
    md = render_plan(plan(d, snapshot()), "markdown")
    text = render_plan(plan(d, snapshot()), "text")
    as_json = render_plan(plan(d, snapshot()), "json")
    for out in (md, text, as_json):
        assert "t0p-secret" not in out and "hunter2" not in out and "ghp_abcdef" not in out
        assert REDACTED in out
    # JSON stays JSON, with the same values hidden as in text.
    tags = next(c for c in json.loads(as_json)["changes"] if c["after"] and "tags" in c["after"])
    assert tags["after"]["tags"]["api_token"] == REDACTED
    assert tags["after"]["tags"]["owner_url"] == f"https://{REDACTED}@example.test/x"
    assert redact("tags.team", "search") == "search"


def test_annotations_name_file_line_and_column_escaped() -> None:
    diags = [
        Diagnostic(
            Severity.ERROR,
            "sum is 90,\nnot 100 (50%)",
            Location("m/a.yaml", 12, 5),
            "spec.serving.traffic",
        ),
        Diagnostic(Severity.WARNING, "managed model gone"),
    ]
    error, warning = workflow_commands(diags, lambda f: "repo/" + f)
    assert error == (
        "::error file=repo/m/a.yaml,line=12,col=5,title=agentctl%3A spec.serving.traffic"
        "::spec.serving.traffic: sum is 90,%0Anot 100 (50%25)"
    )
    assert warning == "::warning title=agentctl::managed model gone"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25" and escape_data("a:b,c") == "a:b,c"


def test_values_cannot_inject_markup_into_the_comment() -> None:
    hostile = "x` </details><details open><summary>All good</summary> `y|z <img src=x>"
    d = desired(agent("a", description=hostile, tags={"team": hostile}))
    md = render_plan(plan(d, snapshot()), "markdown")
    assert (
        "<img" not in md and "</details><details open>" not in md and "<summary>All good" not in md
    )
    assert md.count("<details>") == md.count("</details>") == 1
    # Every table row still has its four cells.
    rows = [line for line in md.splitlines() if line.startswith("| + |")]
    assert rows and all(line.count(" | ") == 3 for line in rows)


def test_more_secret_shapes_are_redacted() -> None:
    cases = {
        ("tags.auth", "Bearer abcdef123"): REDACTED,
        ("tags.dbDsn", "postgres://h/db"): REDACTED,
        ("tags.access_key", "AKIA..."): REDACTED,
        ("tags.author", "alice"): "alice",
        (
            "description",
            "call with Bearer abc.def-123 please",
        ): f"call with Bearer {REDACTED} please",
        (
            "tags.url",
            "mysql://root@h?password=hunter2&x=1",
        ): f"mysql://{REDACTED}@h?password={REDACTED}&x=1",
    }
    for (key, value), expected in cases.items():
        assert redact(key, value) == expected, (key, value)


def test_a_traffic_only_change_still_gets_a_section() -> None:
    def serving(a: int, b: int) -> dict[str, object]:
        return {"traffic": [{"version": 1, "percent": a}, {"version": CURRENT, "percent": b}]}

    head = agent("a", versions=[1, CURRENT], serving=serving(80, 20))
    base = agent("a", versions=[1, CURRENT], serving=serving(90, 10))
    obs = snapshot(model("a", versions={1: "sha256:old", 2: D1}))
    p = plan(desired(head), obs, baseline=desired(base))
    assert p.changes == ()
    md = render_plan(p, "markdown")
    section = only_section(md)
    assert table(section, "Traffic") == {
        "version 1": ["90%", "80%"],
        "version current": ["10%", "20%"],
    }
    assert "no registry changes" in md


def test_a_removed_agent_shows_what_goes_away() -> None:
    from dataclasses import replace

    gone = replace(
        agent("old", serving={"traffic": [{"version": CURRENT, "percent": 100}]}),
        manifest_ref="old.yaml",
    )
    obs = snapshot(
        model("old", aliases={"champion": 1}, versions={1: D1}), model("a", versions={1: D1})
    )
    for prune, alias_after in ((False, "version 1"), (True, "—")):
        p = plan(desired(agent("a")), obs, prune=prune, baseline=desired(gone, agent("a")))
        section = only_section(render_plan(p, "markdown"))
        assert "old.yaml was removed" in section
        assert table(section, "Traffic") == {"version current": ["100%", "—"]}
        assert table(section, "Aliases") == {"champion": ["version 1", alias_after]}
