"""Versions built from sources of their own (spec.versions[].source): each resolved and digested
like spec.source, from the working tree or a git revision; each mistake one error at its line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controller.adapters.git.history import GitHistory
from controller.core.errors import InvalidInput
from controller.engine.loader import load
from tests.support.manifests import GOOD, errors_of, write_repo

TWO = GOOD.replace(
    "  versions: [current]\n",
    """\
  versions:
    - version: stable
      source:
        config: config-stable.yaml
    - current
""",
).replace("champion: current", "champion: stable\n    challenger: current")


def two_sources(root: Path, manifest: str = TWO) -> Path:
    write_repo(root, manifest)
    (root / "config-stable.yaml").write_text("greeting: hello\n")
    return root


def test_a_named_version_takes_spec_source_fields_it_does_not_set(tmp_path: Path) -> None:
    desired, _ = load(two_sources(tmp_path))
    (agent,) = desired.agents
    assert agent.source is not None
    stable = agent.named["stable"]
    assert (stable.code_ref, stable.config_ref) == ("agent.py", "config-stable.yaml")
    assert stable.pip_requirements == agent.source.pip_requirements
    assert stable.digest != agent.source.digest and stable.commit is None
    assert agent.source_of("stable") is stable and agent.source_of("current") is agent.source


def test_same_content_is_the_same_digest(tmp_path: Path) -> None:
    two_sources(tmp_path)
    (tmp_path / "config-stable.yaml").write_text("greeting: hi\n")  # as config.yaml
    (agent,) = load(tmp_path)[0].agents
    assert agent.named["stable"].digest == agent.source.digest  # type: ignore[union-attr]


def test_spec_source_is_optional_when_a_named_version_has_all_it_needs(tmp_path: Path) -> None:
    manifest = GOOD.replace(
        """\
  source:
    code: agent.py
    config: config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
""",
        """\
  versions:
    - version: stable
      source: {code: agent.py, pipRequirements: [mlflow==3.17.2]}
""",
    ).replace("champion: current", "champion: stable")
    (agent,) = load(write_repo(tmp_path, manifest))[0].agents
    assert agent.source is None and agent.named["stable"].config_ref is None


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize(
    ("edit", "where", "field", "fragment"),
    [
        (("    - version: stable\n      source:\n        config: config-stable.yaml\n",
          "    - stable\n"), "- stable", "spec.versions[0].version",
         "give this entry a `source:`"),
        (("    - current\n", "    - version: current\n      source: {config: x.yaml}\n"),
         "source: {config: x.yaml}", "spec.versions[1].source", "'current' is built from"),
        (("challenger: current", "challenger: canary"), "challenger: canary",
         "spec.aliases.challenger", "version canary is not declared"),
        (("config: config-stable.yaml", "config: nope.yaml"), "config: nope.yaml",
         "spec.versions[0].source.config", "is not a file"),
        (("    - current\n", "    - version: Stable\n"), "version: Stable",
         "spec.versions[1].version", "a lowercase label"),
    ],
    ids=["name-without-source", "source-on-current", "undeclared-name", "missing-file",
         "not-a-label"],
)  # fmt: skip
def test_each_mistake_is_one_error_at_its_line(
    tmp_path: Path, edit: tuple[str, str], where: str, field: str, fragment: str
) -> None:
    assert edit[0] in TWO
    manifest = TWO.replace(*edit)
    (err,) = errors_of(two_sources(tmp_path, manifest))
    assert err.location is not None and err.location.file.endswith("bot.yaml")
    assert (err.location.line, err.field) == (line_of(manifest, where), field)
    assert fragment in err.message


def test_a_named_version_without_code_anywhere_is_an_error(tmp_path: Path) -> None:
    manifest = GOOD.replace(
        "  source:\n    code: agent.py\n    config: config.yaml\n"
        "    pipRequirements: [mlflow==3.17.2]\n  versions: [current]\n",
        "  versions:\n    - version: stable\n      source: {config: config.yaml}\n",
    ).replace("champion: current", "champion: stable")
    errors = errors_of(write_repo(tmp_path, manifest))
    assert {(e.field, e.location.line) for e in errors if e.location} == {
        ("spec.versions[0].source", 8)
    }
    assert sorted(e.message.split(":")[0] for e in errors) == [
        "version 'stable' has no code",
        "version 'stable' has no pipRequirements",
    ]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository with two commits of the agent's config: v1 (hi), then hello."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write_repo(root, GOOD)
    (root / ".gitignore").write_text("")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "v1")
    git(root, "tag", "v1")
    (root / "config.yaml").write_text("greeting: hello\n")
    git(root, "commit", "-qam", "v2")
    return root


PREVIOUS = GOOD.replace(
    "  versions: [current]\n",
    "  versions:\n    - version: previous\n      source: {revision: v1}\n    - current\n",
).replace("champion: current", "champion: previous")


def test_a_revision_reads_the_files_as_they_were(repo: Path) -> None:
    (repo / "bot.yaml").write_text(PREVIOUS)
    (agent,) = load(repo, history=GitHistory())[0].agents
    previous = agent.named["previous"]
    assert previous.commit == git(repo, "rev-parse", "v1") and previous.revision == "v1"
    # The digest is the working tree's once the working tree holds v1's bytes again.
    (repo / "config.yaml").write_text("greeting: hi\n")
    (again,) = load(repo, history=GitHistory())[0].agents
    assert (
        again.source is not None and again.source.digest == previous.digest != agent.source.digest
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("revision", "override", "fragment"),
    [
        ("nope", "", "'nope' names no commit"),
        ("v1", ", config: new.yaml", "'new.yaml' does not exist at"),
        ("--all", "", "is not a git revision"),
    ],
)
def test_a_bad_revision_is_one_error_naming_the_field(
    repo: Path, revision: str, override: str, fragment: str
) -> None:
    (repo / "new.yaml").write_text("greeting: new\n")  # in the working tree, not at v1
    manifest = PREVIOUS.replace("{revision: v1}", f"{{revision: '{revision}'{override}}}")
    (repo / "bot.yaml").write_text(manifest)
    with pytest.raises(InvalidInput) as info:
        load(repo, history=GitHistory())
    (err,) = info.value.diagnostics.errors
    assert err.location is not None and err.location.line == line_of(manifest, "revision:")
    assert err.field.startswith("spec.versions[0].source.")
    assert fragment in err.message


def test_a_revision_outside_a_git_work_tree_is_a_clear_error(tmp_path: Path) -> None:
    write_repo(tmp_path, PREVIOUS)  # a .git marker only: not a repository git can read
    with pytest.raises(InvalidInput) as info:
        load(tmp_path, history=GitHistory())
    (err,) = info.value.diagnostics.errors
    assert err.field == "spec.versions[0].source.revision"
    assert "git" in err.message


def fields_and_lines(repo: Path) -> list[tuple[str, int, str]]:
    with pytest.raises(InvalidInput) as info:
        load(repo, history=GitHistory())
    return [
        (e.field, e.location.line if e.location else 0, e.message)
        for e in info.value.diagnostics.errors
    ]


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (("champion: previous", "champion: previous\n    challenger: ghost"),
         ("spec.aliases.challenger", "version ghost is not declared")),
        (("        percent: 100\n", "        percent: 100\n    shadow: {version: ghost, percent: 5}\n"),
         ("spec.serving.shadow.version", "version ghost is not declared")),
        (("    - current\n", "    - current\n    - version: bare\n"),
         ("spec.versions[2].version", "'bare' names a version built from a source")),
        (("    - current\n", "    - current\n    - [1]\n"),
         ("spec.versions[2]", "must be a mapping")),
    ],
    ids=["undeclared-alias", "undeclared-shadow", "named-without-source", "schema-error"],
)  # fmt: skip
def test_a_named_version_s_revision_is_checked_whatever_else_is_wrong(
    repo: Path, other: tuple[str, str], expected: tuple[str, str]
) -> None:
    manifest = PREVIOUS.replace("{revision: v1}", "{revision: no-such-rev}")
    assert other[0] in manifest
    manifest = manifest.replace(*other)
    (repo / "bot.yaml").write_text(manifest)
    got = fields_and_lines(repo)
    revision = ("spec.versions[0].source.revision", line_of(manifest, "revision:"))
    assert [g[:2] for g in got if g[0] == revision[0]] == [revision]
    assert "'no-such-rev' names no commit" in next(g[2] for g in got if g[0] == revision[0])
    field, fragment = expected
    assert any(g[0] == field and fragment in g[2] for g in got), got
    assert len(got) == 2, got


def test_a_named_version_after_a_dropped_entry_is_checked_at_its_own_line(repo: Path) -> None:
    manifest = PREVIOUS.replace(
        "    - version: previous\n",
        "    - {version: x, source: {}, bogus: 1}\n    - version: previous\n",
    ).replace("{revision: v1}", "{revision: v1, config: missing.yaml}")
    (repo / "bot.yaml").write_text(manifest)
    got = fields_and_lines(repo)
    assert [g[:2] for g in got] == [
        ("spec.versions[0].bogus", line_of(manifest, "bogus")),
        ("spec.versions[1].source.config", line_of(manifest, "missing.yaml")),
    ]
    assert "'missing.yaml' does not exist at" in got[1][2]


def test_an_inherited_file_missing_at_a_revision_is_one_error_per_version_at_its_revision(
    repo: Path,
) -> None:
    (repo / "new.py").write_text("print('new')\n")  # in the working tree, not at v1
    manifest = (
        GOOD.replace("code: agent.py", "code: new.py")
        .replace(
            "  versions: [current]\n",
            "  versions:\n    - version: one\n      source: {revision: v1}\n"
            "    - version: two\n      source:\n        revision: v1\n    - current\n",
        )
        .replace("champion: current", "champion: one")
    )
    (repo / "bot.yaml").write_text(manifest)
    got = fields_and_lines(repo)
    lines = [i for i, text in enumerate(manifest.splitlines(), 1) if "revision: v1" in text]
    assert [g[:2] for g in got] == [
        ("spec.versions[0].source.revision", lines[0]),
        ("spec.versions[1].source.revision", lines[1]),
    ]
    assert got[0][2].startswith("version 'one' takes spec.source.code at revision v1: 'new.py'")
    assert got[1][2].startswith("version 'two' takes spec.source.code at revision v1: 'new.py'")


def test_a_file_several_versions_take_from_the_working_tree_is_one_error(tmp_path: Path) -> None:
    manifest = TWO.replace(
        "    - current\n",
        "    - version: other\n      source: {config: config.yaml}\n    - current\n",
    )
    two_sources(tmp_path, manifest)
    (tmp_path / "agent.py").unlink()
    errors = errors_of(tmp_path)
    assert [(e.field, e.location.line if e.location else 0) for e in errors] == [
        ("spec.source.code", line_of(manifest, "code: agent.py"))
    ]
