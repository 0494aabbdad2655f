from __future__ import annotations

import pytest

from hodei_api.v1 import jobs_pb2
from hodei_server.store.states import (
    FINAL_STATES,
    MAX_IGNORED_ATTEMPTS,
    NEVER_RETRIED,
    Condition,
    Decision,
    FailureAction,
    FailureRule,
    IndexTally,
    JobState,
    RetryPolicy,
    Waited,
    after_attempt,
    after_dependencies,
    after_indexes,
    can_transition,
    condition_met,
    failure_action,
    initial_state,
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
        (JobState.BLOCKED, JobState.PENDING, True),
        (JobState.BLOCKED, JobState.RUNNING, True),
        (JobState.BLOCKED, JobState.CANCELLED, True),
        (JobState.BLOCKED, JobState.ASSIGNED, False),
        (JobState.BLOCKED, JobState.SUCCEEDED, False),
        (JobState.PENDING, JobState.BLOCKED, False),
        (JobState.RUNNING, JobState.BLOCKED, False),
    ],
)
def test_transitions(current: JobState, new: JobState, legal: bool) -> None:
    assert can_transition(current, new) is legal


def test_sources_match_transitions() -> None:
    assert sources_of(JobState.RUNNING) == ["ASSIGNED", "BLOCKED"]
    assert sources_of(JobState.CANCELLED) == ["ASSIGNED", "BLOCKED", "PENDING", "RUNNING"]


def test_new_jobs_wait_blocked_and_indexed_ones_run_their_indexes() -> None:
    assert initial_state(waits=False, indexed=False) is JobState.PENDING
    assert initial_state(waits=False, indexed=True) is JobState.RUNNING
    assert initial_state(waits=True, indexed=False) is JobState.BLOCKED
    assert initial_state(waits=True, indexed=True) is JobState.BLOCKED
    assert not JobState.BLOCKED.is_final


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


# ---- the failure policy ----------------------------------------------------------------

RULES = [
    FailureRule(FailureAction.FAIL_JOB, frozenset({42})),
    FailureRule(FailureAction.IGNORE, frozenset({75})),
    FailureRule(FailureAction.FAIL_INDEX, frozenset({0, 1}), not_in=True),
]


@pytest.mark.parametrize(
    ("exit_code", "action"),
    [(42, FailureAction.FAIL_JOB), (75, FailureAction.IGNORE), (3, FailureAction.FAIL_INDEX),
     (1, None), (None, None)],
)
def test_the_first_matching_rule_decides(exit_code: int | None,
                                         action: FailureAction | None) -> None:
    assert failure_action(RULES, exit_code) is action


def test_failure_actions_come_before_the_retry_policy() -> None:
    retried = RetryPolicy(on=frozenset({JobState.FAILED}))
    assert after_attempt(JobState.FAILED, 1, 5, retried, action=FailureAction.FAIL_JOB) == \
        Decision(JobState.FAILED, fails_parent=True)
    assert after_attempt(JobState.FAILED, 1, 5, retried, action=FailureAction.FAIL_INDEX) == \
        Decision(JobState.FAILED)
    counted = after_attempt(JobState.FAILED, 1, 5, retried, action=FailureAction.COUNT)
    assert (counted.state, counted.refund) == (JobState.PENDING, 0)
    # An ignored failure runs again even without a retry policy, its attempt refunded.
    ignored = after_attempt(JobState.FAILED, 1, 1, RetryPolicy(), action=FailureAction.IGNORE)
    assert (ignored.state, ignored.refund) == (JobState.PENDING, 1)
    bounded = after_attempt(JobState.FAILED, MAX_IGNORED_ATTEMPTS, MAX_IGNORED_ATTEMPTS,
                            RetryPolicy(), action=FailureAction.IGNORE)
    assert bounded == Decision(JobState.FAILED)
    # Rules are about exit codes of failed attempts: other endings go by the retry policy.
    assert after_attempt(JobState.LOST, 1, 3, RetryPolicy(),
                         action=FailureAction.FAIL_JOB).state is JobState.PENDING


# ---- dependencies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "state", "met"),
    [
        (Condition.SUCCEEDED, JobState.SUCCEEDED, True),
        (Condition.SUCCEEDED, JobState.FAILED, False),
        (Condition.SUCCEEDED, JobState.CANCELLED, False),
        (Condition.SUCCEEDED, JobState.RUNNING, None),
        (Condition.FINISHED, JobState.TIMED_OUT, True),
        (Condition.FINISHED, JobState.SUCCEEDED, True),
        (Condition.FINISHED, JobState.BLOCKED, None),
        (Condition.FAILED, JobState.FAILED, True),
        (Condition.FAILED, JobState.CANCELLED, True),
        (Condition.FAILED, JobState.SUCCEEDED, False),
        (Condition.FAILED, JobState.PENDING, None),
    ],
)
def test_conditions(condition: Condition, state: JobState, met: bool | None) -> None:
    assert condition_met(condition, state) is met


def test_a_blocked_job_waits_starts_or_is_cancelled_with_a_reason() -> None:
    a = Waited("a", Condition.SUCCEEDED, JobState.SUCCEEDED)
    b = Waited("b", Condition.FINISHED, JobState.RUNNING)
    c = Waited("c", Condition.SUCCEEDED, JobState.FAILED)
    waiting = after_dependencies([a, b], indexed=False)
    assert waiting.state is JobState.BLOCKED
    assert waiting.reason == "waiting for job b to finish (now RUNNING)"
    never = after_dependencies([b, c], indexed=False)
    assert never.state is JobState.CANCELLED
    assert never.reason == "dependency never met: job c ended FAILED but had to succeed"
    assert after_dependencies([a], indexed=False).state is JobState.PENDING
    assert after_dependencies([a], indexed=True).state is JobState.RUNNING


# ---- indexed jobs ----------------------------------------------------------------------


def tally(**kwargs: object) -> IndexTally:
    values: dict[str, object] = {"completions": 5, "parallelism": 2, "blocked": 0,
                                 "queued": 0, "succeeded": 0, "failed": []}
    values.update(kwargs)
    return IndexTally(**values)  # type: ignore[arg-type]


def test_an_indexed_job_keeps_its_parallelism_and_ends_when_its_indexes_did() -> None:
    assert after_indexes(tally(blocked=3, queued=1, succeeded=1)).start == 1
    assert after_indexes(tally(blocked=3, queued=2)).start == 0
    assert after_indexes(tally(blocked=1, queued=0, succeeded=4)).start == 1
    assert after_indexes(tally(succeeded=5)).state is JobState.SUCCEEDED
    failed = after_indexes(tally(succeeded=3, failed=[4, 1]))
    assert (failed.state, failed.reason) == (JobState.FAILED, "2 of 5 indexes failed (1, 4)")
    # A failed index whose policy fails the job ends it at once, whatever still runs.
    early = after_indexes(tally(queued=2, blocked=2, failed=[0], failing_job=0))
    assert early.state is JobState.FAILED and "index 0" in early.reason
    going = after_indexes(tally(queued=1, succeeded=2, failed=[3]))
    assert (going.state, going.start) == (JobState.RUNNING, 0)
