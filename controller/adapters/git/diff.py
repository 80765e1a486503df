"""What a git revision range changed, through the ``git`` command. Does I/O (subprocess).

Used by ``plan --changed-since REF``: the files that differ between REF and the working tree
(committed, staged, unstaged and untracked), and the tree at REF exported to a directory so its
manifests can be loaded as the "before" of a pull request.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from controller.core.errors import InvalidInput

__all__ = ["changed_paths", "export_tree", "path_exists", "repo_root", "resolve"]


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
    return InvalidInput.of(message, field="--changed-since")


def repo_root(path: Path) -> Path:
    start = path if path.is_dir() else path.parent
    return Path(_git(start, "rev-parse", "--show-toplevel").decode().strip()).resolve()


def path_exists(root: Path, commit: str, path: str) -> bool:
    """Whether ``path`` (relative to the repository root) exists in ``commit``."""
    return bool(_git(root, "ls-tree", "--name-only", commit, "--", path or ".").strip())


def resolve(root: Path, ref: str) -> str:
    """The commit ``ref`` names; an InvalidInput if it names none."""
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except InvalidInput:
        raise _invalid(f"'{ref}' is not a commit in {root}") from None


def changed_paths(root: Path, commit: str) -> frozenset[str]:
    """Paths (relative to ``root``, POSIX) that differ between ``commit`` and the working tree."""
    diff = _git(root, "diff", "--name-only", "--no-renames", "-z", commit, "--")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    names = (diff + untracked).split(b"\0")
    return frozenset(n.decode() for n in names if n)


def export_tree(root: Path, commit: str, dest: Path, subdir: str = "") -> None:
    """Write the tree of ``ref`` (only ``subdir`` of it, if given) into ``dest``, without touching
    the repository. Links are skipped: a manifest or source file is never a link worth following
    out of the tree, and tarfile's data filter would refuse one that leaves it."""
    pathspec = ["--", subdir] if subdir else []
    with subprocess.Popen(
        ["git", "-C", str(root), "archive", "--format=tar", commit, *pathspec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(dest, filter=_regular_files)
        except tarfile.TarError as exc:
            proc.kill()
            raise _invalid(f"cannot read the tree of {commit}: {exc}") from None
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise _invalid(f"git archive {commit}: {stderr.strip()}")


def _regular_files(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
        return None
    return tarfile.data_filter(member, path)
