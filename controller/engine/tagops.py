"""The tag writes that take a model's, a version's or a prompt's tags from ``before`` to
``after``: inventory tags (``agentctl.io/managed-*``) last, so a crash never loses track of a
tag agentctl set."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.state.observed import MANAGED_ALIASES_TAG, MANAGED_TAGS_TAG

__all__ = ["tag_ops"]

_LAST = (MANAGED_TAGS_TAG, MANAGED_ALIASES_TAG)


def tag_ops(
    before: Mapping[str, str], after: Mapping[str, str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """(tags to set, in order; keys to delete)."""
    deletes = sorted(k for k in before if k not in after)
    sets = [(k, v) for k, v in after.items() if before.get(k) != v]
    sets.sort(key=lambda kv: (kv[0] in _LAST, kv[0]))
    return sets, deletes
