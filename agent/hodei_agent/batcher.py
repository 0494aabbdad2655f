"""Turning one output file of a job into chunks bounded by size and age."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Protocol

from hodei_agent.redact import HOLD_SECONDS, Redactor
from hodei_api.v1 import logs_pb2

logger = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 64 * 1024
MAX_CHUNK_DELAY = 0.05


class ChunkSink(Protocol):
    """Where a tail delivers its chunks; `write` may block to apply backpressure."""

    async def write(self, stream: logs_pb2.LogStream, data: bytes) -> None: ...


@dataclass(frozen=True)
class BatchLimits:
    """When a stream's buffer is flushed, and how often an idle output file is looked at."""

    max_bytes: int = MAX_CHUNK_BYTES
    # A flush happens this many seconds after the first byte that is not flushed yet.
    max_delay: float = MAX_CHUNK_DELAY
    # The longest an idle tail sleeps before reading its file again; it starts at
    # `min_poll` after new data and doubles while the file stays quiet.
    idle_poll: float = 0.05
    min_poll: float = 0.002


DEFAULT_LIMITS = BatchLimits()


async def tail(
    fd: int,
    offset: int,
    stream: logs_pb2.LogStream,
    sink: ChunkSink,
    done: asyncio.Event,
    limits: BatchLimits = DEFAULT_LIMITS,
    redactor: Redactor | None = None,
) -> int:
    """Forward what is appended to the file `fd` from `offset` on to `sink`, in chunks.

    The job writes the file itself (so its output outlives the agent); this reads it with
    `pread`, byte-exact, until `done` is set (the job's process group is gone) and the file
    has been read to its end. A chunk is flushed when it reaches `limits.max_bytes`,
    `limits.max_delay` seconds after its first byte was read, and at the end. While
    `sink.write` blocks (too much unacknowledged), the file is not read. Returns the offset
    reached.

    With a `redactor`, the secrets of the attempt are redacted from what is read before it
    is buffered; bytes that could still begin a secret are held back until the next read,
    the end, or HOLD_SECONDS without new output.
    """
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    first_byte_at = 0.0
    poll = limits.min_poll

    async def flush() -> None:
        if buffer:
            data = bytes(buffer)
            buffer.clear()
            await sink.write(stream, data)

    redacting = redactor.stream() if redactor else None
    held_since = 0.0

    def take(data: bytes) -> None:
        nonlocal first_byte_at
        if data:
            if not buffer:
                first_byte_at = loop.time()
            buffer.extend(data)

    while True:
        # Looked at before reading: whatever the group wrote before it was gone is then read.
        finished = done.is_set()
        data = os.pread(fd, max(1, limits.max_bytes - len(buffer)), offset)
        if data:
            offset += len(data)
            if redacting is not None:
                data = redacting.feed(data)
                held_since = loop.time()
            take(data)
            poll = limits.min_poll
            if len(buffer) >= limits.max_bytes or (
                    buffer and loop.time() - first_byte_at >= limits.max_delay):
                await flush()
            continue
        if finished:
            if redacting is not None:
                take(redacting.flush())
            await flush()
            return offset
        wait = poll
        if redacting is not None and redacting.held:
            release_in = held_since + HOLD_SECONDS - loop.time()
            if release_in <= 0:
                take(redacting.release())
                held_since = loop.time()
                continue
            wait = min(wait, release_in)
        if buffer:
            wait = min(wait, first_byte_at + limits.max_delay - loop.time())
            if wait <= 0:
                await flush()
                continue
        # Nothing signals that a regular file grew: poll it, waking at once when the job ends.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await done.wait()
        poll = min(poll * 2, limits.idle_poll)
