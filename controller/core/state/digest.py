"""Content digest of an agent's source, and the pinned-requirement rule. Pure data: no I/O.

The digest identifies what would be logged: the code file, the config file and the normalised,
sorted requirements. It is kept on each registered version as the tag
``agentctl.io/source-digest``, so the planner can tell whether the source is already registered
without downloading artifacts. Renaming or moving a file does not change the digest; changing a
byte of code or config, or any requirement, does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = ["DIGEST_FORMAT", "bound_digest", "normalize_requirement", "source_digest"]

DIGEST_FORMAT = 1


def normalize_requirement(line: str) -> str:
    """Parse one requirement and return its canonical form; raise ValueError unless pinned.

    Pinned means exactly one ``==`` (or ``===``) specifier without a wildcard, as in
    ``mlflow==3.17.2``, so that the same manifest always logs the same environment.
    """
    try:
        req = Requirement(line)
    except InvalidRequirement as exc:
        raise ValueError(f"not a valid requirement: {line!r} ({exc})") from None
    if req.url:
        raise ValueError(f"{line!r}: URL requirements cannot be pinned by version")
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        raise ValueError(f"{line!r} is not pinned: write it as {req.name}==<version>")
    extras = f"[{','.join(sorted(canonicalize_name(e) for e in req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    return f"{canonicalize_name(req.name)}{extras}{specs[0]}{marker}"


def source_digest(code: bytes, config: bytes | None, requirements: Sequence[str]) -> str:
    """``sha256:<hex>`` over code, config and the sorted, normalised requirements."""
    payload = {
        "format": DIGEST_FORMAT,
        "code": hashlib.sha256(code).hexdigest(),
        "config": hashlib.sha256(config).hexdigest() if config is not None else None,
        "requirements": sorted(requirements),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def bound_digest(source: str, prompts: Mapping[str, tuple[str, str]]) -> str:
    """The digest of a version logged from ``source`` (a :func:`source_digest`) with its
    prompt bindings resolved: binding key -> (prompt name, the bound version's content digest).
    Without bindings it is ``source`` itself, so versions logged before bindings existed keep
    matching; with them, a change of any bound prompt's content is a new version."""
    if not prompts:
        return source
    payload = {
        "format": DIGEST_FORMAT,
        "source": source,
        "prompts": {key: [name, digest] for key, (name, digest) in sorted(prompts.items())},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()
