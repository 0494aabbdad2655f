"""The job state machine: the one place that decides which transitions are legal.

Besides an attempt's ending (`after_attempt`), it decides what a BLOCKED job does once the
jobs it waits for have ended (`after_dependencies`), what a failed attempt's exit code does
(`failure_action`), and where an indexed job stands given its indexes (`after_indexes`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from hodei_api.v1 import jobs_pb2


class JobState(StrEnum):
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    LOST = "LOST"
    # Waits for other jobs (its dependencies), or for a parallelism slot of its indexed
    # job. Never claimed: the queue is PENDING jobs only.
    BLOCKED = "BLOCKED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    def to_proto(self) -> jobs_pb2.JobState.ValueType:
        return jobs_pb2.JobState.Value(f"JOB_STATE_{self.value}")

    @classmethod
    def from_proto(cls, value: int) -> JobState:
        name = jobs_pb2.JobState.Name(value)
        return cls(name.removeprefix("JOB_STATE_"))


FINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
)
ACTIVE_STATES = frozenset({JobState.ASSIGNED, JobState.RUNNING})

_OUTCOMES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.LOST}
)

# An indexed job has no attempt of its own: it is RUNNING from the moment its indexes may
# start (BLOCKED -> RUNNING when it waited for dependencies) until they have all ended.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.ASSIGNED, JobState.CANCELLED}),
    JobState.BLOCKED: frozenset({JobState.PENDING, JobState.RUNNING, JobState.CANCELLED}),
    JobState.ASSIGNED: frozenset({JobState.RUNNING, JobState.PENDING}) | _OUTCOMES,
    JobState.RUNNING: _OUTCOMES,
    JobState.LOST: frozenset({JobState.PENDING, JobState.FAILED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
}


def can_transition(current: JobState, new: JobState) -> bool:
    """True when a job in `current` may move to `new`."""
    return new in TRANSITIONS[current]


def sources_of(new: JobState) -> list[str]:
    """Every state from which `new` can be reached (for `WHERE state = ANY(...)`)."""
    return sorted(s.value for s, targets in TRANSITIONS.items() if new in targets)


def initial_state(*, waits: bool, indexed: bool) -> JobState:
    """The state a new job starts in: BLOCKED while it waits for other jobs, else RUNNING
    for an indexed job (its indexes are the ones queued) and PENDING for any other."""
    if waits:
        return JobState.BLOCKED
    return start_state(indexed=indexed)


def start_state(*, indexed: bool) -> JobState:
    """The state of a job whose dependencies are met."""
    return JobState.RUNNING if indexed else JobState.PENDING


RETRYABLE = {"lost": JobState.LOST, "failed": JobState.FAILED, "timed_out": JobState.TIMED_OUT}
# Endings no retry policy can follow: the job's state after them is the ending itself.
NEVER_RETRIED = frozenset({JobState.SUCCEEDED, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    on: frozenset[JobState] = frozenset({JobState.LOST})
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


class FailureAction(StrEnum):
    """What a failed attempt's exit code does (Kubernetes' podFailurePolicy actions)."""

    FAIL_JOB = "fail_job"
    FAIL_INDEX = "fail_index"
    IGNORE = "ignore"
    COUNT = "count"


# Attempts whose failures a rule ignores are not counted; this bounds them all the same.
MAX_IGNORED_ATTEMPTS = 1000


@dataclass(frozen=True, slots=True)
class FailureRule:
    """`action` for an exit code in `exit_codes` (or, with `not_in`, for any other)."""

    action: FailureAction
    exit_codes: frozenset[int]
    not_in: bool = False

    def matches(self, exit_code: int) -> bool:
        return (exit_code in self.exit_codes) != self.not_in


def failure_action(rules: Iterable[FailureRule], exit_code: int | None) -> FailureAction | None:
    """The action of the first rule matching a failed attempt's exit code, if any."""
    if exit_code is None:
        return None
    return next((rule.action for rule in rules if rule.matches(exit_code)), None)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a job goes after an attempt ended, and after how long it may run again.

    `refund`: attempts given back (an ignored failure does not count). `fails_parent`: the
    job is an index whose failure fails its whole indexed job."""

    state: JobState
    delay_seconds: float = 0.0
    refund: int = 0
    fails_parent: bool = False


def after_attempt(
    outcome: JobState, attempt: int, max_attempts: int, policy: RetryPolicy,
    jitter: Callable[[], float] = random.random, action: FailureAction | None = None,
) -> Decision:
    """The job's next state when `attempt` ended with `outcome`.

    A retried attempt waits `backoff * 2**(attempt-1)`, capped, scaled by a jitter in
    [0.5, 1) so that many jobs lost at once do not come back at once. `action`, the
    failure policy's verdict on a FAILED attempt's exit code, comes before the retry
    policy: fail_job and fail_index end the job, ignore runs it again without counting the
    attempt (up to MAX_IGNORED_ATTEMPTS in all), count leaves it to the retry policy.
    """
    if outcome not in _OUTCOMES:
        raise ValueError(f"{outcome} is not how an attempt ends")
    if outcome is JobState.FAILED and action is not None:
        if action is FailureAction.FAIL_JOB:
            return Decision(JobState.FAILED, fails_parent=True)
        if action is FailureAction.FAIL_INDEX:
            return Decision(JobState.FAILED)
        if action is FailureAction.IGNORE and attempt < MAX_IGNORED_ATTEMPTS:
            return Decision(JobState.PENDING, _backoff(policy, attempt, jitter), refund=1)
    if outcome in policy.on and attempt < max_attempts:
        return Decision(JobState.PENDING, _backoff(policy, attempt, jitter))
    if outcome is JobState.LOST:
        return Decision(JobState.FAILED)
    return Decision(outcome)


def _backoff(policy: RetryPolicy, attempt: int, jitter: Callable[[], float]) -> float:
    delay = min(policy.max_backoff_seconds, policy.backoff_seconds * 2 ** min(attempt - 1, 30))
    return delay * (0.5 + jitter() / 2)


# ---- dependencies -----------------------------------------------------------------------


class Condition(StrEnum):
    """The ending of a job another waits for (Slurm's afterok, afterany, afternotok)."""

    SUCCEEDED = "succeeded"
    FINISHED = "finished"
    FAILED = "failed"


def condition_met(condition: Condition, state: JobState) -> bool | None:
    """True when a job in `state` meets `condition`, False when it never will (it ended
    otherwise), None while it has not ended."""
    if not state.is_final:
        return None
    if condition is Condition.FINISHED:
        return True
    return (state is JobState.SUCCEEDED) == (condition is Condition.SUCCEEDED)


@dataclass(frozen=True, slots=True)
class Waited:
    """One dependency of a BLOCKED job, and where the job it names stands."""

    job_id: str
    condition: Condition
    state: JobState


@dataclass(frozen=True, slots=True)
class Verdict:
    """A BLOCKED job's next state (BLOCKED: still waiting) and the reason it shows."""

    state: JobState
    reason: str


_PHRASES = {Condition.SUCCEEDED: "succeed", Condition.FINISHED: "finish",
            Condition.FAILED: "fail"}


def after_dependencies(waited: Sequence[Waited], *, indexed: bool) -> Verdict:
    """A BLOCKED job's next state, given the jobs it waits for.

    Cancelled as soon as one condition can never hold; started when all hold; else still
    BLOCKED, its reason naming what it waits for."""
    waiting = []
    for dep in waited:
        met = condition_met(dep.condition, dep.state)
        if met is False:
            return Verdict(JobState.CANCELLED,
                           f"dependency never met: job {dep.job_id} ended {dep.state.value} "
                           f"but had to {_PHRASES[dep.condition]}")
        if met is None:
            waiting.append(f"job {dep.job_id} to {_PHRASES[dep.condition]} "
                           f"(now {dep.state.value})")
    if waiting:
        return Verdict(JobState.BLOCKED, "waiting for " + "; ".join(waiting))
    return Verdict(start_state(indexed=indexed), "")


# ---- indexed jobs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexTally:
    """An indexed job's indexes by where they stand."""

    completions: int
    parallelism: int
    blocked: int  # waiting for a parallelism slot
    queued: int  # PENDING, ASSIGNED, RUNNING (or LOST, about to be retried)
    succeeded: int
    failed: Sequence[int]  # the indexes that ended otherwise
    failing_job: int | None = None  # an index whose failure fails the whole job


@dataclass(frozen=True, slots=True)
class IndexVerdict:
    """An indexed job's next state, its reason, and how many blocked indexes may start."""

    state: JobState
    reason: str = ""
    start: int = 0


def after_indexes(tally: IndexTally) -> IndexVerdict:
    """Where an indexed job stands: SUCCEEDED once every index succeeded, FAILED once one
    failed that fails the job or every index ended, else RUNNING with up to `parallelism`
    indexes at once."""
    if tally.failing_job is not None:
        return IndexVerdict(JobState.FAILED,
                            f"index {tally.failing_job} failed and its failure policy "
                            "fails the job")
    if tally.succeeded >= tally.completions:
        return IndexVerdict(JobState.SUCCEEDED)
    if tally.succeeded + len(tally.failed) >= tally.completions:
        shown = ", ".join(str(i) for i in sorted(tally.failed)[:10])
        more = ", ..." if len(tally.failed) > 10 else ""
        return IndexVerdict(JobState.FAILED,
                            f"{len(tally.failed)} of {tally.completions} indexes failed "
                            f"({shown}{more})")
    free = max(0, tally.parallelism - tally.queued)
    return IndexVerdict(JobState.RUNNING, start=min(free, tally.blocked))
