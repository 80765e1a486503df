"""Typed errors of agentctl. Pure data: no I/O.

The tree::

    AgentctlError                     everything agentctl raises on purpose
     ├── InvalidInput                 bad manifests or flags; carries Diagnostics; exit 1, nothing applied
     ├── PlanRejected                 the planner found errors (a missing version, a foreign model)
     ├── BackendError                 a server answered with an error or did not answer
     │    ├── TemporaryBackendError   worth retrying (connection refused, timeout, 429, 5xx)
     │    │    └── OutcomeUnknown     a create sent without an answer: it may still commit
     │    └── PermanentBackendError   retrying will not help (400, 403, 404 ...)
     ├── EvaluationError              an evaluation could not be made (a dataset, a scorer, a judge)
     ├── GateFailed                   a version missed its evaluation's thresholds: no alias, no traffic
     ├── ApplyFailed                  apply stopped part-way; carries the ChangeSet of what was done
     └── NotReady                     a served version did not become ready in time; traffic waits

A temporary error may carry ``retry_after`` (seconds), which the retry policy honours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.core.diagnostics import Diagnostics
    from controller.core.plan.changeset import ChangeSet

__all__ = [
    "AgentctlError",
    "ApplyFailed",
    "BackendError",
    "EvaluationError",
    "GateFailed",
    "InvalidInput",
    "InvalidPlanFile",
    "NotReady",
    "OutcomeUnknown",
    "PermanentBackendError",
    "PlanRejected",
    "StalePlan",
    "TemporaryBackendError",
]


class AgentctlError(Exception):
    """Base of every error agentctl raises on purpose."""


class InvalidInput(AgentctlError):
    """Manifests or arguments are invalid. ``diagnostics`` holds every problem found."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        super().__init__(f"{len(diagnostics.errors)} error(s) in the input")

    @classmethod
    def of(cls, *messages: str, field: str = "") -> InvalidInput:
        """Errors that belong to no file: a flag, an environment variable, a git revision."""
        from controller.core.diagnostics import Diagnostic, Diagnostics, Severity

        return cls(Diagnostics.of(Diagnostic(Severity.ERROR, m, field=field) for m in messages))


class PlanRejected(AgentctlError):
    """The planner found errors; no change may be applied."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        super().__init__(f"the plan has {len(diagnostics.errors)} error(s)")


class BackendError(AgentctlError):
    """A backend (MLflow, Kubernetes, a process) failed an operation."""

    def __init__(self, message: str, *, operation: str = "", target: str = "") -> None:
        self.operation = operation
        self.target = target
        super().__init__(message)


class TemporaryBackendError(BackendError):
    """Retrying may succeed: connection refused, timeout, HTTP 429 or 5xx."""

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        target: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, operation=operation, target=target)


class OutcomeUnknown(TemporaryBackendError):
    """A create was sent and no answer came back (a timeout, a broken connection, a gateway's
    5xx): the server may have carried it out, now or later. Retried like any temporary error;
    whoever retries must look for what the lost attempt may have made."""


class PermanentBackendError(BackendError):
    """Retrying will not help: the request itself is wrong or forbidden."""


class EvaluationError(AgentctlError):
    """An evaluation could not be made, for a reason in the repository or the agent rather than
    in a server: a dataset missing or malformed, a scorer file that does not load, a judge that
    cannot be reached. The message names the agent and the file or scorer; nothing is moved."""


class GateFailed(AgentctlError):
    """A version missed its evaluation's thresholds (recorded on the version): it gets no alias
    and no traffic. The message names the agent, the version, each scorer, figure and
    threshold."""

    def __init__(self, agent: str, version: int, reason: str, run_id: str = "") -> None:
        self.agent = agent
        self.version = version
        self.reason = reason
        self.run_id = run_id
        run = f" (evaluation run {run_id})" if run_id else ""
        #: The failure without the agent's name: what a change set's entry says.
        self.detail = f"version {version} failed its evaluation: {reason}{run}"
        super().__init__(f"{agent}: {self.detail}; it gets no alias and no traffic")


class ApplyFailed(AgentctlError):
    """Apply stopped at a change it could not make. ``changeset`` says what was done before;
    ``failed`` is the address of the change that failed ("" when none did: a lost lock)."""

    def __init__(
        self, message: str, changeset: ChangeSet, cause: BaseException, failed: str = ""
    ) -> None:
        self.changeset = changeset
        self.cause = cause
        self.failed = failed
        super().__init__(message)

    def after(self, done: ChangeSet) -> ApplyFailed:
        """The same failure, after ``done`` (earlier rounds of ``apply --wait``)."""
        from controller.core.plan.changeset import ChangeSet

        whole = ChangeSet(done.entries + self.changeset.entries)
        return ApplyFailed(str(self), whole, self.cause, self.failed)


class NotReady(AgentctlError):
    """A served version was started but is not ready yet (a Deployment not Available). Apply
    moves no traffic to it and stops the agent's remaining serving changes; a later apply or
    reconcile continues from there."""

    def __init__(self, agent: str, version: int, why: str = "") -> None:
        self.agent = agent
        self.version = version
        self.why = why
        detail = f" ({why})" if why else ""
        super().__init__(f"waiting for {agent} v{version} to become available{detail}")


class InvalidPlanFile(AgentctlError):
    """A saved plan (``agentctl plan --out``) that cannot be applied as it is: not JSON, not a
    saved plan, of another format version, missing a field, or changed after it was written (its
    checksum does not match)."""


class StalePlan(AgentctlError):
    """A saved plan made from manifests, or a registry or serving target, that have changed since:
    applying it would not do what was shown. Plan again."""
