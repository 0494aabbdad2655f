"""Writing to the agent's stream: several queued messages as one (a write costs more than
the bytes it carries, so what the agent has queued when it writes goes in one
`AgentBatch`), each write under a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc.aio

from hodei_api.v1 import agent_pb2

# What one write carries at most when it batches messages; the server accepts 8 MiB.
ENVELOPE_BYTES = 1024 * 1024
# A write that makes no progress for this long means the stream is dead.
WRITE_TIMEOUT = 30.0


def envelopes(messages: list[agent_pb2.AgentMessage]) -> Iterator[agent_pb2.AgentMessage]:
    """`messages` as few messages to write, in order; each batch stays under
    ENVELOPE_BYTES (a larger message goes alone)."""
    if len(messages) == 1:
        yield messages[0]
        return
    group: list[agent_pb2.AgentMessage] = []
    size = 0
    for message in messages:
        message_size = message.ByteSize()
        if group and size + message_size > ENVELOPE_BYTES:
            yield _batch(group)
            group, size = [], 0
        group.append(message)
        size += message_size
    if group:
        yield _batch(group)


def _batch(group: list[agent_pb2.AgentMessage]) -> agent_pb2.AgentMessage:
    if len(group) == 1:
        return group[0]
    return agent_pb2.AgentMessage(batch=agent_pb2.AgentBatch(messages=group))


async def write_message(call: grpc.aio.StreamStreamCall, message: agent_pb2.AgentMessage,
                        deadline: asyncio.Timeout | None = None) -> None:
    """Write one message; no progress within WRITE_TIMEOUT raises TimeoutError (from the
    `deadline` context, when given)."""
    if deadline is None:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await call.write(message)
        return
    deadline.reschedule(asyncio.get_running_loop().time() + WRITE_TIMEOUT)
    await call.write(message)
    deadline.reschedule(None)


def describe_failure(exc: BaseException) -> str:
    """What ended a stream, in a few words."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return f"no progress within {WRITE_TIMEOUT:g}s"
    return str(exc) or type(exc).__name__
