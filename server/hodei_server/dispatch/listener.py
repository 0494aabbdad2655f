"""LISTEN for the signals other transactions (and replicas) send, and route each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.supervise import retry_delay
from hodei_server.store.signals import (
    CancelAttempt,
    DrainWorker,
    EventsWritten,
    FlowsDue,
    JobChanged,
    JobsWaiting,
    Signal,
    TokenRevoked,
    decode,
)
from hodei_server.store.sqlfiles import query

log = logging.getLogger(__name__)


class Listener:
    """Hears every channel of `hodei_server.store.signals` on a connection of its own."""

    def __init__(
        self,
        url: str,
        registry: AgentRegistry,
        server_id: str,
        on_jobs: Callable[[], None],
        on_job_changed: Callable[[str], None],
        on_token_revoked: Callable[[str], None],
        on_reconnect: Callable[[], None],
        on_flows: Callable[[], None] = lambda: None,
        on_events: Callable[[], None] = lambda: None,
    ) -> None:
        self.url = url
        self.registry = registry
        self.server_id = server_id
        self.on_jobs = on_jobs
        self.on_job_changed = on_job_changed
        self.on_token_revoked = on_token_revoked
        self.on_reconnect = on_reconnect
        self.on_flows = on_flows
        self.on_events = on_events
        self.ready = asyncio.Event()

    def route(self, signal: Signal) -> None:
        """Hand a signal to what acts on it on this replica."""
        match signal:
            case JobsWaiting():
                self.on_jobs()
            case JobChanged(job_id=job_id):
                self.on_job_changed(job_id)
            case TokenRevoked(token_id=token_id):
                self.on_token_revoked(token_id)
            case FlowsDue():
                self.on_flows()
            case EventsWritten():
                self.on_events()
            case CancelAttempt() | DrainWorker():
                # The replica that took the request told its own agents already.
                if signal.origin != self.server_id:
                    self.registry.deliver(signal)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._listen(stop)
                return
            except (psycopg.Error, OSError) as exc:
                self.ready.clear()
                failures += 1
                delay = retry_delay(failures)
                log.warning("notification listener lost the database (%s); retry in %.1fs",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else exc, delay)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10)
        async with conn:
            await conn.execute(query("listen"))
            self.ready.set()
            # Anything sent while we were not listening is unknown: wake everyone once.
            self.on_reconnect()
            while not stop.is_set():
                # A bounded wait so a stop request is seen; nothing else runs on this
                # connection, so notifications between two waits stay queued.
                async for notification in conn.notifies(timeout=0.5):
                    signal = decode(notification.channel, notification.payload)
                    if signal is not None:
                        self.route(signal)
