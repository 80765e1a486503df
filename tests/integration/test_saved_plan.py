"""Saved plans against a real MLflow server: `agentctl plan --out plan.json` then `agentctl apply
plan.json` applies exactly the plan that was shown, and refuses (exit 1, nothing written) a plan
made stale by a hand edit in the registry or an edit of the manifests, and a file that was
tampered with, is malformed, or is of another format version. Every command is the installed
`agentctl` binary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.core.plan.saved import checksum
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration


def saved_plan(agentctl: Any, examples: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """``plan --out``: the file, and the plan that was shown (``--format json``)."""
    file = tmp_path / "plan.json"
    shown = agentctl("plan", str(examples), "--format", "json", "--out", str(file))
    assert shown.code == 0, shown.err
    return file, json.loads(shown.out)


def test_apply_of_a_saved_plan_applies_exactly_the_plan_shown(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any, tmp_path: Path
) -> None:
    assert agentctl("apply", str(examples)).code == 0
    # A change to review: a new version of support-bot's source, its alias moved to it.
    config = examples / "agents" / "support_bot" / "config.yaml"
    config.write_text(config.read_text().replace("support bot", "support bot, v2"))
    proxy.reset()
    file, shown = saved_plan(agentctl, examples, tmp_path)
    assert proxy.writes() == [], "plan --out writes nothing to the registry"
    assert {(c["address"], c["action"]) for c in shown["changes"]} == {
        ("support-bot.model_version.current", "create"),
        ("support-bot.evaluation.current", "create"),  # before its alias moves to it
        ("support-bot.alias.champion", "update"),
    }
    saved = json.loads(file.read_text())
    assert saved["format_version"] == "1" and saved["checksum"].startswith("sha256:")
    assert saved["plan"]["changes"] == shown["changes"]

    applied = agentctl("apply", str(file), "--format", "json")
    assert applied.code == 0, applied.err + applied.out
    done = json.loads(applied.out)
    assert [e["address"] for e in done["changeset"]["entries"]] == [
        c["address"] for c in shown["changes"]
    ]
    assert client.get_registered_model("support-bot").aliases == {"champion": "2"}
    assert len(client.search_model_versions("name='support-bot'")) == 2
    again = agentctl("plan", str(examples), "--detailed-exitcode")
    assert again.code == 0, again.err + again.out
    assert "No changes" in again.out

    # Applied once: the registry it was made from has changed since (by this very apply).
    proxy.reset()
    twice = agentctl("apply", str(file))
    assert twice.code == 1
    assert f"{file}: stale plan: the registry changed since the plan was made" in twice.err
    assert proxy.writes() == []


def test_a_plan_made_stale_by_a_hand_edit_in_the_registry_is_refused(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any, tmp_path: Path
) -> None:
    assert agentctl("apply", str(examples)).code == 0
    config = examples / "agents" / "support_bot" / "config.yaml"
    config.write_text(config.read_text().replace("support bot", "support bot, v2"))
    file, shown = saved_plan(agentctl, examples, tmp_path)
    assert shown["changes"], "the plan has changes to refuse"

    # Someone moves a tag by hand between plan and apply (the test's client is not proxied).
    client.set_registered_model_tag("support-bot", "team", "someone-else")
    proxy.reset()
    result = agentctl("apply", str(file))
    assert result.code == 1
    assert f"{file}: stale plan: the registry changed since the plan was made" in result.err
    assert "nothing was applied" in result.err
    assert proxy.writes() == [], [(r.method, r.path) for r in proxy.writes()]
    bot = client.get_registered_model("support-bot")
    assert bot.tags["team"] == "someone-else" and bot.aliases == {"champion": "1"}
    assert len(client.search_model_versions("name='support-bot'")) == 1


@pytest.mark.parametrize(
    ("what", "edit"),
    [
        ("manifest", lambda ex: _replace(ex / "support-bot.yaml", "customer-care", "support")),
        (
            "source",
            lambda ex: _replace(
                ex / "agents" / "support_bot" / "config.yaml", "support bot", "support bot, v3"
            ),
        ),
    ],
)
def test_a_plan_made_stale_by_an_edit_of_the_manifests_is_refused(
    examples: Path,
    agentctl: Any,
    proxy: CountingProxy,
    client: Any,
    tmp_path: Path,
    what: str,
    edit: Callable[[Path], None],
) -> None:
    file, shown = saved_plan(agentctl, examples, tmp_path)
    # 2 models, 3 versions (summarizer: stable, current), 3 aliases, support-bot's evaluation,
    # and the support bot's prompt: the prompt, its version, its alias
    assert len(shown["changes"]) == 12
    edit(examples)
    proxy.reset()
    result = agentctl("apply", str(file))
    assert result.code == 1, what
    assert f"{file}: stale plan: the manifests under {examples}" in result.err
    assert proxy.writes() == []
    assert client.search_registered_models() == []


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _tamper(data: dict[str, Any]) -> None:
    """Point an alias at another version: one change, the checksum left as it was."""
    alias = next(c for c in data["plan"]["changes"] if c["kind"] == "alias")
    alias["after"] = {"version": 7}


def _other_version(data: dict[str, Any]) -> None:
    data["format_version"] = "2"
    data["checksum"] = checksum({k: v for k, v in data.items() if k != "checksum"})


def _missing_field(data: dict[str, Any]) -> None:
    del data["fingerprints"]
    data["checksum"] = checksum({k: v for k, v in data.items() if k != "checksum"})


BAD_FILES: list[tuple[str, Callable[[str], str], str]] = [
    (
        "tampered",
        lambda text: json.dumps(_edited(text, _tamper)),
        "was changed after it was written (its checksum does not match its content)",
    ),
    (
        "another format version",
        lambda text: json.dumps(_edited(text, _other_version)),
        "is a saved plan of format version '2'; this agentctl reads format version '1'",
    ),
    (
        "missing field",
        lambda text: json.dumps(_edited(text, _missing_field)),
        "is malformed: missing 'fingerprints'",
    ),
    ("malformed JSON", lambda text: text[: len(text) // 2], "is not valid JSON"),
    (
        "a plan printed with --format json",
        lambda text: json.dumps(json.loads(text)["plan"]),
        "is not a saved plan",
    ),
]


def _edited(text: str, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = json.loads(text)
    edit(data)
    return data


@pytest.mark.parametrize(("what", "spoil", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_plan_file_that_cannot_be_trusted_is_refused_and_nothing_is_written(
    examples: Path,
    agentctl: Any,
    proxy: CountingProxy,
    client: Any,
    tmp_path: Path,
    what: str,
    spoil: Callable[[str], str],
    message: str,
) -> None:
    file, _ = saved_plan(agentctl, examples, tmp_path)
    file.write_text(spoil(file.read_text()))
    proxy.reset()
    result = agentctl("apply", str(file))
    assert result.code == 1, what
    assert f"Error: {file} {message}" in result.err, result.err
    assert "Traceback" not in result.err
    assert proxy.records == [], "refused before the registry is asked anything"
    assert client.search_registered_models() == []


def test_a_saved_plan_is_applied_only_where_and_as_it_was_made(
    examples: Path, agentctl: Any, proxy: CountingProxy, mlflow_server: Any, client: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Another registry (the same server by another address counts: what the plan names is the
    address), another owner, and an edit whose checksum was recomputed are refused; nothing is
    written."""
    file, _ = saved_plan(agentctl, examples, tmp_path)
    proxy.reset()
    elsewhere = agentctl("apply", str(file), env={"MLFLOW_TRACKING_URI": mlflow_server.url})
    assert elsewhere.code == 1
    assert f"was planned against the registry at {proxy.url}" in elsewhere.err, elsewhere.err
    other_owner = agentctl("apply", str(file), "--owner", "team-b")
    assert other_owner.code == 1 and "was planned with --owner agentctl" in other_owner.err

    def inject(data: dict[str, Any]) -> None:
        data["plan"]["changes"][0]["after"]["tags"]["injected"] = "by-mallory"
        data["checksum"] = checksum({k: v for k, v in data.items() if k != "checksum"})

    file.write_text(json.dumps(_edited(file.read_text(), inject)))
    edited = agentctl("apply", str(file))
    assert edited.code == 1 and "the file was edited" in edited.err, edited.err
    assert proxy.writes() == [] and client.search_registered_models() == []
