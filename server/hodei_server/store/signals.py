"""The notifications replicas send each other, typed: one codec for every channel.

A store publishes a signal in the transaction that makes it true (`publish`), so it is
heard only if that transaction commits; every replica's listener LISTENs on all channels
(the named query `listen`) and decodes what arrives into the same types. Three statements
of queries.sql notify by themselves, in the payload format `decode` reads: insert_job and
finish_job (`hodei_jobs`, empty; `hodei_logs`, the job id; `hodei_flows`, empty) and
revoke_api_token (`hodei_tokens`, the token id).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from hodei_server.store.sqlfiles import query

log = logging.getLogger(__name__)

CHANNEL_JOBS = "hodei_jobs"
CHANNEL_LOGS = "hodei_logs"
CHANNEL_CANCEL = "hodei_cancel"
CHANNEL_DRAIN = "hodei_drain"
CHANNEL_TOKENS = "hodei_tokens"
CHANNEL_FLOWS = "hodei_flows"
# Sent by a trigger (migration 0009) after every statement that writes events.
CHANNEL_EVENTS = "hodei_events"
# Every channel, as the named query `listen` names them.
CHANNELS = (CHANNEL_JOBS, CHANNEL_LOGS, CHANNEL_CANCEL, CHANNEL_DRAIN, CHANNEL_TOKENS,
            CHANNEL_FLOWS, CHANNEL_EVENTS)


@dataclass(frozen=True, slots=True)
class JobsWaiting:
    """Pending jobs may be waiting (a new job, a retry): dispatchers look."""


@dataclass(frozen=True, slots=True)
class JobChanged:
    """A job's output or state changed: its log followers read on."""

    job_id: str


@dataclass(frozen=True, slots=True)
class FlowsDue:
    """A job that others follow ended, or one that waits was submitted: the leader looks at
    waiting jobs, indexed jobs and template runs."""


@dataclass(frozen=True, slots=True)
class EventsWritten:
    """New events were committed: the event feeds read on."""


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    """An API token was revoked: replicas drop their cached copy of it."""

    token_id: str


@dataclass(frozen=True, slots=True)
class CancelAttempt:
    """The user cancelled a running attempt: the replica holding its worker's stream tells
    the agent, with the user's reason.

    `origin` is the replica that took the request. It tells its own agents itself, at once,
    and ignores its own notification; every other replica tells its own agents what it
    hears. A worker streams to one replica, so its agent hears the signal once.
    """

    job_id: uuid.UUID
    attempt: int
    worker_id: uuid.UUID
    reason: str
    origin: str = ""


@dataclass(frozen=True, slots=True)
class DrainWorker:
    """An operator drains a worker: the replica holding its stream tells the agent (once,
    as for `CancelAttempt`)."""

    worker_id: uuid.UUID
    grace_seconds: float
    origin: str = ""


Signal = (JobsWaiting | JobChanged | TokenRevoked | CancelAttempt | DrainWorker | FlowsDue
          | EventsWritten)
# The signals meant for one agent, delivered by the replica that holds its stream.
AgentSignal = CancelAttempt | DrainWorker


def encode(signal: Signal) -> tuple[str, str]:
    """(channel, payload) of `signal`."""
    match signal:
        case JobsWaiting():
            return CHANNEL_JOBS, ""
        case JobChanged(job_id=job_id):
            return CHANNEL_LOGS, job_id
        case TokenRevoked(token_id=token_id):
            return CHANNEL_TOKENS, token_id
        case FlowsDue():
            return CHANNEL_FLOWS, ""
        case EventsWritten():
            return CHANNEL_EVENTS, ""
        case CancelAttempt():
            return CHANNEL_CANCEL, json.dumps({
                "job_id": str(signal.job_id), "attempt": signal.attempt,
                "worker_id": str(signal.worker_id), "reason": signal.reason,
                "origin": signal.origin,
            })
        case DrainWorker():
            return CHANNEL_DRAIN, json.dumps({
                "worker_id": str(signal.worker_id), "grace_seconds": signal.grace_seconds,
                "origin": signal.origin,
            })
    raise TypeError(f"not a signal: {signal!r}")


def decode(channel: str, payload: str) -> Signal | None:
    """The signal a notification carries; None (logged) for one that is not ours."""
    try:
        if channel == CHANNEL_JOBS:
            return JobsWaiting()
        if channel == CHANNEL_LOGS:
            return JobChanged(str(uuid.UUID(payload)))
        if channel == CHANNEL_TOKENS:
            return TokenRevoked(payload)
        if channel == CHANNEL_FLOWS:
            return FlowsDue()
        if channel == CHANNEL_EVENTS:
            return EventsWritten()
        fields: dict[str, Any] = json.loads(payload)
        if channel == CHANNEL_CANCEL:
            return CancelAttempt(uuid.UUID(fields["job_id"]), int(fields["attempt"]),
                                 uuid.UUID(fields["worker_id"]), str(fields["reason"]),
                                 str(fields["origin"]))
        if channel == CHANNEL_DRAIN:
            return DrainWorker(uuid.UUID(fields["worker_id"]), float(fields["grace_seconds"]),
                               str(fields["origin"]))
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("ignored a notification on %s that is not one of ours (%s)", channel,
                    type(exc).__name__)
        return None
    log.warning("ignored a notification on unknown channel %s", channel)
    return None


async def publish(conn: AsyncConnection[Any], *signals: Signal) -> None:
    """Notify `signals` in `conn`'s transaction (heard once it commits), one statement a
    channel."""
    by_channel: dict[str, list[str]] = defaultdict(list)
    for signal in signals:
        channel, payload = encode(signal)
        by_channel[channel].append(payload)
    for channel, payloads in by_channel.items():
        if len(payloads) == 1:
            await conn.execute(query("notify"), {"channel": channel, "payload": payloads[0]})
        else:
            await conn.execute(query("notify_each"), {"channel": channel, "payloads": payloads})
