"""Batching several stream messages into one write, on both ends of the agent stream."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from hodei_agent import envelope
from hodei_agent.envelope import ENVELOPE_BYTES, envelopes
from hodei_api.v1 import agent_pb2, logs_pb2
from hodei_server.api.agent.inbox import _StreamCheck
from hodei_server.api.agent.writer import MAX_SEND_BATCH_BYTES, _more_of
from hodei_server.errors import InvalidSpec
from hodei_server.validation import validate_agent_message

JOB = str(uuid.uuid4())


def chunk(seq: int, size: int = 10) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(log_chunk=logs_pb2.LogChunk(
        job_id=JOB, attempt=1, seq=seq, stream=logs_pb2.LOG_STREAM_STDOUT, data=b"x" * size))


def unpacked(written: list[agent_pb2.AgentMessage]) -> list[agent_pb2.AgentMessage]:
    out: list[agent_pb2.AgentMessage] = []
    for message in written:
        if message.WhichOneof("msg") == "batch":
            assert len(message.batch.messages) > 1
            out.extend(message.batch.messages)
        else:
            out.append(message)
    return out


def test_a_lone_message_is_written_as_itself() -> None:
    assert list(envelopes([chunk(1)])) == [chunk(1)]


def test_queued_messages_go_in_one_write_in_order() -> None:
    messages = [chunk(seq) for seq in range(1, 11)]
    written = list(envelopes(messages))
    assert len(written) == 1 and written[0].WhichOneof("msg") == "batch"
    assert unpacked(written) == messages


def test_batches_stay_under_the_envelope_size() -> None:
    big = ENVELOPE_BYTES // 3
    messages = [chunk(seq, big) for seq in range(1, 8)] + [chunk(8, 2 * ENVELOPE_BYTES)]
    written = list(envelopes(messages))
    assert unpacked(written) == messages
    assert len(written) >= 4
    for message in written:
        if message.WhichOneof("msg") == "batch":
            assert message.ByteSize() <= ENVELOPE_BYTES + 64


def test_what_an_agent_batches_passes_the_servers_checks() -> None:
    check = _StreamCheck()
    accepted = agent_pb2.AgentMessage(job_accepted=agent_pb2.JobAccepted(
        job_id=JOB, attempt=1, pid=42))
    messages = [accepted, *(chunk(seq) for seq in range(1, 5))]
    [written] = envelopes(messages)
    assert list(check.check(written)) == messages
    with pytest.raises(InvalidSpec, match="does not follow"):
        check.check(chunk(2))  # a batch's chunks count for the order of what follows


@pytest.mark.parametrize(("inner", "word"), [
    ([], "batch: empty"),
    ([agent_pb2.AgentMessage(hello=agent_pb2.Hello())], "no hello"),
    ([agent_pb2.AgentMessage(batch=agent_pb2.AgentBatch(messages=[chunk(1)]))], "no batch"),
    ([chunk(1), agent_pb2.AgentMessage()], "carries nothing"),
])
def test_broken_batches_are_refused(inner: list[agent_pb2.AgentMessage], word: str) -> None:
    with pytest.raises(InvalidSpec, match=word):
        validate_agent_message(agent_pb2.AgentMessage(batch=agent_pb2.AgentBatch(messages=inner)))


def ack(seq: int, size: int = 0) -> agent_pb2.ServerMessage:
    return agent_pb2.ServerMessage(log_ack=agent_pb2.LogAck(
        job_id=JOB + "x" * size, attempt=1, up_to_seq=seq))


def test_the_server_writes_what_is_queued_as_one_message() -> None:
    queue: asyncio.Queue[agent_pb2.ServerMessage | None] = asyncio.Queue()
    assert _more_of(queue, ack(1)) == (ack(1), None, False)
    for seq in (2, 3):
        queue.put_nowait(ack(seq))
    message, carried, closing = _more_of(queue, ack(1))
    assert list(message.batch.messages) == [ack(1), ack(2), ack(3)]
    assert (carried, closing) == (None, False)
    # The stream's end is kept: what came before it is still written.
    queue.put_nowait(ack(2))
    queue.put_nowait(None)
    message, carried, closing = _more_of(queue, ack(1))
    assert list(message.batch.messages) == [ack(1), ack(2)] and closing and carried is None


def test_a_message_that_does_not_fit_waits_for_the_next_write() -> None:
    queue: asyncio.Queue[agent_pb2.ServerMessage | None] = asyncio.Queue()
    big = ack(2, MAX_SEND_BATCH_BYTES)
    queue.put_nowait(big)
    queue.put_nowait(ack(3))
    message, carried, closing = _more_of(queue, ack(1))
    assert message == ack(1) and carried == big and not closing
    message, carried, closing = _more_of(queue, carried)  # too big to share a write
    assert message == big and carried == ack(3) and not closing


class _StuckCall:
    """A stream whose writes never complete (a peer that stopped reading)."""

    def __init__(self) -> None:
        self.written = 0

    async def write(self, message: agent_pb2.AgentMessage) -> None:
        self.written += 1
        if self.written > 1:
            await asyncio.Event().wait()


def test_a_write_that_makes_no_progress_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "WRITE_TIMEOUT", 0.2)
    call = _StuckCall()

    async def alone() -> None:
        await envelope.write_message(call, chunk(1))  # type: ignore[arg-type]

    async def under_one_deadline() -> None:
        async with asyncio.timeout(None) as deadline:
            await envelope.write_message(call, chunk(1), deadline)  # type: ignore[arg-type]
            await asyncio.sleep(0.4)  # between writes, no deadline runs
            await envelope.write_message(call, chunk(2), deadline)  # type: ignore[arg-type]

    call.written = 1  # the next write sticks
    with pytest.raises(TimeoutError):
        asyncio.run(alone())
    call.written = 0
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(under_one_deadline())
    assert 0.55 < time.monotonic() - started < 2
