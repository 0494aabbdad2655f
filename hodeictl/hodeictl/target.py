"""Which server a command talks to, and running an async action against it.

Resolution order: `--server` / `HODEI_SERVER`; then `--context` / `HODEI_CONTEXT` or the
config file's `current_context`; otherwise the embedded local stack, started if needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from hodeictl import embedded
from hodeictl.client import HodeiClient
from hodeictl.config import LOCAL_CONTEXT, Config
from hodeictl.errors import InvalidConfig

T = TypeVar("T")


@dataclass
class Settings:
    """The global options, kept on the typer context (`ctx.obj`)."""

    server: str | None = None
    context: str | None = None
    debug: bool = False
    # The CA certificate to verify the server with (--ca-cert); overrides the context's.
    ca_cert: str | None = None
    _address: str | None = field(default=None, init=False, repr=False)
    _ca_path: str | None = field(default=None, init=False, repr=False)

    def address(self) -> str:
        """The server's address, resolved once per invocation."""
        if self._address is None:
            self._address, self._ca_path = self._resolve()
        return self._address

    def ca_cert_pem(self) -> bytes | None:
        """The CA certificate to verify the server with; None for plaintext."""
        self.address()
        path = self.ca_cert or self._ca_path
        if not path:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as error:
            raise InvalidConfig(f"cannot read the CA certificate {path}: "
                                f"{error.strerror or error}") from None

    def _resolve(self) -> tuple[str, str | None]:
        if self.server:
            return self.server, None
        config = Config.load()
        context = self.context or config.current_context
        if context and context != LOCAL_CONTEXT:
            return config.server_for(context), config.ca_cert_for(context)
        # The embedded stack speaks plaintext on 127.0.0.1.
        info = embedded.ensure_running(embedded.home_dir(), embedded.database_url())
        return info.address, None


def call(settings: Settings, action: Callable[[HodeiClient], Awaitable[T]]) -> T:
    """Run `action` with a client connected to the resolved server; returns its result."""
    address = settings.address()
    ca_cert = settings.ca_cert_pem()

    async def connected() -> T:
        async with HodeiClient(address, ca_cert=ca_cert) as client:
            return await action(client)

    return asyncio.run(connected())
