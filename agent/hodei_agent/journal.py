"""A job attempt's chunk journal: which bytes of its output files each chunk sent held, and
the highest seq the server acknowledged (see `statedir` for where it lives)."""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass

from hodei_api.v1 import logs_pb2

CHUNKS_SUFFIX = ".chunks"
ACKED_SUFFIX = ".acked"
RECORD = struct.Struct("<QBI")  # seq, stream, length


class ChunkJournal:
    """An append-only record of every chunk made from a job's output files, and the highest
    seq acknowledged.

    A chunk's record is written before the chunk can be sent, so a restarted agent knows
    which seq numbers went out and which bytes of each file they held: it resends the
    unacknowledged ones byte for byte and goes on from the next offset with the next seq.
    """

    def __init__(self, prefix: str) -> None:
        # Created on first use: a job that prints nothing costs no journal files.
        self._prefix = prefix
        self._chunks: int | None = None
        self._acked: int | None = None
        self.used = False  # a chunk was recorded: the job printed something

    def chunk(self, seq: int, stream: logs_pb2.LogStream, length: int) -> None:
        """Record chunk `seq`: the next `length` bytes of `stream`'s file."""
        self.used = True
        if self._chunks is None:
            self._chunks = os.open(self._prefix + CHUNKS_SUFFIX,
                                   os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._chunks, RECORD.pack(seq, stream, length))

    def acked(self, seq: int) -> None:
        """Record that the server acknowledged every chunk up to `seq`."""
        if self._acked is None:
            self._acked = os.open(self._prefix + ACKED_SUFFIX, os.O_WRONLY | os.O_CREAT, 0o600)
        os.pwrite(self._acked, seq.to_bytes(8, "little"), 0)

    def close(self) -> None:
        for fd in (self._chunks, self._acked):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._chunks = self._acked = None


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    stream: logs_pb2.LogStream
    offset: int
    length: int


@dataclass(frozen=True)
class Journal:
    """A job's journal as read back: chunks in seq order, where each stream's file goes on."""

    entries: list[JournalEntry]
    acked_seq: int
    offsets: dict[logs_pb2.LogStream, int]

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq if self.entries else 0
