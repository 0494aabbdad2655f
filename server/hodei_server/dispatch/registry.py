"""The agents connected to this server replica, and what each has free."""

from __future__ import annotations

import logging
import uuid

from hodei_server.dispatch.session import AgentSession
from hodei_server.store.signals import AgentSignal, CancelAttempt, DrainWorker

log = logging.getLogger(__name__)


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

    def deliver(self, signal: AgentSignal) -> bool:
        """Tell the agent `signal` is meant for, if its stream is on this replica."""
        session = self._sessions.get(signal.worker_id)
        if session is None:
            return False
        match signal:
            case CancelAttempt():
                session.cancel(signal.job_id, signal.attempt, signal.reason)
            case DrainWorker():
                session.drain(signal.grace_seconds)
        return True

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
