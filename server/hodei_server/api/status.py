"""The one place where server exceptions become gRPC statuses."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg
import psycopg_pool

from hodei_server.errors import HodeiError

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(exc, HodeiError):
        return exc.status, exc.message
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return grpc.StatusCode.UNAVAILABLE, "the database is unavailable; try again shortly"
    return None


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """End the call with the status `exc` maps to (INTERNAL, logged, for the unexpected)."""
    mapped = _status_for(exc)
    if mapped is None:
        log.exception("unexpected error in %s", method)
        mapped = grpc.StatusCode.INTERNAL, "internal server error (see the server log)"
    await context.abort(*mapped)


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
            raise AssertionError("unreachable: abort raises") from exc

    return wrapper


def streaming(
    handler: Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Resp]:
        try:
            async for item in handler(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc, handler.__qualname__)

    return wrapper
