"""Several queued stream messages written as one: a write costs more than the bytes it
carries, so what the agent has queued when it writes goes in one `AgentBatch`."""

from __future__ import annotations

from collections.abc import Iterator

from hodei_api.v1 import agent_pb2

# What one write carries at most when it batches messages; the server accepts 8 MiB.
ENVELOPE_BYTES = 1024 * 1024


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
