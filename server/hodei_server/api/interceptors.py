"""The interceptors every call passes: malformed requests, then tokens and roles.

`MalformedRequests`: requests that are not even valid protobuf get INVALID_ARGUMENT, not
UNKNOWN. gRPC parses a request before any servicer code runs; when parsing fails it ends the call
with UNKNOWN and logs a traceback, for every such request (bytes anyone can send). This
interceptor gives each handler a parser that never raises: a request that does not parse
becomes a `Malformed` value, a unary call with one is refused with INVALID_ARGUMENT and one
line, and a streamed one raises `InvalidSpec` where the servicer reads the stream.

`AuthInterceptor`: the checks of `hodei_server.security.authz` before each handler runs,
with the call's context at hand; every refusal is audited.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc

from hodei_server.api.status import abort_with, status_of
from hodei_server.errors import InvalidSpec
from hodei_server.security import apitokens
from hodei_server.security.apitokens import Principal
from hodei_server.security.authz import (
    CALLER,
    PUBLIC_SERVICES,
    Authorizer,
    Refused,
    RoleRefused,
    api_actor,
    service_of,
)

Behaviour = Callable[..., Any]


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
                await abort_with(context, InvalidSpec(request.message), request.method)
            async for response in behavior(request, context):
                yield response

        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await abort_with(context, InvalidSpec(request.message), request.method)
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


class _HandlerInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that replaces each method's handler with one wrapping it."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self.wrap(str(handler_call_details.method), handler)  # type: ignore[attr-defined]

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class MalformedRequests(_HandlerInterceptor):
    """Installs the never-raising parsers (see the module doc) on every method."""

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:
            return handler
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


async def refuse(
    authorizer: Authorizer, context: grpc.aio.ServicerContext, method: str, refusal: Refused,
    target: str = "",
) -> NoReturn:
    """Record the refusal in the audit log, then end the call with its status."""
    mapped = status_of(refusal)
    status = mapped[0].name if mapped else "INTERNAL"
    await authorizer.record_refusal(method, refusal, context.peer(), status, target)
    await abort_with(context, refusal, method)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (context.invocation_metadata() or ())}


class AuthInterceptor(_HandlerInterceptor):
    """Wraps each handler so the check runs first, with the call's context at hand."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if service_of(method) in PUBLIC_SERVICES:
            return handler
        kind = _kind(handler)
        wrapped = (self._wrap_stream(method, getattr(handler, kind)) if kind.endswith("stream")
                   else self._wrap_unary(method, getattr(handler, kind)))
        return handler._replace(**{kind: wrapped})  # type: ignore[attr-defined,no-any-return]

    async def _check(
        self, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> Principal | None:
        try:
            metadata = _metadata(context)
            bootstrap = getattr(request, "bootstrap_token", "")
            if isinstance(bootstrap, str) and apitokens.looks_like_api_token(bootstrap):
                raise RoleRefused("API tokens are not accepted on the agent service; an agent "
                                  "registers with a bootstrap token", api_actor(bootstrap))
            return await self.authorizer.authorize(method, metadata)
        except Refused as refusal:
            await refuse(self.authorizer, context, method, refusal)
        except Exception as exc:  # the database, mostly: UNAVAILABLE, not a refusal
            await abort_with(context, exc, method)

    def _wrap_unary(self, method: str, behaviour: Behaviour) -> Behaviour:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            who = await self._check(method, request, context)
            token = CALLER.set(who)
            try:
                return await behaviour(request, context)
            finally:
                CALLER.reset(token)

        return checked

    def _wrap_stream(self, method: str, behaviour: Behaviour) -> Behaviour:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            # Not reset afterwards: each call runs in a task (and context) of its own, and a
            # generator may be finalised from another context, where a reset would fail.
            CALLER.set(await self._check(method, request, context))
            async for item in behaviour(request, context):
                yield item

        return checked


def _kind(handler: grpc.RpcMethodHandler) -> str:
    request = "stream" if handler.request_streaming else "unary"
    response = "stream" if handler.response_streaming else "unary"
    return f"{request}_{response}"
