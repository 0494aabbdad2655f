"""The codec of the notifications between replicas: what a store sends, a listener reads."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from hodei_server.store import signals
from hodei_server.store.signals import (
    CancelAttempt,
    DrainWorker,
    EventsWritten,
    FlowsDue,
    JobChanged,
    JobsWaiting,
    TokenRevoked,
)
from hodei_server.store.sqlfiles import query

JOB = uuid.uuid4()
WORKER = uuid.uuid4()


@pytest.mark.parametrize("signal", [
    JobsWaiting(),
    JobChanged(str(JOB)),
    TokenRevoked("0123456789abcdef"),
    CancelAttempt(JOB, 3, WORKER, "stop: it's wrong — ünïcode, \"quotes\"\nand a line",
                  "0a1b2c3d4e5f"),
    DrainWorker(WORKER, 12.5, "0a1b2c3d4e5f"),
    FlowsDue(),
    EventsWritten(),
])
def test_every_signal_decodes_to_itself(signal: signals.Signal) -> None:
    assert signals.decode(*signals.encode(signal)) == signal


def test_what_sql_notifies_by_itself_decodes() -> None:
    # insert_job, finish_job and revoke_api_token build these payloads in SQL.
    assert signals.decode("hodei_jobs", "") == JobsWaiting()
    assert signals.decode("hodei_logs", str(JOB)) == JobChanged(str(JOB))
    assert signals.decode("hodei_tokens", "0123456789abcdef") == TokenRevoked("0123456789abcdef")
    assert signals.decode("hodei_flows", "") == FlowsDue()
    # The trigger of migration 0009, after every statement that writes events.
    assert signals.decode("hodei_events", "") == EventsWritten()


@pytest.mark.parametrize(("channel", "payload"), [
    ("hodei_cancel", f"{JOB} 1 {WORKER}"),  # not JSON
    ("hodei_cancel", '{"job_id": "x", "attempt": 1, "worker_id": "y", "reason": ""}'),
    ("hodei_drain", json.dumps({"worker_id": str(WORKER)})),
    ("hodei_logs", "not a job id"),
    ("somebody_elses", "anything"),
])
def test_a_notification_that_is_not_ours_is_ignored(channel: str, payload: str) -> None:
    assert signals.decode(channel, payload) is None


def test_the_listener_listens_on_every_channel() -> None:
    listened = re.findall(r"^LISTEN (\w+);$", query("listen"), re.MULTILINE)
    assert sorted(listened) == sorted(signals.CHANNELS)
    assert {signals.encode(s)[0] for s in (JobsWaiting(), JobChanged(str(JOB)),
                                           TokenRevoked("t"), CancelAttempt(JOB, 1, WORKER, ""),
                                           DrainWorker(WORKER, 0), FlowsDue(),
                                           EventsWritten())} \
        == set(signals.CHANNELS)
