"""The leader's loop that moves waiting and indexed jobs on, and deletes expired ones.

It wakes when a job that others follow ends (the `FlowsDue` signal, from any replica) and
on the reconcile interval, and acts only while this replica is the reconciler leader: the
steps are fenced in SQL, so a second leader for a moment would only repeat a look.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.supervise import retry_delay
from hodei_server.store.flows import FlowStore
from hodei_server.store.schedules import ScheduleStore

log = logging.getLogger(__name__)

_TICK_SWEEP_SECONDS = 3600.0


class FlowRunner:
    """Runs `FlowStore.advance` and the clean-ups on the leader."""

    def __init__(
        self, flows: FlowStore, schedules: ScheduleStore, registry: AgentRegistry,
        server_id: str, interval: float, is_leader: Callable[[], bool],
        retention_seconds: float = 0.0,
    ) -> None:
        self.retention_seconds = retention_seconds
        self.flows = flows
        self.schedules = schedules
        self.registry = registry
        self.server_id = server_id
        self.actor = f"server:{server_id}"
        self.interval = interval
        self.is_leader = is_leader
        self._wake = asyncio.Event()
        self._last_tick_sweep = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if stop.is_set() or not self.is_leader():
                continue
            try:
                await self.pass_once()
                failures = 0
            except Exception as exc:  # the database may be down: retry, never die
                failures += 1
                delay = retry_delay(failures)
                log.warning("moving waiting jobs on failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def pass_once(self) -> None:
        """One look at every waiting and indexed job, then the clean-ups."""
        progress = await self.flows.advance(self.actor, self.server_id)
        for signal in progress.signals:
            self.registry.deliver(signal)  # if its stream is here; other replicas hear it
        while await self.flows.prune_expired(self.actor):
            pass
        if self.retention_seconds > 0:
            while await self.flows.prune_retained(self.retention_seconds, self.actor):
                pass
        if time.monotonic() - self._last_tick_sweep > _TICK_SWEEP_SECONDS:
            self._last_tick_sweep = time.monotonic()
            await self.schedules.prune_ticks()
