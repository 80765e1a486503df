"""``agentctl gc``: find the runs and logged models agentctl logged for an owner that no registered
version references (an apply stopped between logging a model and registering it leaves them),
and delete them when asked.

What is read first is what agentctl logged, then the registry: a model logged and registered
between the two reads is seen referenced. One logged but not yet registered by an apply still
running is left alone by its age (``min_age_s``). Which ones are orphans is decided by the pure
:func:`controller.core.plan.orphans.orphans`; each delete is retried, and deleting what is
already gone succeeds, so an interrupted ``gc --yes`` is finished by the next.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.core.plan.orphans import Orphan, orphans
from controller.engine.retry import RetryPolicy
from controller.ports import Registry

__all__ = ["collect"]


def collect(
    registry: Registry,
    owner: str,
    *,
    now_ms: int,
    min_age_s: float,
    delete: bool,
    policy: RetryPolicy | None = None,
    on_deleted: Callable[[Orphan], None] | None = None,
) -> tuple[Orphan, ...]:
    """The owner's orphans; with ``delete``, each is deleted (logged models before the runs they
    were logged in) and ``on_deleted`` told."""
    call = (policy or RetryPolicy()).call
    logged = call(registry.observe_logged)
    found = orphans(logged, call(registry.observe), owner, now_ms, min_age_s)
    if delete:
        for orphan in found:
            if orphan.kind == "logged_model":
                call(lambda o=orphan: registry.delete_logged_model(o.id))  # type: ignore[misc]
            else:
                call(lambda o=orphan: registry.delete_run(o.id))  # type: ignore[misc]
            if on_deleted is not None:
                on_deleted(orphan)
    return found
