"""The tail's batching, driven through a real file that the test appends to."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hodei_agent.batcher import BatchLimits, tail
from hodei_api.v1 import logs_pb2

STDOUT = logs_pb2.LOG_STREAM_STDOUT


class ListSink:
    """Records chunks with the time they were flushed."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, bytes]] = []

    async def write(self, stream: logs_pb2.LogStream, data: bytes) -> None:
        assert stream == STDOUT
        self.chunks.append((asyncio.get_running_loop().time(), data))


class Output:
    """A job's output file: the test writes it, the tail reads it."""

    def __init__(self, path: Path) -> None:
        self.writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.reader = os.open(path, os.O_RDONLY)
        self.done = asyncio.Event()

    def write(self, data: bytes) -> None:
        os.write(self.writer, data)

    def start(self, sink: ListSink, offset: int = 0, **limits: float) -> asyncio.Task[int]:
        return asyncio.create_task(
            tail(self.reader, offset, STDOUT, sink, self.done, BatchLimits(**limits))  # type: ignore[arg-type]
        )

    def close(self) -> None:
        os.close(self.writer)
        os.close(self.reader)


@pytest.fixture
def output(tmp_path: Path) -> Iterator[Output]:
    out = Output(tmp_path / "stdout")
    yield out
    out.close()


def test_lines_written_close_together_make_one_chunk(output: Output) -> None:
    async def scenario() -> None:
        sink = ListSink()
        task = output.start(sink)
        began = asyncio.get_running_loop().time()
        for n in range(100):
            output.write(b"line %d\n" % n)
        await asyncio.sleep(0.02)
        assert sink.chunks == []  # not before 50 ms
        await asyncio.sleep(0.1)
        assert len(sink.chunks) == 1
        flushed_at, data = sink.chunks[0]
        assert 0.045 <= flushed_at - began < 0.12
        assert data == b"".join(b"line %d\n" % n for n in range(100))
        output.done.set()
        assert await task == len(data)
        assert len(sink.chunks) == 1

    asyncio.run(scenario())


def test_size_bound_and_flush_at_the_end(output: Output) -> None:
    async def scenario() -> None:
        sink = ListSink()
        payload = bytes(range(256)) * 800  # 200 KiB
        output.write(payload)
        output.write(b"tail without newline")
        output.done.set()
        await output.start(sink, max_delay=10.0)
        sizes = [len(data) for _, data in sink.chunks]
        assert sizes[:3] == [65536, 65536, 65536]
        assert all(size <= 65536 for size in sizes)
        assert b"".join(data for _, data in sink.chunks) == payload + b"tail without newline"

    asyncio.run(scenario())


def test_steady_trickle_is_still_flushed_on_time(output: Output) -> None:
    async def scenario() -> None:
        sink = ListSink()
        task = output.start(sink)
        for _ in range(40):  # a byte every 5 ms for 200 ms
            output.write(b"x")
            await asyncio.sleep(0.005)
        output.done.set()
        await task
        assert 3 <= len(sink.chunks) <= 7
        assert b"".join(data for _, data in sink.chunks) == b"x" * 40

    asyncio.run(scenario())


def test_empty_output_sends_nothing(output: Output) -> None:
    async def scenario() -> None:
        sink = ListSink()
        output.done.set()
        assert await output.start(sink) == 0
        assert sink.chunks == []

    asyncio.run(scenario())


def test_resumes_at_an_offset_and_reads_what_came_before_the_end(output: Output) -> None:
    async def scenario() -> None:
        sink = ListSink()
        output.write(b"already sent|")
        task = output.start(sink, offset=len(b"already sent|"), idle_poll=0.5)
        await asyncio.sleep(0.05)
        output.write(b"written last")
        output.done.set()  # wakes the idle tail at once, which still reads to the end
        async with asyncio.timeout(0.3):
            await task
        assert [data for _, data in sink.chunks] == [b"written last"]

    asyncio.run(scenario())
