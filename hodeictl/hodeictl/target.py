"""Which server a command talks to, and running an async action against it.

Resolution order: `--server` / `HODEI_SERVER`; then `--context` / `HODEI_CONTEXT` or the
config file's `current_context`; otherwise the embedded local stack, started if needed.
The API token: `HODEI_TOKEN` if set, else `--token-file` / `HODEI_TOKEN_FILE`, else the
context's, else (embedded stack) the admin token the stack made for its user.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hodeictl.config import LOCAL_CONTEXT, Config
from hodeictl.errors import InvalidConfig

if TYPE_CHECKING:
    from hodeictl.client import HodeiClient

T = TypeVar("T")


@dataclass
class Settings:
    """The global options, kept on the typer context (`ctx.obj`)."""

    server: str | None = None
    context: str | None = None
    debug: bool = False
    token_file: str | None = None
    # The CA certificate to verify the server with (--ca-cert); overrides the context's.
    ca_cert: str | None = None
    # The token of the embedded stack whose address is `server` (set by shell completion).
    stack_token: str = ""
    # (address, token from the context or the embedded stack, CA certificate path)
    _resolved: tuple[str, str, str | None] | None = field(default=None, init=False, repr=False)
    # (home, StackInfo) when the embedded stack is the server
    _stack: tuple[Path, Any] | None = field(default=None, init=False, repr=False)

    def address(self) -> str:
        """The server's address, resolved once per invocation."""
        return self._resolve()[0]

    def token(self) -> str:
        """The API token sent with every call ("" for none)."""
        return self._explicit_token() or self._resolve()[1]

    def ca_cert_pem(self) -> bytes | None:
        """The CA certificate to verify the server with; None for plaintext."""
        path = self.ca_cert or self._resolve()[2]
        if not path:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except (OSError, ValueError) as error:  # ValueError: a NUL in the name
            raise InvalidConfig(f"cannot read the CA certificate {path}: "
                                f"{getattr(error, 'strerror', None) or error}") from None

    def _resolve(self) -> tuple[str, str, str | None]:
        if self._resolved is None:
            self._resolved = self._find()
        return self._resolved

    def _explicit_token(self) -> str:
        if token := os.environ.get("HODEI_TOKEN", "").strip():
            return token
        if self.token_file:
            path = os.path.expanduser(self.token_file)
            try:
                with open(path, encoding="utf-8") as file:
                    return file.read().strip()
            except (OSError, ValueError) as error:  # ValueError: not UTF-8, or a NUL
                raise InvalidConfig(f"cannot read the token file {path}: "
                                    f"{getattr(error, 'strerror', None) or error}") from None
        return ""

    def _find(self) -> tuple[str, str, str | None]:
        if self.server:
            return self.server, self.stack_token, None
        config = Config.load()
        context = self.context or config.current_context
        if context and context != LOCAL_CONTEXT:
            return (config.server_for(context), config.token_for(context),
                    config.ca_cert_for(context))
        # The embedded stack speaks plaintext on 127.0.0.1.
        from hodeictl import embedded

        home = embedded.home_dir()
        info = embedded.ensure_running(home, embedded.database_url(), probe=False)
        self._stack = (home, info)
        return info.address, info.token, None


def call(settings: Settings, action: Callable[[HodeiClient], Awaitable[T]],
         timeout: float | None = None) -> T:
    """Run `action` with a client connected to the resolved server; returns its result.

    `timeout` bounds each call (default: the client's, 10 s).
    """
    address, token = settings.address(), settings.token()
    ca_cert = settings.ca_cert_pem()
    from hodeictl.client import CALL_TIMEOUT, HodeiClient

    async def connected() -> T:
        async with HodeiClient(address, token, timeout=timeout or CALL_TIMEOUT,
                               ca_cert=ca_cert) as client:
            return await action(client)

    import asyncio

    from hodeictl.errors import Unavailable

    try:
        return asyncio.run(connected())
    except Unavailable:
        if settings._stack is None:
            raise
        # The stack was not probed before the call: say what to do about it now.
        from hodeictl import embedded

        home, info = settings._stack
        if embedded.stack_answers(info):
            raise
        raise embedded.not_answering(home, info) from None
