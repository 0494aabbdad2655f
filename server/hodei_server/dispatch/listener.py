"""LISTEN for the notifications other transactions (and replicas) send."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import psycopg

from hodei_server.dispatch.supervise import retry_delay
from hodei_server.store.jobs import CHANNEL_CANCEL, CHANNEL_DRAIN, CHANNEL_JOBS, CHANNEL_LOGS

log = logging.getLogger(__name__)


class Listener:
    def __init__(
        self,
        url: str,
        on_jobs: Callable[[], None],
        on_logs: Callable[[str], None],
        on_cancel: Callable[[str], None],
        on_drain: Callable[[str], None],
        on_reconnect: Callable[[], None],
        others: Mapping[str, Callable[[str], None]] | None = None,
    ) -> None:
        self.url = url
        self.handlers: dict[str, Callable[[str], None]] = {
            CHANNEL_JOBS: lambda _payload: on_jobs(),
            CHANNEL_LOGS: on_logs,
            CHANNEL_CANCEL: on_cancel,
            CHANNEL_DRAIN: on_drain,
            **(others or {}),
        }
        self.on_reconnect = on_reconnect
        self.ready = asyncio.Event()

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
            for channel in self.handlers:
                await conn.execute(f"LISTEN {channel}")  # channel names are our constants
            self.ready.set()
            # Anything sent while we were not listening is unknown: wake everyone once.
            self.on_reconnect()
            while not stop.is_set():
                # A bounded wait so a stop request is seen; nothing else runs on this
                # connection, so notifications between two waits stay queued.
                async for notification in conn.notifies(timeout=0.5):
                    handler = self.handlers.get(notification.channel)
                    if handler is not None:
                        handler(notification.payload)
