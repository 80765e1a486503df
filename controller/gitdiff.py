"""What a git revision range changed, through the ``git`` command. Does I/O (subprocess).

Used by ``plan --changed-since REF``: the files that differ between REF and the working tree
(committed, staged, unstaged and untracked), and the tree at REF exported to a directory so its
manifests can be loaded as the "before" of a pull request.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from controller.diagnostics import Diagnostic, Diagnostics, Severity
from controller.errors import InvalidInput

__all__ = ["changed_paths", "export_tree", "repo_root"]


def _git(root: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, check=False, timeout=120
        )
    except FileNotFoundError:
        raise _invalid("--changed-since needs git, which is not installed") from None
    if done.returncode != 0:
        raise _invalid(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(
        Diagnostics.of([Diagnostic(Severity.ERROR, message, field="--changed-since")])
    )


def repo_root(path: Path) -> Path:
    start = path if path.is_dir() else path.parent
    return Path(_git(start, "rev-parse", "--show-toplevel").decode().strip())


def _verify(root: Path, ref: str) -> str:
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except InvalidInput:
        raise _invalid(f"'{ref}' is not a commit in {root}") from None


def changed_paths(root: Path, ref: str) -> frozenset[str]:
    """Paths (relative to ``root``, POSIX) that differ between ``ref`` and the working tree."""
    commit = _verify(root, ref)
    diff = _git(root, "diff", "--name-only", "--no-renames", "-z", commit, "--")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    names = (diff + untracked).split(b"\0")
    return frozenset(n.decode() for n in names if n)


def export_tree(root: Path, ref: str, dest: Path) -> None:
    """Write the tree of ``ref`` into ``dest`` (like a checkout, without touching the repo)."""
    commit = _verify(root, ref)
    with subprocess.Popen(
        ["git", "-C", str(root), "archive", "--format=tar", commit], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            tar.extractall(dest, filter="data")
    if proc.returncode != 0:
        raise _invalid(f"git archive {ref} failed")
