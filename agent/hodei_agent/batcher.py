"""Turning one output pipe of a job into chunks bounded by size and age."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from hodei_api.v1 import logs_pb2

logger = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 64 * 1024
MAX_CHUNK_DELAY = 0.05


class ByteReader(Protocol):
    """What a pump reads: an `asyncio.StreamReader`, or one that redacts it."""

    async def read(self, n: int = -1) -> bytes: ...


class ChunkSink(Protocol):
    """Where a pump delivers its chunks; `write` may block to apply backpressure."""

    async def write(self, stream: logs_pb2.LogStream, data: bytes) -> None: ...


@dataclass(frozen=True)
class BatchLimits:
    """When a stream's buffer is flushed, and how long a pipe may stay open after exit."""

    max_bytes: int = MAX_CHUNK_BYTES
    # A flush happens this many seconds after the first byte that is not flushed yet.
    max_delay: float = MAX_CHUNK_DELAY
    # How often an idle pump wakes up to notice that the job's process has exited.
    idle_poll: float = 0.25
    # After the job's process group is gone, a pipe that is still open is held by a process
    # that escaped the group (setsid, daemonized); stop reading once it stays quiet this long.
    orphan_grace: float = 2.0


DEFAULT_LIMITS = BatchLimits()


async def pump(
    reader: ByteReader,
    stream: logs_pb2.LogStream,
    sink: ChunkSink,
    exited: asyncio.Event,
    limits: BatchLimits = DEFAULT_LIMITS,
) -> None:
    """Forward everything `reader` yields to `sink` in chunks, byte-exact, until EOF.

    A chunk is flushed when it reaches `limits.max_bytes`, `limits.max_delay` seconds after
    its first byte arrived, and at EOF. While `sink.write` blocks, the pipe is not read, so
    a job writing faster than the server acknowledges blocks on its own writes.
    `exited` is set once the job's process group is gone (see `BatchLimits.orphan_grace`).
    """
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    first_byte_at = 0.0
    exit_seen_at: float | None = None

    async def flush() -> None:
        if buffer:
            data = bytes(buffer)
            buffer.clear()
            await sink.write(stream, data)

    while True:
        now = loop.time()
        if exit_seen_at is None and exited.is_set():
            exit_seen_at = now
        if buffer:
            deadline = first_byte_at + limits.max_delay
            if now >= deadline:  # data kept arriving without a pause: flush on time anyway
                await flush()
                continue
        elif exit_seen_at is not None:
            deadline = exit_seen_at + limits.orphan_grace
        else:
            deadline = now + limits.idle_poll
        try:
            async with asyncio.timeout_at(deadline):
                data = await reader.read(limits.max_bytes - len(buffer))
        except TimeoutError:
            # StreamReader.read consumes nothing when it is cancelled, so no byte is lost.
            if buffer:
                await flush()
            elif exit_seen_at is not None and loop.time() >= exit_seen_at + limits.orphan_grace:
                logger.warning(
                    "stream %s: a process outside the job's group keeps the pipe open; "
                    "stopped reading it",
                    logs_pb2.LogStream.Name(stream),
                )
                return
            continue
        if not data:
            await flush()
            return
        if not buffer:
            first_byte_at = loop.time()
        buffer += data
        if len(buffer) >= limits.max_bytes:
            await flush()
