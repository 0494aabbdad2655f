"""One server the TUI talks to: its context, client, caller's role and reconnect backoff."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from hodei_api.v1 import auth_pb2
from hodeictl.client import HodeiClient
from hodeictl.config import LOCAL_CONTEXT, Config
from hodeictl.errors import HodeiCtlError
from hodeictl.target import Settings

BACKOFF_START = 0.5
BACKOFF_CAP = 10.0


def backoff(failures: int) -> float:
    """Seconds to wait before reconnect number `failures` (>= 1): doubling, capped, jittered."""
    delay = min(BACKOFF_START * 2 ** max(failures - 1, 0), BACKOFF_CAP)
    return delay * random.uniform(0.5, 1.0)


def context_names() -> list[str]:
    """The contexts of the config file, the embedded stack's first."""
    try:
        names = list(Config.load().contexts)
    except HodeiCtlError:
        names = []
    return [LOCAL_CONTEXT, *(n for n in names if n != LOCAL_CONTEXT)]


@dataclass
class Connection:
    """A client for `settings`, opened in a thread (the embedded stack may have to start)."""

    settings: Settings
    client: HodeiClient | None = None
    role: int = auth_pb2.ROLE_UNSPECIFIED
    identity: str = ""
    label: str = ""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def open(self) -> HodeiClient:
        """The client, made on first use; resolving the target may start the local stack."""
        async with self._lock:
            if self.client is None:
                address, token, ca_cert = await asyncio.to_thread(self._resolve)
                self.client = HodeiClient(address, token, ca_cert=ca_cert)
                self.label = f"{self.settings.context or 'default'} ({address})"
            return self.client

    def _resolve(self) -> tuple[str, str, bytes | None]:
        return self.settings.address(), self.settings.token(), self.settings.ca_cert_pem()

    async def learn_role(self) -> int:
        """Ask the server who we are; the role decides which actions are offered."""
        client = await self.open()
        reply = await client.who_am_i()
        self.role, self.identity = reply.role, reply.name
        return self.role

    async def close(self) -> None:
        if self.client is not None:
            await self.client.__aexit__(None, None, None)
            self.client = None
