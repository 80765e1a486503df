from __future__ import annotations

import os

from tests.support.hermetic import scrub

# First, before any test module (or the controller package) reads the environment: the caller's
# AGENTCTL_*, MLFLOW_* and KUBECONFIG settings are not the suite's (tests/support/hermetic.py).
scrub(os.environ)

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.support.controller import EXAMPLES  # noqa: E402


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the example manifests in a fresh directory (its own repository root)."""
    dest = tmp_path / "repo" / "manifests"
    shutil.copytree(EXAMPLES, dest)
    (tmp_path / "repo" / ".git").mkdir()  # marks the repository root for source-path checks
    return dest
