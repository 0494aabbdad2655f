"""The job state machine: the one place that decides which transitions are legal."""

from __future__ import annotations

import random
from collections.abc import Callable
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

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.ASSIGNED, JobState.CANCELLED}),
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


RETRYABLE = {"lost": JobState.LOST, "failed": JobState.FAILED, "timed_out": JobState.TIMED_OUT}
# Endings no retry policy can follow: the job's state after them is the ending itself.
NEVER_RETRIED = frozenset({JobState.SUCCEEDED, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    on: frozenset[JobState] = frozenset({JobState.LOST})
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a job goes after an attempt ended, and after how long it may run again."""

    state: JobState
    delay_seconds: float = 0.0


def after_attempt(
    outcome: JobState, attempt: int, max_attempts: int, policy: RetryPolicy,
    jitter: Callable[[], float] = random.random,
) -> Decision:
    """The job's next state when `attempt` ended with `outcome`.

    A retried attempt waits `backoff * 2**(attempt-1)`, capped, scaled by a jitter in
    [0.5, 1) so that many jobs lost at once do not come back at once.
    """
    if outcome not in _OUTCOMES:
        raise ValueError(f"{outcome} is not how an attempt ends")
    if outcome in policy.on and attempt < max_attempts:
        delay = min(policy.max_backoff_seconds,
                    policy.backoff_seconds * 2 ** min(attempt - 1, 30))
        return Decision(JobState.PENDING, delay * (0.5 + jitter() / 2))
    if outcome is JobState.LOST:
        return Decision(JobState.FAILED)
    return Decision(outcome)
