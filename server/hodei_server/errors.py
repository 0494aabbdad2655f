"""Server exceptions, and their one mapping to gRPC status codes."""

from __future__ import annotations

import grpc


class HodeiError(Exception):
    """Something went wrong in the Hodei server."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFound(HodeiError):
    """Not found."""

    status = grpc.StatusCode.NOT_FOUND


class InvalidSpec(HodeiError):
    """The request is not valid."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class Conflict(HodeiError):
    """The request conflicts with the current state."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(HodeiError):
    """Missing or invalid credentials."""

    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(HodeiError):
    """The caller's token may not do this."""

    status = grpc.StatusCode.PERMISSION_DENIED


class DatabaseUnavailable(HodeiError):
    """The database cannot be reached; try again shortly."""

    status = grpc.StatusCode.UNAVAILABLE


class ConfigError(HodeiError):
    """The server configuration is not valid."""
