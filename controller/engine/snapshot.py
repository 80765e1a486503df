"""A snapshot of an agent's source, taken once at apply time: the bytes digested are the bytes
logged.

:func:`take` reads the code and config files once, writes those bytes into a private temporary
directory (``mkdtemp``: mode 0700, so no other user can change them), digests what the snapshot
holds and refuses it (:class:`SourceChanged`) unless that is the plan's digest. The version is
logged from the snapshot's paths, never the repository's: a file edited after the check can
never be logged under the checked digest. The requirements are the plan's lines, which is what
the digest covers.

What a snapshot path does to the logged model (MLflow's models from code,
``mlflow.pyfunc.log_model(python_model=<path>, model_config=<path>)``): the code file is copied
into the model under its base name, which the snapshot keeps, and loading joins the model's
directory with that base name, so artifacts and serving are as before; the config file is
parsed into the MLmodel file, whatever its path; only the MLmodel's ``model_code_path`` now
records the snapshot's path, which nothing reads but its base name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from controller.core.errors import AgentctlError
from controller.core.plan.changes import VersionCreate
from controller.core.state.digest import normalize_requirement, source_digest
from controller.engine.files import MAX_SOURCE_BYTES, Unreadable, read_regular
from controller.ports import SourceHistory, VersionSource

__all__ = ["Snapshot", "SourceChanged", "take"]


class SourceChanged(AgentctlError):
    """The agent's files changed between plan and apply."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The agent's source as checked: ``source`` names files inside ``directory``."""

    directory: str
    source: VersionSource

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def take(
    agent: str,
    root: str,
    after: VersionCreate,
    owner: str = "",
    history: SourceHistory | None = None,
    written_by: str = "",
) -> Snapshot:
    """Copy the source of ``after`` under ``root`` (or, if it names a commit, as ``history``
    reads it at that commit) into a private directory and check its digest against the plan's;
    the caller removes it (:meth:`Snapshot.remove`) once logged. ``owner`` goes on what is
    logged from it, and ``written_by`` (``agentctl <version>``)."""

    def read(ref: str) -> bytes:
        if after.commit is None:
            return read_regular(os.path.join(root, ref), MAX_SOURCE_BYTES)
        if history is None:
            raise SourceChanged(f"the source of {agent} is at a git revision, but no reader of "
                                "git history was given")  # fmt: skip
        try:
            return history.read(root, after.commit, ref, MAX_SOURCE_BYTES)
        except LookupError as exc:
            raise SourceChanged(f"cannot read the source of {agent}: {exc}") from exc

    try:  # regular files only, of a bounded size, as the loader read them
        code = read(after.code)
        config = read(after.config) if after.config else None
    except Unreadable as exc:
        raise SourceChanged(f"cannot read the source of {agent}: {exc}") from exc
    directory = tempfile.mkdtemp(prefix="agentctl-source-")
    try:
        code_path = _write(directory, "code", after.code, code)
        config_path = _write(directory, "config", after.config, config) if after.config else None
        # Digest what the snapshot holds: what will be logged.
        held = _read(code_path), _read(config_path) if config_path is not None else None
        reqs = after.pip_requirements
        digest = source_digest(*held, [normalize_requirement(x) for x in reqs])
        if digest != after.files_digest:
            raise SourceChanged(
                f"the source of {agent} changed since the plan ({after.files_digest[:19]}… -> "
                f"{digest[:19]}…); plan again"
            )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    # The version's digest (bound to its prompts, if any) is what its run is tagged with.
    source = VersionSource(
        agent, code_path, config_path, reqs, after.digest, after.code, owner, written_by
    )
    return Snapshot(directory, source)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _write(directory: str, kind: str, ref: str, data: bytes | None) -> str:
    """``directory/kind/<base name of ref>``, holding ``data``; its path."""
    assert data is not None
    os.mkdir(os.path.join(directory, kind), 0o700)
    path = os.path.join(directory, kind, os.path.basename(ref))
    with open(path, "xb") as fh:
        fh.write(data)
    return path
