from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.controller import EXAMPLES


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the example manifests in a fresh directory (its own repository root)."""
    dest = tmp_path / "repo" / "manifests"
    shutil.copytree(EXAMPLES, dest)
    (tmp_path / "repo" / ".git").mkdir()  # marks the repository root for source-path checks
    return dest
