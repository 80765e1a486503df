"""A source snapshot: the files copied once into a private directory, digested there, refused
unless that is the plan's digest, and nothing left behind either way."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest

from controller.core.plan.changes import VersionCreate
from controller.core.state.digest import source_digest
from controller.engine.snapshot import SourceChanged, take

REQS = ("mlflow==3.17.2",)


def _repo(root: Path) -> VersionCreate:
    (root / "agents").mkdir(parents=True)
    (root / "agents" / "agent.py").write_bytes(b"code\n")
    (root / "agents" / "config.yaml").write_bytes(b"greeting: hi\n")
    digest = source_digest(b"code\n", b"greeting: hi\n", list(REQS))
    return VersionCreate(digest, "agents/agent.py", "agents/config.yaml", REQS, {})


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def test_the_snapshot_is_private_holds_the_bytes_digested_and_keeps_the_code_s_name(
    tmp_path: Path, temp: Path
) -> None:
    after = _repo(tmp_path / "repo")
    taken = take("bot", str(tmp_path / "repo"), after)
    (tmp_path / "repo" / "agents" / "config.yaml").write_bytes(b"greeting: edited\n")

    source = taken.source
    assert source.digest == after.digest and source.code_ref == "agents/agent.py"
    assert Path(source.code_path).name == "agent.py"
    assert Path(source.code_path).read_bytes() == b"code\n"
    assert source.config_path is not None
    assert Path(source.config_path).read_bytes() == b"greeting: hi\n"
    assert stat.S_IMODE(Path(taken.directory).stat().st_mode) == 0o700
    assert Path(taken.directory).parent == temp
    taken.remove()
    assert list(temp.iterdir()) == []


def test_a_source_changed_since_the_plan_is_refused_and_leaves_nothing(
    tmp_path: Path, temp: Path
) -> None:
    after = _repo(tmp_path / "repo")
    (tmp_path / "repo" / "agents" / "agent.py").write_bytes(b"other code\n")
    with pytest.raises(SourceChanged, match="changed since the plan"):
        take("bot", str(tmp_path / "repo"), after)
    (tmp_path / "repo" / "agents" / "agent.py").unlink()
    with pytest.raises(SourceChanged, match="cannot read the source of bot"):
        take("bot", str(tmp_path / "repo"), after)
    assert list(temp.iterdir()) == []
