"""The agents connected to this server replica, and what each has free."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from hodei_api.v1 import agent_pb2

log = logging.getLogger(__name__)

_CLOSE = None
# Label a provider puts on the workers it starts for one job each.
EPHEMERAL_LABEL = "hodei.io/ephemeral"


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
    outbox: asyncio.Queue[agent_pb2.ServerMessage | None] = field(
        default_factory=asyncio.Queue
    )
    running: dict[tuple[uuid.UUID, int], Reservation] = field(default_factory=dict)
    draining: bool = False
    # Jobs handed to this agent over this stream (an ephemeral agent takes one).
    jobs_taken: int = 0
    last_heartbeat: float = field(default_factory=time.monotonic)
    idle_since: float = field(default_factory=time.monotonic)

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
        return not self.draining and self.alive and self.free_slots > 0

    def fits(self, selector: dict[str, str], cpus: float, memory_mb: int) -> bool:
        return (
            self.accepting
            and all(self.labels.get(k) == v for k, v in selector.items())
            and cpus <= self.free_cpus + 1e-9
            and memory_mb <= self.free_memory_mb
        )

    def reserve(self, job_id: uuid.UUID, attempt: int, cpus: float, memory_mb: int) -> None:
        self.running[(job_id, attempt)] = Reservation(cpus, memory_mb)
        self.jobs_taken += 1

    def release(self, job_id: uuid.UUID, attempt: int) -> bool:
        released = self.running.pop((job_id, attempt), None) is not None
        if not self.running:
            self.idle_since = time.monotonic()
            if self.ephemeral and self.jobs_taken > 0 and not self.draining:
                # Its one job is done: the agent drains and exits, its provider removes it.
                self.draining = True
                self.send(agent_pb2.ServerMessage(drain=agent_pb2.Drain(grace_seconds=0)))
        return released

    def send(self, message: agent_pb2.ServerMessage) -> None:
        self.outbox.put_nowait(message)

    def close(self) -> None:
        self.outbox.put_nowait(_CLOSE)


class AgentRegistry:
    """Sessions by worker id. Only this replica's live streams are in here."""

    def __init__(self) -> None:
        self._sessions: dict[uuid.UUID, AgentSession] = {}

    def add(self, session: AgentSession) -> None:
        previous = self._sessions.get(session.worker_id)
        if previous is not None:
            log.info("worker %s reconnected; closing its previous stream", session.worker_id)
            previous.close()
        self._sessions[session.worker_id] = session

    def remove(self, session: AgentSession) -> bool:
        if self._sessions.get(session.worker_id) is session:
            del self._sessions[session.worker_id]
            return True
        return False

    def get(self, worker_id: uuid.UUID) -> AgentSession | None:
        return self._sessions.get(worker_id)

    def all(self) -> list[AgentSession]:
        return list(self._sessions.values())

    def accepting(self) -> list[AgentSession]:
        return [s for s in self._sessions.values() if s.accepting]

    def candidates(self) -> list[dict[str, object]]:
        """What each accepting agent has free, in the shape claim_pending_jobs expects."""
        return [
            {
                "labels": s.labels,
                "cpus": min(s.free_cpus, 1e12),
                "memory_mb": min(s.free_memory_mb, 2**62),
            }
            for s in self.accepting()
        ]
