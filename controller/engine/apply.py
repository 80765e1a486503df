"""The executor: carry out a plan's changes, in order, through the ports. Returns a ChangeSet.

Apply does only what ``plan.changes`` says (Terraform's rule), each primitive call under the
retry policy. Every primitive is idempotent (set, delete-if-present, create-or-find), so a run
that stops part-way is finished by the next plan and apply. A version is logged only after a
fresh look for its digest, so a retried or repeated apply never registers the same source twice.
Each source is snapshotted first (:mod:`controller.engine.snapshot`) and logged from the snapshot,
whose digest must be the plan's: an apply refuses files that changed since the plan, and a file
edited while the apply runs is never logged under the digest checked.

Two applies that still race (no lock between them: the controller beside a CLI apply), or a
create the server commits after its request timed out, can register a source twice. So every
create attempt carries its own id (``agentctl.io/create-attempt``), and after creating, the apply
looks again: of the versions with the digest the lowest is the one (as the planner resolves
``current``), and the apply deletes every other version its own attempts made, waiting up to
``RetryPolicy.settle`` seconds for an attempt that got no answer to show up. Aliases and traffic
resolve to the version kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from controller.core.environment.record import aliased_at_tag, iso
from controller.core.errors import (
    ApplyFailed,
    BackendError,
    GateFailed,
    NotReady,
    OutcomeUnknown,
    PlanRejected,
    TemporaryBackendError,
)
from controller.core.plan.changes import (
    PROMPT_KINDS,
    SERVING_KINDS,
    Action,
    AliasTarget,
    Change,
    EvaluationRun,
    Kind,
    Pending,
    Plan,
    RolloutRecord,
    RoutingState,
    ServerState,
    ShadowState,
    Target,
    TrafficSplit,
    VersionCreate,
)
from controller.core.plan.changeset import ChangeSet, Entry, Verb
from controller.core.prompt.binding import PROMPTS_TAG, pins_tag
from controller.core.state.observed import (
    ATTEMPT_TAG,
    WRITTEN_BY_TAG,
)
from controller.engine import snapshot
from controller.engine.prompt_apply import PromptExecutor, write_model, write_version
from controller.engine.retry import RetryPolicy
from controller.engine.snapshot import Snapshot, SourceChanged
from controller.engine.tagops import tag_ops
from controller.engine.verdicts import Evaluations
from controller.ports import Evaluator, Registry, ServingTarget, SourceHistory

__all__ = ["SourceChanged", "apply"]


def apply(
    plan: Plan,
    registry: Registry,
    *,
    root: str,
    policy: RetryPolicy | None = None,
    on_entry: Callable[[Entry], None] | None = None,
    serving: ServingTarget | None = None,
    stop: Callable[[], bool] | None = None,
    workers: int = 1,
    written_by: str = "",
    history: SourceHistory | None = None,
    evaluator: Evaluator | None = None,
    wall: Callable[[], float] = time.time,
) -> ChangeSet:
    """Make exactly the plan's changes, in order. ``stop`` is asked before each change: once it
    says so, the change in flight has finished and the rest are left for the next apply (every
    change is idempotent, and the next plan starts from what is there). ``written_by``
    (``agentctl <version>``), when given, is tagged on every model and version created or
    changed (WRITTEN_BY_TAG; not planned, so never a change by itself).

    With ``workers`` > 1, agents are applied side by side on that many threads, each agent's
    changes in their order; logging a model and every serving change still run one at a time.
    After a failure no agent starts another change; the ones in flight finish, and the
    ChangeSet holds everything done, in plan order.

    An evaluation (``evaluator``) whose version misses a threshold is recorded on the version
    and is not a failure of the apply: the agent's aliases and serving changes after it are
    skipped (nothing moves to the version), other agents go on, and the ChangeSet says
    ``failed`` for it."""
    if plan.has_errors:
        raise PlanRejected(plan.diagnostics)
    if serving is None and any(c.kind in SERVING_KINDS for c in plan.changes):
        raise ValueError("the plan changes serving, but no serving target was given")
    if evaluator is None and any(c.kind is Kind.EVALUATION for c in plan.changes):
        raise ValueError("the plan evaluates versions, but no evaluator was given")
    executor = _Executor(
        registry, root, policy or RetryPolicy(), serving, plan.owner, written_by, history, wall
    )
    executor.evaluations = (
        Evaluations(registry, executor.policy, evaluator, root, plan.owner)
        if evaluator is not None
        else None
    )
    try:
        return _apply(plan, executor, on_entry, stop, workers)
    finally:
        executor.close()


def _apply(
    plan: Plan,
    executor: _Executor,
    on_entry: Callable[[Entry], None] | None,
    stop: Callable[[], bool] | None,
    workers: int,
) -> ChangeSet:
    # Every source is snapshotted and digested before the first write: a plan whose files
    # changed is refused whole, not half-way.
    try:
        for change in plan.changes:
            executor.check_source(change)
    except SourceChanged as exc:
        raise ApplyFailed(str(exc), ChangeSet(), exc, change.address) from exc
    # Deleting a model no manifest declares (prune), and everything of an agent that is only
    # being removed, waits until the rest has gone through without a failure, as it does when
    # applying one change at a time: nothing is deleted in an apply that fails.
    removal_only = {
        agent
        for agent in {c.agent for c in plan.changes}
        if all(c.action is Action.DELETE for c in plan.changes if c.agent == agent)
    }
    late = {
        i
        for i, c in enumerate(plan.changes)
        if c.agent in removal_only
        or (c.kind in (Kind.REGISTERED_MODEL, Kind.PROMPT) and c.action is Action.DELETE)
    }
    done: dict[int, Entry] = {}
    failures: list[tuple[int, BaseException]] = []
    lock = threading.Lock()

    def halted() -> bool:
        return bool(failures) or (stop is not None and stop())

    def run_lane(indexes: list[int]) -> None:
        for i in indexes:
            if halted():
                return
            change = plan.changes[i]
            try:
                entry = executor.run(change)
            except GateFailed as exc:
                # Recorded on the version; what would move to it waits for a version that passes.
                executor.gated[change.agent] = str(exc)
                entry = Entry(change.address, Verb.FAILED, exc.detail)
            except NotReady as exc:
                # Traffic never moves to a version that is not ready: the agent's traffic,
                # shadow and server stops wait for a later apply (or reconcile), which plans
                # them again.
                executor.waiting[change.agent] = str(exc)
                entry = Entry(change.address, Verb.WAITING, str(exc))
            except BaseException as exc:  # a backend's error, or a bug: either way, stop all
                with lock:
                    failures.append((i, exc))
                return
            with lock:
                done[i] = entry
                if on_entry is not None:
                    on_entry(entry)

    def run_phase(indexes: list[int]) -> None:
        lanes: dict[str, list[int]] = {}
        for i in indexes:
            lanes.setdefault(plan.changes[i].agent, []).append(i)
        if workers <= 1 or len(lanes) <= 1:
            run_lane(indexes)
            return
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply")
        try:
            for future in [pool.submit(run_lane, lane) for lane in lanes.values()]:
                future.result()
        except BaseException as exc:  # Ctrl-C, SIGTERM: no lane starts another change
            with lock:
                failures.append((-1, exc))
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # Prompts first: agents' new versions pin the prompt versions they register.
    prompts = [i for i, c in enumerate(plan.changes) if c.kind in PROMPT_KINDS and i not in late]
    if prompts:
        run_phase(prompts)
    if not prompts or not halted():  # (stop is asked once per change: not for an empty phase)
        run_phase([i for i in range(len(plan.changes)) if i not in late and i not in prompts])
    if not halted():
        run_phase(sorted(late))
    changeset = ChangeSet(tuple(done[i] for i in sorted(done)))
    if failures:
        first, error = min(failures, key=lambda f: f[0])
        if not isinstance(error, (BackendError, SourceChanged)):
            raise error
        address = plan.changes[first].address
        raise ApplyFailed(f"{address}: {error}", changeset, error, address) from error
    return changeset


class _Executor:
    def __init__(
        self,
        registry: Registry,
        root: str,
        policy: RetryPolicy,
        serving: ServingTarget | None,
        owner: str = "",
        written_by: str = "",
        history: SourceHistory | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.wall = wall  # the time an alias moves, as recorded
        self.history = history
        self.owner = owner
        self.written_by = written_by
        self.stamp = {WRITTEN_BY_TAG: written_by} if written_by else {}
        self.serving = serving
        self.root = root
        self.policy = policy
        self.created: dict[tuple[str, str], int] = {}  # (model, digest) -> version number
        self.sources: dict[str, Snapshot] = {}  # address -> its source, as checked
        self.waiting: dict[str, str] = {}  # agent -> the version its serving waits for
        self.gated: dict[str, str] = {}  # agent -> the version that failed its evaluation
        self.evaluations: Evaluations | None = None
        self.prompts = PromptExecutor(registry, policy, self.stamp)
        self._one_at_a_time = threading.Lock()

    def check_source(self, change: Change) -> None:
        if (
            change.kind is Kind.MODEL_VERSION
            and change.action is Action.CREATE
            and change.after_as(VersionCreate).copy_from is None  # (a copy has no files)
        ):
            self.sources[change.address] = snapshot.take(
                change.agent,
                self.root,
                change.after_as(VersionCreate),
                self.owner,
                self.history,
                self.written_by,
            )

    def close(self) -> None:
        """Remove the sources' snapshots."""
        for taken in self.sources.values():
            taken.remove()

    def run(self, change: Change) -> Entry:
        if (
            change.kind in SERVING_KINDS
            or change.kind is Kind.EVALUATION
            or (change.kind is Kind.MODEL_VERSION and change.action is Action.CREATE)
        ):
            # One at a time: logging a model runs MLflow's fluent API (process-wide state), and
            # a serving target is driven as one sequence.
            with self._one_at_a_time:
                return self._run(change)
        return self._run(change)

    def _run(self, change: Change) -> Entry:
        held = self.waiting.get(change.agent)
        # Other servers of the agent still start (they come up side by side); nothing that
        # moves traffic, or stops a server traffic may still need, runs.
        if held is not None and (
            change.kind in (Kind.TRAFFIC, Kind.SHADOW, Kind.ROUTES)
            or (change.kind is Kind.SERVED_VERSION and change.action is Action.DELETE)
        ):
            return Entry(change.address, Verb.SKIPPED, held)
        gated = self.gated.get(change.agent)
        if gated is not None and (
            change.kind in SERVING_KINDS
            or (change.kind is Kind.ALIAS and change.action is not Action.DELETE)
        ):
            return Entry(change.address, Verb.SKIPPED, gated)
        handler = {
            Kind.REGISTERED_MODEL: self._model,
            Kind.MODEL_VERSION: self._version,
            Kind.ALIAS: self._alias,
            Kind.SERVED_VERSION: self._served,
            Kind.TRAFFIC: self._traffic,
            Kind.SHADOW: self._shadow,
            Kind.ROUTES: self._routes,
            Kind.ROLLOUT: self._rollout,
            Kind.EVALUATION: self._evaluation,
            Kind.PROMPT: self.prompts.run,
            Kind.PROMPT_VERSION: self.prompts.run,
            Kind.PROMPT_ALIAS: self.prompts.run,
        }[change.kind]
        return handler(change)

    def _model(self, c: Change) -> Entry:
        return write_model(c, self.registry, self.policy, self.stamp, self.registry.create_model)

    def _rollout(self, c: Change) -> Entry:
        """Record a rollout's state in the model's tags (a command it consumed is deleted)."""
        r, call = self.registry, self.policy.call
        before = c.before_as(RolloutRecord).tags if c.before is not None else {}
        after = c.after_as(RolloutRecord).tags if c.after is not None else {}
        set_tags, delete_tags = tag_ops(before, after)
        for key, value in set_tags:  # the state is one tag: one write
            call(lambda k=key, v=value: r.set_model_tag(c.model, k, v))  # type: ignore[misc]
        for key in delete_tags:
            call(lambda k=key: r.delete_model_tag(c.model, k))  # type: ignore[misc]
        if c.action is Action.DELETE:
            return Entry(c.address, Verb.DELETED, c.reason)
        verb = Verb.CREATED if c.action is Action.CREATE else Verb.CONFIGURED
        return Entry(c.address, verb, c.reason)

    def _version(self, c: Change) -> Entry:
        r, call = self.registry, self.policy.call
        if c.action is Action.CREATE and c.after_as(VersionCreate).copy_from is not None:
            return self._copy(c, c.after_as(VersionCreate))
        if c.action is Action.CREATE:
            new = c.after_as(VersionCreate)
            digest = new.digest
            source = self.sources[c.address].source
            pinned: dict[str, str] = {}
            if new.prompts:
                # Each bound prompt version by its number, pinned into the logged model config.
                pinned = self.prompts.pins(new.prompts, c.address)
                source = replace(source, prompts=pinned)

            attempts: list[str] = []  # the id of every create attempt, in order
            unknown: set[str] = set()  # attempts sent without an answer

            def find_or_log() -> tuple[int, bool]:
                existing = r.find_version(c.model, digest)
                if existing is not None:
                    return existing, False
                attempt = uuid.uuid4().hex
                attempts.append(attempt)
                tags = {**new.tags, ATTEMPT_TAG: attempt, **self.stamp}
                if pinned:
                    tags[PROMPTS_TAG] = pins_tag(pinned)
                try:
                    return r.log_version(c.model, source, tags, new.description), True
                except OutcomeUnknown:
                    unknown.add(attempt)
                    raise

            try:
                number, logged = call(find_or_log)
            except BackendError:
                if unknown:  # what lost attempts made: one version at most outlives this apply
                    # The registry still failing is said by the error raised below.
                    with contextlib.suppress(BackendError):
                        self._settle(c.model, digest, attempts, unknown)
                raise
            if attempts:
                number = self._settle(c.model, digest, attempts, unknown) or number
            self.created[(c.model, digest)] = number
            if not logged:
                return Entry(c.address, Verb.UNCHANGED, f"already registered as version {number}")
            return Entry(c.address, Verb.CREATED, f"version {number}")
        return write_version(c, r, self.policy, self.stamp)

    def _copy(self, c: Change, new: VersionCreate) -> Entry:
        """A promotion: the copy found by its digest if an earlier apply made it, else made; as
        for a logged version, each attempt is tagged, and a copy an attempt made without its
        answer reaching us is kept (the lowest) or deleted: one copy outlives the apply."""
        r, call = self.registry, self.policy.call
        assert new.copy_from is not None
        source = new.copy_from
        attempts: list[str] = []
        unknown: set[str] = set()

        def find_or_copy() -> tuple[int, bool]:  # each retry looks first
            existing = r.find_version(c.model, new.digest)
            if existing is not None:
                return existing, False
            attempt = uuid.uuid4().hex
            attempts.append(attempt)
            tags = {**new.tags, ATTEMPT_TAG: attempt, **self.stamp}
            try:
                return r.copy_version(c.model, source, tags, new.copy_registry), True
            except OutcomeUnknown:
                unknown.add(attempt)
                raise

        try:
            number, copied = call(find_or_copy)
        except BackendError:
            if unknown:
                with contextlib.suppress(BackendError):
                    self._settle(c.model, new.digest, attempts, unknown)
            raise
        if attempts:
            number = self._settle(c.model, new.digest, attempts, unknown) or number
        self.created[(c.model, new.digest)] = number
        if not copied:
            return Entry(c.address, Verb.UNCHANGED, f"already promoted as version {number}")
        at = f" in {new.copy_registry}" if new.copy_registry is not None else ""
        return Entry(c.address, Verb.CREATED, f"version {number}, copied from {source}{at}")

    def _settle(
        self, model: str, digest: str, attempts: list[str], unknown: set[str]
    ) -> int | None:
        """The version to keep for ``digest`` once this apply's attempts are accounted for: the
        lowest usable one. Every other version an attempt of this apply made is deleted; an
        attempt that got no answer is waited for (``policy.settle`` seconds) and deleted too
        when it commits late, unless it is the lowest."""
        r, call, policy = self.registry, self.policy.call, self.policy
        ours = set(attempts)
        deadline = policy.clock() + policy.settle
        while True:
            found = call(lambda: r.versions_with_digest(model, digest))
            keep = found[0].number if found else None
            for v in found:
                if v.number != keep and v.tags.get(ATTEMPT_TAG) in ours:
                    call(lambda n=v.number: r.delete_version(model, n))  # type: ignore[misc]
            seen = {v.tags.get(ATTEMPT_TAG) for v in found}
            if not (unknown - seen) or policy.clock() >= deadline:
                return keep
            policy.sleep(1.0)

    def _alias(self, c: Change) -> Entry:
        r, call = self.registry, self.policy.call
        if c.action is Action.DELETE:
            call(lambda: r.delete_alias(c.model, c.name))
            return Entry(c.address, Verb.DELETED, c.name)
        number = self._number(c, c.after_as(AliasTarget).target)
        # When it moved, on the version first (the start of a promotion's soak, the history's
        # alias move): a crash before the move leaves a record the next move writes again.
        moved = iso(self.wall())
        call(lambda: r.set_version_tag(c.model, number, aliased_at_tag(c.name), moved))
        call(lambda: r.set_alias(c.model, c.name, number))
        verb = Verb.CREATED if c.action is Action.CREATE else Verb.CONFIGURED
        return Entry(c.address, verb, f"-> version {number}")

    def _evaluation(self, c: Change) -> Entry:
        assert self.evaluations is not None
        run = c.after_as(EvaluationRun)
        number = self._number(c, run.target)
        verdict, figures = self.evaluations.evaluate(c.agent, c.model, number, run)
        if not verdict.passed:
            raise GateFailed(c.agent, number, verdict.reason, figures.run_id)
        return Entry(c.address, Verb.PASSED, f"version {number}: {figures.summary}")

    def _number(self, c: Change, target: Target) -> int:
        """The version a plan value names: its number, or (known after apply) the version with
        its digest, created earlier in this run or found in the registry."""
        if not isinstance(target, Pending):
            return target
        digest = target.digest
        found = self.created.get((c.model, digest))
        if found is None:
            found = self.policy.call(lambda: self.registry.find_version(c.model, digest))
        if found is None:
            raise BackendError(f"no version of '{c.model}' has digest {digest}", target=c.address)
        return found

    def _served(self, c: Change) -> Entry:
        s, call = self.serving, self.policy.call
        assert s is not None
        if c.action is Action.DELETE:
            stopped = self._number(c, c.before_as(ServerState).target)
            call(lambda: s.stop_version(c.agent, stopped))
            return Entry(c.address, Verb.DELETED, f"version {stopped}")
        number = self._number(c, c.after_as(ServerState).target)
        url = call(lambda: s.start_version(c.agent, c.model, number))
        verb = {Action.CREATE: Verb.CREATED, Action.REPLACE: Verb.CREATED}.get(
            c.action, Verb.CONFIGURED
        )
        return Entry(c.address, verb, f"version {number} ready at {url}")

    def _traffic(self, c: Change) -> Entry:
        s, call = self.serving, self.policy.call
        assert s is not None
        if c.action is Action.DELETE:
            call(lambda: s.remove_route(c.agent))
            return Entry(c.address, Verb.DELETED, "route removed")
        weights = {self._number(c, t): p for t, p in c.after_as(TrafficSplit).weights}

        def route() -> None:
            s.set_weights(c.agent, c.model, weights)
            # Argo Rollouts' verify step: the route must say what was set before anything that
            # follows counts on it; a router that has not caught up is asked again, with backoff.
            if not s.verify_weight(c.agent, weights):
                raise TemporaryBackendError(
                    f"agent {c.agent}: the route does not carry the weights just set "
                    f"({_split(weights)})",
                    operation="verify weights",
                    target=c.address,
                )

        call(route)
        verb = Verb.CREATED if c.action is Action.CREATE else Verb.CONFIGURED
        return Entry(c.address, verb, _split(weights))

    def _shadow(self, c: Change) -> Entry:
        s, call = self.serving, self.policy.call
        assert s is not None
        if c.action is Action.DELETE:
            call(lambda: s.set_mirror(c.agent, None))
            return Entry(c.address, Verb.DELETED, "no shadow")
        shadow = c.after_as(ShadowState)
        mirror = (self._number(c, shadow.target), shadow.percent)
        call(lambda: s.set_mirror(c.agent, mirror))
        verb = Verb.CREATED if c.action is Action.CREATE else Verb.CONFIGURED
        return Entry(c.address, verb, f"v{mirror[0]} {mirror[1]}%")

    def _routes(self, c: Change) -> Entry:
        s, call = self.serving, self.policy.call
        assert s is not None
        if c.action is Action.DELETE:
            call(lambda: s.set_routing(c.agent, (), None))
            return Entry(c.address, Verb.DELETED, "no header routes, no affinity")
        routing = c.after_as(RoutingState)
        headers = tuple((h, v, self._number(c, t)) for h, v, t in routing.headers)
        call(lambda: s.set_routing(c.agent, headers, routing.affinity))
        verb = Verb.CREATED if c.action is Action.CREATE else Verb.CONFIGURED
        said = [f"{h}: {v} -> v{n}" for h, v, n in headers]
        if routing.affinity is not None:
            header, cookie = routing.affinity
            keys = [f"header {header}"] if header else []
            keys += [f"cookie {cookie}"] if cookie else []
            said.append(f"affinity ({', '.join(keys) or 'body only'})")
        return Entry(c.address, verb, "; ".join(said))


def _split(weights: Mapping[int, int]) -> str:
    return ", ".join(f"v{v} {p}%" for v, p in sorted(weights.items()))
