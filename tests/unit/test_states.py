from __future__ import annotations

import pytest

from hodei_api.v1 import jobs_pb2
from hodei_server.store.states import (
    FINAL_STATES,
    NEVER_RETRIED,
    Decision,
    JobState,
    RetryPolicy,
    after_attempt,
    can_transition,
    sources_of,
)


def test_final_states_have_no_way_out() -> None:
    for state in FINAL_STATES:
        assert not any(can_transition(state, other) for other in JobState)


@pytest.mark.parametrize(
    ("current", "new", "legal"),
    [
        (JobState.PENDING, JobState.ASSIGNED, True),
        (JobState.PENDING, JobState.CANCELLED, True),
        (JobState.PENDING, JobState.RUNNING, False),
        (JobState.PENDING, JobState.SUCCEEDED, False),
        (JobState.ASSIGNED, JobState.RUNNING, True),
        (JobState.ASSIGNED, JobState.FAILED, True),
        (JobState.RUNNING, JobState.SUCCEEDED, True),
        (JobState.RUNNING, JobState.PENDING, False),
        (JobState.RUNNING, JobState.LOST, True),
        (JobState.LOST, JobState.PENDING, True),
        (JobState.LOST, JobState.RUNNING, False),
        (JobState.SUCCEEDED, JobState.FAILED, False),
    ],
)
def test_transitions(current: JobState, new: JobState, legal: bool) -> None:
    assert can_transition(current, new) is legal


def test_sources_match_transitions() -> None:
    assert sources_of(JobState.RUNNING) == ["ASSIGNED"]
    assert sources_of(JobState.CANCELLED) == ["ASSIGNED", "PENDING", "RUNNING"]


def test_proto_round_trip() -> None:
    for state in JobState:
        assert JobState.from_proto(state.to_proto()) is state
    assert JobState.PENDING.to_proto() == jobs_pb2.JOB_STATE_PENDING


@pytest.mark.parametrize(
    ("outcome", "attempt", "policy", "expected"),
    [
        (JobState.SUCCEEDED, 1, RetryPolicy(), JobState.SUCCEEDED),
        (JobState.FAILED, 1, RetryPolicy(), JobState.FAILED),
        (JobState.LOST, 1, RetryPolicy(), JobState.PENDING),
        (JobState.LOST, 3, RetryPolicy(), JobState.FAILED),
        (JobState.FAILED, 1, RetryPolicy(on=frozenset({JobState.FAILED})), JobState.PENDING),
        (JobState.TIMED_OUT, 2, RetryPolicy(on=frozenset({JobState.TIMED_OUT})),
         JobState.PENDING),
        (JobState.LOST, 1, RetryPolicy(on=frozenset({JobState.FAILED})), JobState.FAILED),
        (JobState.CANCELLED, 1, RetryPolicy(on=frozenset({JobState.FAILED})),
         JobState.CANCELLED),
    ],
)
def test_what_follows_an_attempt(
    outcome: JobState, attempt: int, policy: RetryPolicy, expected: JobState
) -> None:
    assert after_attempt(outcome, attempt, 3, policy).state is expected


def test_backoff_doubles_is_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff_seconds=2, max_backoff_seconds=10)
    slowest = [after_attempt(JobState.LOST, n, 9, policy, jitter=lambda: 1.0).delay_seconds
               for n in range(1, 6)]
    assert slowest == [2, 4, 8, 10, 10]
    fastest = after_attempt(JobState.LOST, 3, 9, policy, jitter=lambda: 0.0)
    assert fastest == Decision(JobState.PENDING, 4.0)


def test_only_endings_can_follow_an_attempt() -> None:
    with pytest.raises(ValueError):
        after_attempt(JobState.RUNNING, 1, 3, RetryPolicy())


@pytest.mark.parametrize("outcome", sorted(NEVER_RETRIED))
def test_endings_never_retried_ignore_any_policy(outcome: JobState) -> None:
    everything = RetryPolicy(on=frozenset({JobState.LOST, JobState.FAILED,
                                           JobState.TIMED_OUT}))
    assert after_attempt(outcome, 1, 5, everything) == Decision(outcome)
