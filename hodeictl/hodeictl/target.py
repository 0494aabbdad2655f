"""Which server a command talks to, and running an async action against it.

Resolution order: `--server` / `HODEI_SERVER`; then `--context` / `HODEI_CONTEXT` or the
config file's `current_context`; otherwise the embedded local stack, started if needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hodeictl import embedded
from hodeictl.client import HodeiClient
from hodeictl.config import LOCAL_CONTEXT, Config

T = TypeVar("T")


@dataclass
class Settings:
    """The global options, kept on the typer context (`ctx.obj`)."""

    server: str | None = None
    context: str | None = None
    debug: bool = False
    _address: str | None = field(default=None, init=False, repr=False)

    def address(self) -> str:
        """The server's address, resolved once per invocation."""
        if self._address is None:
            self._address = self._resolve()
        return self._address

    def _resolve(self) -> str:
        if self.server:
            return self.server
        config = Config.load()
        context = self.context or config.current_context
        if context and context != LOCAL_CONTEXT:
            return config.server_for(context)
        return embedded.ensure_running(embedded.home_dir(), embedded.database_url()).address


def call(settings: Settings, action: Callable[[HodeiClient], Awaitable[T]]) -> T:
    """Run `action` with a client connected to the resolved server; returns its result."""
    address = settings.address()

    async def connected() -> T:
        async with HodeiClient(address) as client:
            return await action(client)

    return asyncio.run(connected())
