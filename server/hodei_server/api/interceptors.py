"""Requests that are not even valid protobuf get INVALID_ARGUMENT, not UNKNOWN.

gRPC parses a request before any servicer code runs; when parsing fails it ends the call
with UNKNOWN and logs a traceback, for every such request (bytes anyone can send). This
interceptor gives each handler a parser that never raises: a request that does not parse
becomes a `Malformed` value, a unary call with one is refused with INVALID_ARGUMENT and one
line, and a streamed one raises `InvalidSpec` where the servicer reads the stream.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from hodei_server.errors import InvalidSpec


class Malformed:
    """A request whose bytes are not a valid message of the method's request type."""

    __slots__ = ("method", "reason")

    def __init__(self, method: str, reason: str) -> None:
        self.method = method
        self.reason = reason

    @property
    def message(self) -> str:
        return f"malformed request to {self.method}: {self.reason}"


def _safe(deserializer: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, mostly; any failure means the same here
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            return Malformed(method, reason)

    return parse


async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The requests of a stream; a malformed one raises InvalidSpec."""
    async for request in requests:
        if isinstance(request, Malformed):
            raise InvalidSpec(request.message)
        yield request


def _unary_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for response in behavior(request, context):
                yield response

        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await behavior(request, context)

    return unary


def _stream_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        async def streaming(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                            ) -> Any:
            async for response in behavior(checked(requests), context):
                yield response

        return streaming

    async def unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return await behavior(checked(requests), context)

    return unary


class MalformedRequests(grpc.aio.ServerInterceptor):
    """Installs the never-raising parsers (see the module doc) on every method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = str(handler_call_details.method)
        changes: dict[str, Any] = {
            "request_deserializer": _safe(handler.request_deserializer, method)
        }
        for kind in ("unary_unary", "unary_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                changes[kind] = _unary_request(behavior)
        for kind in ("stream_unary", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                changes[kind] = _stream_request(behavior)
        replaced: grpc.RpcMethodHandler = handler._replace(**changes)  # type: ignore[attr-defined]
        return replaced
