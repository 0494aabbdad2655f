"""One agent's conversation with this replica: the only place that speaks to an agent.

Every message the server sends an agent is built by a verb of `AgentSession` (run a job,
cancel it, drain, acknowledge what was stored), and only those verbs change what the
session knows of its agent (its reservations, whether it drains). The stream writer
(`hodei_server.api.agent.writer`) sends what the verbs queue, in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from hodei_api.v1 import agent_pb2, jobs_pb2

_CLOSE = None
# Label a provider puts on the workers it starts for one job each.
EPHEMERAL_LABEL = "hodei.io/ephemeral"
# How long a cancelled job may take to stop before the agent kills it.
CANCEL_GRACE_SECONDS = 5.0
# Why an agent is told to stop an attempt that was given to someone else meanwhile.
NOT_CURRENT = "this attempt is no longer current"
_HEARTBEAT_ACK = agent_pb2.ServerMessage(heartbeat_ack=agent_pb2.HeartbeatAck())


@dataclass(slots=True)
class Reservation:
    cpus: float
    memory_mb: int


@dataclass
class AgentSession:
    """One live Connect stream. READY means: this object exists and heartbeats are fresh."""

    worker_id: uuid.UUID
    name: str
    provider: str
    labels: dict[str, str]
    slots: int
    cpus: float
    memory_mb: int
    heartbeat_ttl: float
    # What the verbs queued for the stream writer; None closes the stream.
    outbox: asyncio.Queue[agent_pb2.ServerMessage | None] = field(
        default_factory=asyncio.Queue
    )
    running: dict[tuple[uuid.UUID, int], Reservation] = field(default_factory=dict)
    # Jobs handed to this agent over this stream (an ephemeral agent takes one).
    jobs_taken: int = 0
    last_heartbeat: float = field(default_factory=time.monotonic)
    idle_since: float = field(default_factory=time.monotonic)
    _draining: bool = False

    @property
    def draining(self) -> bool:
        """The agent was told to drain, or said it drains: it gets no new job."""
        return self._draining

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_heartbeat <= self.heartbeat_ttl

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    @property
    def free_cpus(self) -> float:
        if self.cpus <= 0:
            return float("inf")
        return self.cpus - sum(r.cpus for r in self.running.values())

    @property
    def free_memory_mb(self) -> int:
        if self.memory_mb <= 0:
            return 2**62
        return self.memory_mb - sum(r.memory_mb for r in self.running.values())

    @property
    def ephemeral(self) -> bool:
        return self.labels.get(EPHEMERAL_LABEL) == "true"

    @property
    def accepting(self) -> bool:
        if self.ephemeral and self.jobs_taken > 0:
            return False
        return not self._draining and self.alive and self.free_slots > 0

    def fits(self, selector: dict[str, str], cpus: float, memory_mb: int) -> bool:
        return (
            self.accepting
            and all(self.labels.get(k) == v for k, v in selector.items())
            and cpus <= self.free_cpus + 1e-9
            and memory_mb <= self.free_memory_mb
        )

    # --- what the server tells the agent ----------------------------------------------------

    def run_job(
        self, job_id: uuid.UUID, attempt: int, spec: jobs_pb2.JobSpec,
        secrets: Sequence[agent_pb2.SecretValue],
    ) -> None:
        """Reserve the attempt's slot and resources, and send it to the agent.

        Secret values exist only in this message, to this attempt's agent: never log it.
        """
        self.adopt(job_id, attempt, spec.resources.cpus, spec.resources.memory_mb)
        self._send(agent_pb2.ServerMessage(run_job=agent_pb2.RunJob(
            job_id=str(job_id), attempt=attempt, spec=spec, secrets=secrets)))

    def cancel(self, job_id: uuid.UUID | str, attempt: int, reason: str) -> None:
        """Stop an attempt: SIGTERM to its process group, SIGKILL after the grace."""
        self._send(agent_pb2.ServerMessage(cancel_job=agent_pb2.CancelJobCommand(
            job_id=str(job_id), attempt=attempt, reason=reason,
            grace_seconds=CANCEL_GRACE_SECONDS)))

    def drain(self, grace_seconds: float = 0.0) -> bool:
        """Tell the agent to take no new job, finish (up to the grace) and exit; once.

        False when it drains already."""
        if self._draining:
            return False
        self._draining = True
        self._send(agent_pb2.ServerMessage(drain=agent_pb2.Drain(grace_seconds=grace_seconds)))
        return True

    def ack_heartbeat(self) -> None:
        """The heartbeat is stored: the agent's lease goes on."""
        self._send(_HEARTBEAT_ACK)

    def ack_logs(self, job_id: str, attempt: int, up_to_seq: int) -> None:
        """The attempt's chunks up to `up_to_seq` are stored: the agent may forget them."""
        self._send(agent_pb2.ServerMessage(log_ack=agent_pb2.LogAck(
            job_id=job_id, attempt=attempt, up_to_seq=up_to_seq)))

    def ack_finished(self, job_id: str, attempt: int) -> None:
        """The attempt's result is stored (or refused as stale): the agent may forget it,
        and its slot is free."""
        self._send(agent_pb2.ServerMessage(finished_ack=agent_pb2.FinishedAck(
            job_id=job_id, attempt=attempt)))
        self._release(uuid.UUID(job_id), attempt)

    def close(self) -> None:
        """End the stream once what is queued before this is written."""
        self.outbox.put_nowait(_CLOSE)

    # --- what the agent told the server -----------------------------------------------------

    def heard_heartbeat(self) -> None:
        self.last_heartbeat = time.monotonic()

    def adopt(self, job_id: uuid.UUID, attempt: int, cpus: float, memory_mb: int) -> None:
        """Count an attempt this agent runs against its slots and resources."""
        self.running[(job_id, attempt)] = Reservation(cpus, memory_mb)
        self.jobs_taken += 1

    def handed_back(self) -> bool:
        """The agent handed an attempt back, which it does only while it drains: send it
        nothing more. False when it was known to drain already."""
        if self._draining:
            return False
        self._draining = True
        return True

    def hand_back_refused(self) -> None:
        """What looked like a hand-back was a stale report (an attempt stopped while the
        agent was away): the agent does not drain after all."""
        self._draining = False

    def _release(self, job_id: uuid.UUID, attempt: int) -> None:
        self.running.pop((job_id, attempt), None)
        if not self.running:
            self.idle_since = time.monotonic()
            if self.ephemeral and self.jobs_taken > 0:
                # Its one job is done: the agent drains and exits, its provider removes it.
                self.drain()

    def _send(self, message: agent_pb2.ServerMessage) -> None:
        self.outbox.put_nowait(message)


def envelope(messages: list[agent_pb2.ServerMessage]) -> agent_pb2.ServerMessage:
    """Queued messages as the one message a write carries (a write per message costs more
    than the message)."""
    if len(messages) == 1:
        return messages[0]
    return agent_pb2.ServerMessage(batch=agent_pb2.ServerBatch(messages=messages))
