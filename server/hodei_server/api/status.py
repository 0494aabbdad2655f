"""The one place where exceptions become gRPC statuses.

Every servicer and interceptor ends a failed call through `abort_with`; nothing else calls
`context.abort`. A HodeiError's message is the status's details; what is not ours (a bug)
is logged and reported as INTERNAL without its text.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
import psycopg
import psycopg_pool

from hodei_server.errors import (
    Conflict,
    DatabaseUnavailable,
    FellBehind,
    HodeiError,
    InvalidSpec,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from hodei_server.security.secretkeys import SecretKeyError

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# Each server exception's status; a subclass takes its nearest listed ancestor's.
STATUS_OF: dict[type[HodeiError], grpc.StatusCode] = {
    HodeiError: grpc.StatusCode.INTERNAL,
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidSpec: grpc.StatusCode.INVALID_ARGUMENT,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    SecretKeyError: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    DatabaseUnavailable: grpc.StatusCode.UNAVAILABLE,
    FellBehind: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_DATABASE_DOWN = (psycopg.OperationalError, psycopg_pool.PoolTimeout)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status and details `exc` ends a call with; None for an unexpected error."""
    if isinstance(exc, HodeiError):
        for cls in type(exc).__mro__:
            code = STATUS_OF.get(cls)
            if code is not None:
                return code, exc.message
    if isinstance(exc, _DATABASE_DOWN):
        return grpc.StatusCode.UNAVAILABLE, "the database is unavailable; try again shortly"
    return None


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> NoReturn:
    """End the call with the status `exc` maps to (INTERNAL, logged, for the unexpected)."""
    mapped = status_of(exc)
    if mapped is None:
        log.exception("unexpected error in %s", method, exc_info=exc)
        mapped = grpc.StatusCode.INTERNAL, "internal server error (see the server log)"
    await context.abort(*mapped)
    raise AssertionError("unreachable: abort raises")


def unary(
    handler: Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc, handler.__qualname__)

    return wrapper


def streaming(
    handler: Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Resp]:
        # Closed as soon as the call ends, so the handler's clean-up runs then, not later.
        items = cast(AsyncGenerator[Resp, None], handler(self, request, context))
        try:
            async with contextlib.aclosing(items):
                async for item in items:
                    yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc, handler.__qualname__)

    return wrapper
