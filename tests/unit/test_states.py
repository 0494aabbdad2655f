from __future__ import annotations

import pytest

from hodei_api.v1 import jobs_pb2
from hodei_server.states import FINAL_STATES, JobState, can_transition, sources_of


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
