"""The outbox: ordering, acknowledgement, resending and its memory bound."""

from __future__ import annotations

import asyncio

import pytest

from hodei_agent.outbox import Outbox
from hodei_api.v1 import agent_pb2, jobs_pb2, logs_pb2

STDOUT = logs_pb2.LOG_STREAM_STDOUT
STDERR = logs_pb2.LOG_STREAM_STDERR


def kinds(batch: list[agent_pb2.AgentMessage]) -> list[str]:
    return [
        f"chunk{m.log_chunk.seq}" if m.WhichOneof("msg") == "log_chunk" else m.WhichOneof("msg")
        for m in batch
    ]


def ack(outbox: Outbox, up_to: int, job: str = "j", attempt: int = 1) -> None:
    outbox.ack_chunks(agent_pb2.LogAck(job_id=job, attempt=attempt, up_to_seq=up_to))


def test_order_seq_and_result_after_every_chunk() -> None:
    async def scenario() -> None:
        outbox = Outbox()
        record = outbox.open("j", 1)
        record.accept(42)
        await record.write(STDOUT, b"a")
        await record.write(STDERR, b"b")
        assert kinds(outbox.take_unsent()) == ["job_accepted", "chunk1", "chunk2"]
        await record.write(STDOUT, b"c")
        await record.write(STDOUT, b"d")
        record.finish(jobs_pb2.JOB_STATE_SUCCEEDED, exit_code=0)
        batch = outbox.take_unsent(limit=1)
        assert kinds(batch) == ["chunk3"]  # the result waits for its last chunk
        batch = outbox.take_unsent()
        assert kinds(batch) == ["chunk4", "job_finished"]
        finished = batch[-1].job_finished
        assert finished.last_seq == 4 and finished.has_exit_code and finished.exit_code == 0
        assert outbox.take_unsent() == []

    asyncio.run(scenario())


def test_rewind_resends_only_what_is_unacknowledged() -> None:
    async def scenario() -> None:
        outbox = Outbox()
        record = outbox.open("j", 1)
        record.accept(1)
        for data in (b"1", b"2", b"3"):
            await record.write(STDOUT, data)
        record.finish(jobs_pb2.JOB_STATE_FAILED, exit_code=2)
        assert kinds(outbox.take_unsent()) == [
            "job_accepted",
            "chunk1",
            "chunk2",
            "chunk3",
            "job_finished",
        ]
        ack(outbox, 1)
        outbox.rewind()  # the stream was lost
        assert kinds(outbox.take_unsent()) == ["chunk2", "chunk3", "job_finished"]
        assert outbox.keys() == [("j", 1)]
        ack(outbox, 3)
        outbox.rewind()
        assert kinds(outbox.take_unsent()) == ["job_finished"]
        outbox.ack_finished(agent_pb2.FinishedAck(job_id="j", attempt=1))
        assert outbox.keys() == []
        async with asyncio.timeout(1):
            await outbox.wait_empty()

    asyncio.run(scenario())


def test_unacknowledged_accept_is_resent_but_not_after_an_ack() -> None:
    async def scenario() -> None:
        outbox = Outbox()
        record = outbox.open("j", 1)
        record.accept(7)
        assert kinds(outbox.take_unsent()) == ["job_accepted"]
        outbox.rewind()
        assert kinds(outbox.take_unsent()) == ["job_accepted"]
        await record.write(STDOUT, b"x")
        outbox.take_unsent()
        ack(outbox, 1)
        outbox.rewind()
        assert outbox.take_unsent() == []

    asyncio.run(scenario())


def test_acks_are_cumulative_and_tolerate_nonsense() -> None:
    async def scenario() -> None:
        outbox = Outbox()
        record = outbox.open("j", 1)
        for _ in range(5):
            await record.write(STDOUT, b"12345")
        assert record.unacked_bytes == 25
        ack(outbox, 3)
        assert record.unacked_bytes == 10
        ack(outbox, 2)  # stale
        assert record.unacked_bytes == 10
        ack(outbox, 99)  # beyond what exists
        assert record.unacked_bytes == 0
        ack(outbox, 1, job="other")
        outbox.ack_finished(agent_pb2.FinishedAck(job_id="j", attempt=1))  # no result yet
        assert outbox.keys() == [("j", 1)]

    asyncio.run(scenario())


def test_write_blocks_at_the_bound_until_acknowledged() -> None:
    async def scenario() -> None:
        outbox = Outbox(max_unacked_bytes=100)
        record = outbox.open("j", 1)
        await record.write(STDOUT, b"x" * 60)
        blocked = asyncio.create_task(record.write(STDOUT, b"y" * 60))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        assert record.unacked_bytes == 60
        ack(outbox, 1)
        async with asyncio.timeout(1):
            await blocked
        assert record.unacked_bytes == 60 and record.last_seq == 2

    asyncio.run(scenario())


def test_a_chunk_bigger_than_the_bound_passes_when_nothing_is_owed() -> None:
    async def scenario() -> None:
        outbox = Outbox(max_unacked_bytes=10)
        record = outbox.open("j", 1)
        async with asyncio.timeout(1):
            await record.write(STDOUT, b"z" * 50)
        assert record.unacked_bytes == 50

    asyncio.run(scenario())


def test_each_attempt_has_its_own_record() -> None:
    async def scenario() -> None:
        outbox = Outbox()
        outbox.open("j", 1)
        outbox.open("j", 2)
        assert ("j", 2) in outbox and len(outbox) == 2
        with pytest.raises(KeyError):
            outbox.open("j", 1)

    asyncio.run(scenario())
