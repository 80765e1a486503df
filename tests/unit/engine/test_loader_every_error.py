"""Every problem in one run: the schema errors and the checks beyond the schema of every file,
and those across files, sorted by file and line; a problem that only a repair caused is not
reported, and nothing loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.diagnostics import Diagnostic
from controller.engine.loader import load
from tests.support.manifests import (
    GOOD,
    MANY_ERRORS_REPORTED,
    errors_of,
    write_many_errors,
    write_repo,
)


def summary(errors: list[Diagnostic]) -> list[tuple[str, int, int, str, str]]:
    out = []
    for e in errors:
        assert e.location is not None, str(e)
        out.append(
            (Path(e.location.file).name, e.location.line, e.location.column, e.field, e.message)
        )
    return out


def test_every_error_of_every_file_sorted_by_file_and_line(tmp_path: Path) -> None:
    got = summary(errors_of(write_many_errors(tmp_path)))
    assert len(got) == len(MANY_ERRORS_REPORTED), "\n".join(map(str, got))
    for (file, line, column, field, message), want in zip(got, MANY_ERRORS_REPORTED, strict=True):
        assert (file, line, column, field) == want[:4]
        assert all(fragment in message for fragment in want[4]), message


def test_partial_load_keeps_only_the_agents_without_errors(tmp_path: Path) -> None:
    write_many_errors(tmp_path)
    # an agent of its own name, with replicas of its own (ServingDefaults' 0 is an error)
    fine = GOOD.replace("name: bot", "name: fine")
    fine = fine.replace("  serving:\n", "  serving:\n    kubernetes: {replicas: 1}\n")
    (tmp_path / "good.yaml").write_text(fine)
    desired, diags = load(tmp_path, partial=True)
    assert [a.name for a in desired.agents] == ["fine"]
    assert len(diags.errors) == len(MANY_ERRORS_REPORTED)


def test_the_issue_example_a_typo_and_a_wrong_sum_both_show(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        GOOD.replace("spec:\n", "spec:\n  descriptio: hello\n").replace(
            "percent: 100", "percent: 100\n      - version: current\n        percent: 10"
        ),
    )
    got = [(e.field, e.location.line if e.location else 0, e.message) for e in errors_of(tmp_path)]
    assert [g[:2] for g in got] == [("spec.descriptio", 6), ("spec.serving.traffic", 15)]
    assert "did you mean 'description'?" in got[0][2]
    assert "sum to 110" in got[1][2]


@pytest.mark.parametrize(
    ("what", "edits", "expected"),
    [
        (
            # source.code missing drops spec.source: 'current' then has no source, which is
            # the repair's doing, not a second problem
            "a missing required field",
            [("    code: agent.py\n", "")],
            [("spec.source.code", 6)],
        ),
        (
            # the alias dropped would leave traffic naming an undeclared alias
            "an invalid alias name",
            [("    champion: current", "    champ!on: current")],
            [("spec.aliases.champ!on", 12)],
        ),
        (
            # the tag key is dropped; the traffic sum is still the author's
            "an invalid tag key and a wrong sum",
            [
                ("  versions: [current]\n", "  versions: [current]\n  tags: {'a b!': x}\n"),
                ("percent: 100", "percent: 50"),
            ],
            [("spec.tags.a b!", 11), ("spec.serving.traffic", 15)],
        ),
        (
            "a wrong type and a wrong sum",
            [
                ("  versions: [current]\n", "  versions: [current]\n  adopt: maybe\n"),
                ("percent: 100", "percent: 50"),
            ],
            [("spec.adopt", 11), ("spec.serving.traffic", 15)],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_no_error_that_only_a_repair_caused(
    tmp_path: Path, what: str, edits: list[tuple[str, str]], expected: list[tuple[str, int]]
) -> None:
    text = GOOD
    for old, new in edits:
        assert old in text, what
        text = text.replace(old, new)
    write_repo(tmp_path, text)
    got = [(e.field, e.location.line if e.location else 0) for e in errors_of(tmp_path)]
    assert got == expected


def test_a_semantic_error_after_a_dropped_list_item_names_its_own_line(tmp_path: Path) -> None:
    traffic = (
        "      - alias: champion\n        percent: 100\n"
        "      - version: 0\n        percent: 0\n"
        "      - alias: canary\n        percent: 0\n"
    )
    write_repo(
        tmp_path,
        GOOD.replace("      - alias: champion\n        percent: 100\n", traffic),
    )
    got = [(e.field, e.location.line if e.location else 0) for e in errors_of(tmp_path)]
    assert got == [
        ("spec.serving.traffic[1].version", 17),
        ("spec.serving.traffic[2].alias", 19),
    ]


@pytest.mark.parametrize(
    ("kind", "spec", "checked_as", "fields"),
    [
        ("Agnet", "{}", "Agent", ["kind", "metadata.name", "spec"]),
        ("Deployment", "{source: {code: agent.py}}", "Agent",
         ["kind", "metadata.name", "spec.source.pipRequirements"]),
        ("Defaults", "{kubernetes: {replicas: -1}}", "ServingDefaults",
         ["kind", "metadata.name", "spec.kubernetes.replicas"]),
        ("ServingDefault", "{}", "ServingDefaults", ["kind", "metadata.name"]),
    ],
)  # fmt: skip
def test_a_misspelt_kind_does_not_hide_the_document_s_other_errors(
    tmp_path: Path, kind: str, spec: str, checked_as: str, fields: list[str]
) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "typo.yaml").write_text(
        f"apiVersion: agentctl.io/v1alpha1\nkind: {kind}\nmetadata: {{name: Gamma_Bad}}\n"
        f"spec: {spec}\n"
    )
    errors = errors_of(tmp_path)
    assert [e.field for e in errors] == fields
    assert errors[0].message == (
        f"kind must be Agent, Prompt, Environment or ServingDefaults (got {kind!r}); checked as {checked_as}"
    )
    desired, _ = load(tmp_path, partial=True)
    assert [a.name for a in desired.agents] == ["bot"]


def test_an_agent_whose_only_error_is_its_kind_is_not_desired(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "typo.yaml").write_text(
        GOOD.replace("kind: Agent", "kind: agent").replace("name: bot", "name: other")
    )
    desired, diags = load(tmp_path, partial=True)
    assert [a.name for a in desired.agents] == ["bot"]
    assert [(e.field, e.location.line if e.location else 0) for e in diags.errors] == [("kind", 2)]
