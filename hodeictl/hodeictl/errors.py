"""hodeictl's exceptions and the one place that turns gRPC errors into them.

Every error a user can cause or meet is a `HodeiCtlError`: the root command group
(`hodeictl.app`) prints it as one line on stderr and exits with its `exit_code`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # grpc is imported by the commands that talk to a server, not before
    import grpc

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE
EXIT_NOPERM = 77  # sysexits.h EX_NOPERM
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG
EXIT_TIMED_OUT = 124  # like timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class HodeiCtlError(Exception):
    """hodeictl failed."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class UsageError(HodeiCtlError):
    """invalid usage."""

    exit_code = EXIT_USAGE


class InvalidSpec(UsageError):
    """invalid job specification."""


class InvalidJobId(UsageError):
    """not a job id (expected a UUID)."""


class InvalidConfig(HodeiCtlError):
    """invalid hodeictl configuration."""

    exit_code = EXIT_CONFIG


class NotFound(HodeiCtlError):
    """not found."""


class Unavailable(HodeiCtlError):
    """cannot reach the Hodei server."""

    exit_code = EXIT_UNAVAILABLE


class ServerTimeout(Unavailable):
    """the Hodei server did not answer in time."""


class StackError(Unavailable):
    """the local Hodei stack failed."""


class NotAuthenticated(HodeiCtlError):
    """the Hodei server needs an API token."""

    exit_code = EXIT_NOPERM


class PermissionDenied(HodeiCtlError):
    """permission denied."""

    exit_code = EXIT_NOPERM


class ServerError(HodeiCtlError):
    """the Hodei server failed."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def from_rpc_error(
    error: grpc.aio.AioRpcError, address: str, *, submitting: bool = False
) -> HodeiCtlError:
    """Translate a failed call to the server at `address` into a `HodeiCtlError`.

    `submitting` tells that the call carried a job spec, so INVALID_ARGUMENT is about the job.
    """
    import grpc

    code = error.code()
    detail = _one_line(error.details() or "")
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(
            f"cannot reach the Hodei server at {address}: {detail}. "
            "Is it running? (hodeictl status)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServerTimeout(f"the Hodei server at {address} did not answer in time ({detail})")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return NotAuthenticated(
            f"the Hodei server at {address} refused the call: {detail}. Ask an admin for an "
            "API token (hodeictl token create NAME --role submitter) and use it: "
            f"hodeictl context set NAME --server {address} --token-stdin, or HODEI_TOKEN"
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"permission denied: {detail}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(detail or None)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        if submitting:
            return InvalidSpec(f"invalid job: {detail}")
        return UsageError(f"invalid request: {detail}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in detail:
        if submitting:
            return InvalidSpec(f"invalid job: too large for the server to accept ({detail})")
        return UsageError(f"a message was too large for gRPC's limit ({detail})")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return ServerError(detail or "the server refused: the request does not fit the state")
    return ServerError(f"server error ({code.name}): {detail}")
