"""The manifests' repository at a revision, through the ``git`` command: the commit a revision
names and a file's bytes at that commit (a :class:`~controller.ports.SourceHistory`). Does I/O
(subprocess); the working tree and the index are never touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["GitHistory"]


class GitHistory:
    """Reads the repository that holds ``root`` with ``git -C root``."""

    def commit(self, root: str, revision: str) -> str:
        if revision.startswith("-"):
            raise LookupError(f"'{revision}' is not a git revision")
        out = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options",
                   f"{revision}^{{commit}}")  # fmt: skip
        if out is None:
            raise LookupError(f"'{revision}' names no commit in the git repository at {root}")
        return out.decode().strip()

    def read(self, root: str, commit: str, path: str, limit: int) -> bytes:
        # `ls-tree` is relative to the current directory: root's own path in the repository.
        prefix = _git(root, "rev-parse", "--show-prefix")
        full = (prefix.decode().strip() if prefix else "") + Path(path).as_posix()
        listing = _git(root, "ls-tree", "-l", "-z", commit, "--", full)
        if not listing:
            raise LookupError(f"'{path}' does not exist at {commit[:12]}")
        meta, _, name = listing.rstrip(b"\0").partition(b"\t")
        mode, kind, blob, size = meta.decode().split()
        if name.decode() != full or kind != "blob" or mode not in ("100644", "100755"):
            raise LookupError(f"'{path}' is not a regular file at {commit[:12]}")
        if int(size) > limit:
            raise LookupError(f"'{path}' at {commit[:12]} is larger than {limit} bytes")
        data = _git(root, "cat-file", "blob", blob)
        if data is None:
            raise LookupError(f"cannot read '{path}' at {commit[:12]}")
        return data


def _git(root: str, *args: str) -> bytes | None:
    """git's output, or None if it failed; a LookupError if there is no git or no repository."""
    try:
        done = subprocess.run(
            ["git", "-C", root, *args], capture_output=True, check=False, timeout=120
        )
    except FileNotFoundError:
        raise LookupError("a source revision needs git, which is not installed") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        if "not a git repository" in err:
            raise LookupError(f"{root} is not in a git work tree; a source revision needs one")
        return None
    return done.stdout
