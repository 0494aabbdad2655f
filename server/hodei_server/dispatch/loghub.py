"""Wakes StreamLogs followers when a job's output or state changes."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict


class LogHub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def subscribe(self, job_id: uuid.UUID) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[str(job_id)].add(event)
        return event

    def unsubscribe(self, job_id: uuid.UUID, event: asyncio.Event) -> None:
        key = str(job_id)
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[key]

    def wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()
