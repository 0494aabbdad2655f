"""The server's exceptions: one root, `HodeiError`, whose docstring is the default message.

They say what went wrong, not how a client hears it: `hodei_server.api.status` maps each to
its gRPC status code, and the command line prints it as one line.
"""

from __future__ import annotations


class HodeiError(Exception):
    """Something went wrong in the Hodei server."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFound(HodeiError):
    """Not found."""


class InvalidSpec(HodeiError):
    """The request is not valid."""


class Conflict(HodeiError):
    """The request conflicts with the current state."""


class Unauthenticated(HodeiError):
    """Missing or invalid credentials."""


class PermissionDenied(HodeiError):
    """The caller's token may not do this."""


class DatabaseUnavailable(HodeiError):
    """The database cannot be reached; try again shortly."""


class FellBehind(HodeiError):
    """The watcher read too slowly and was cut off; resume from the last event received."""


class ConfigError(HodeiError):
    """The server configuration is not valid."""
