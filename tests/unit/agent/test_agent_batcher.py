"""The pump's batching, driven through a real StreamReader."""

from __future__ import annotations

import asyncio

from hodei_agent.batcher import BatchLimits, pump
from hodei_api.v1 import logs_pb2

STDOUT = logs_pb2.LOG_STREAM_STDOUT


class ListSink:
    """Records chunks with the time they were flushed."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, bytes]] = []

    async def write(self, stream: logs_pb2.LogStream, data: bytes) -> None:
        assert stream == STDOUT
        self.chunks.append((asyncio.get_running_loop().time(), data))


def start(reader: asyncio.StreamReader, sink: ListSink, **limits: float) -> asyncio.Task[None]:
    return asyncio.create_task(
        pump(reader, STDOUT, sink, asyncio.Event(), BatchLimits(**limits))  # type: ignore[arg-type]
    )


def test_lines_written_close_together_make_one_chunk() -> None:
    async def scenario() -> None:
        reader, sink = asyncio.StreamReader(), ListSink()
        task = start(reader, sink)
        began = asyncio.get_running_loop().time()
        for n in range(100):
            reader.feed_data(b"line %d\n" % n)
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        assert sink.chunks == []  # not before 50 ms
        await asyncio.sleep(0.1)
        assert len(sink.chunks) == 1
        flushed_at, data = sink.chunks[0]
        assert 0.045 <= flushed_at - began < 0.1
        assert data == b"".join(b"line %d\n" % n for n in range(100))
        reader.feed_eof()
        await task
        assert len(sink.chunks) == 1

    asyncio.run(scenario())


def test_size_bound_and_flush_at_eof() -> None:
    async def scenario() -> None:
        reader, sink = asyncio.StreamReader(limit=2**20), ListSink()
        payload = bytes(range(256)) * 800  # 200 KiB
        reader.feed_data(payload)
        reader.feed_data(b"tail without newline")
        reader.feed_eof()
        await start(reader, sink, max_delay=10.0)
        sizes = [len(data) for _, data in sink.chunks]
        assert sizes[:3] == [65536, 65536, 65536]
        assert all(size <= 65536 for size in sizes)
        assert b"".join(data for _, data in sink.chunks) == payload + b"tail without newline"

    asyncio.run(scenario())


def test_steady_trickle_is_still_flushed_on_time() -> None:
    async def scenario() -> None:
        reader, sink = asyncio.StreamReader(), ListSink()
        task = start(reader, sink)
        for _ in range(40):  # a byte every 5 ms for 200 ms
            reader.feed_data(b"x")
            await asyncio.sleep(0.005)
        reader.feed_eof()
        await task
        assert 3 <= len(sink.chunks) <= 6
        assert b"".join(data for _, data in sink.chunks) == b"x" * 40

    asyncio.run(scenario())


def test_empty_stream_sends_nothing() -> None:
    async def scenario() -> None:
        reader, sink = asyncio.StreamReader(), ListSink()
        reader.feed_eof()
        await start(reader, sink)
        assert sink.chunks == []

    asyncio.run(scenario())


def test_pipe_left_open_after_exit_is_abandoned_after_orphan_grace() -> None:
    async def scenario() -> None:
        reader, sink = asyncio.StreamReader(), ListSink()
        exited = asyncio.Event()
        task = asyncio.create_task(
            pump(reader, STDOUT, sink, exited, BatchLimits(idle_poll=0.05, orphan_grace=0.2))
        )
        reader.feed_data(b"last words")
        exited.set()
        async with asyncio.timeout(2):
            await task
        assert [data for _, data in sink.chunks] == [b"last words"]

    asyncio.run(scenario())
