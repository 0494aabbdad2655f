"""Where the last lines of a job's output begin, found by reading back from their end.

A job's output is its chunks in (attempt, seq) order, stdout and stderr together. A tail
or a page of N lines starts right after the N-th newline counted back from its end (a
newline that is the very last byte ends the last line and is not counted). Only a batch
of chunks is held at a time, whatever the size of the output.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple, Protocol

from hodei_server.store.jobs import Row

# Past every stored chunk: "before the end of the output".
END_ATTEMPT = 2**31 - 1
END_SEQ = 2**63 - 1
BACK_BATCH = 64


class Position(NamedTuple):
    """Byte `offset` of chunk (attempt, seq)."""

    attempt: int
    seq: int
    offset: int


END = Position(END_ATTEMPT, END_SEQ, 0)


class ChunksBack(Protocol):
    async def read_chunks_back(self, job_id: uuid.UUID, before_attempt: int,
                               before_seq: int, limit: int = ...) -> list[Row]: ...


async def line_start(store: ChunksBack, job_id: uuid.UUID, lines: int,
                     before: Position = END) -> Position | None:
    """Where the last `lines` lines before `before` begin; None: at the output's start."""
    if before.offset and before.seq < END_SEQ:
        # The chunk `before` points into is read too, up to its offset.
        upper = (before.attempt, before.seq + 1)
    else:
        upper = (before.attempt, before.seq)
    remaining = lines
    last_byte = True
    while True:
        rows = await store.read_chunks_back(job_id, *upper, limit=BACK_BATCH)
        for row in rows:
            data: bytes = row["data"]
            at = (row["attempt"], row["seq"])
            end = before.offset if at == (before.attempt, before.seq) else len(data)
            search_end = end
            if last_byte and end:
                last_byte = False
                if data[end - 1:end] == b"\n":
                    search_end = end - 1
            while (newline := data.rfind(b"\n", 0, search_end)) >= 0:
                remaining -= 1
                if remaining <= 0:
                    return Position(*at, newline + 1)
                search_end = newline
            upper = at
        if len(rows) < BACK_BATCH:
            return None
