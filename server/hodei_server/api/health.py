"""The gRPC health service: SERVING while PostgreSQL answers, NOT_SERVING while it does not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from hodei_server.store import db
from hodei_server.store.sqlfiles import query

log = logging.getLogger(__name__)

DB_CHECK_INTERVAL = 1.0
DB_CHECK_TIMEOUT = 3.0


class Health:
    """The health servicer and the status of every service it reports on."""

    def __init__(self, services: Iterable[str]) -> None:
        self.servicer = HealthServicer()
        self.services = ["", *services]

    async def set(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in self.services:
            await self.servicer.set(name, status)

    async def shutting_down(self) -> None:
        await self.servicer.enter_graceful_shutdown()

    async def watch_database(self, pool: db.Pool, stop: asyncio.Event) -> None:
        """Report NOT_SERVING while PostgreSQL can't be reached, SERVING once it is back."""
        serving = True
        while not stop.is_set():
            try:
                async with asyncio.timeout(DB_CHECK_TIMEOUT):
                    async with pool.connection() as conn:
                        await conn.execute(query("ping"))
                healthy = True
            except Exception as exc:  # any failure to reach the database counts
                healthy = False
                if serving:
                    log.warning("database unreachable (%s); health is NOT_SERVING",
                                db.first_line(exc))
            if healthy != serving:
                serving = healthy
                await self.set(serving)
                if serving:
                    log.info("database reachable again; health is SERVING")
            try:
                await asyncio.wait_for(stop.wait(), timeout=DB_CHECK_INTERVAL)
            except TimeoutError:
                pass
