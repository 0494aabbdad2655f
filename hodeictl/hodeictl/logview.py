"""What `job logs` and `job run` show of a job's output: since when, with timestamps, the
last lines, and whether a terminal gets the job's colours.

Output is bytes, kept as bytes: a line is what ends in `\\n` (or the end of a chunk), a
timestamp (the time the server stored the chunk, UTC, like kubectl's `--timestamps`) goes
before each line's first byte.
"""

from __future__ import annotations

import datetime
import enum
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hodei_api.v1 import logs_pb2


class Colour(enum.StrEnum):
    """`--color`: whether a job's SGR colour sequences reach a terminal."""

    auto = "auto"
    always = "always"
    never = "never"


def default_colour() -> Colour:
    """`HODEI_COLOR` if it names a choice, else never (colours shown escaped)."""
    try:
        return Colour(os.environ.get("HODEI_COLOR", "never").strip().lower())
    except ValueError:
        return Colour.never


class LogView:
    """How chunks become the bytes written; one per command."""

    def __init__(self, *, since: float | None = None, timestamps: bool = False,
                 tail: int | None = None, colour: str | None = None) -> None:
        self.cutoff = time.time() - since if since is not None else None
        self.timestamps = timestamps
        self.tail = tail
        self.colour = Colour(colour) if colour else default_colour()
        self._line_start = {False: True, True: True}

    def colours_on(self, stream: Any) -> bool:
        """Whether the job's colours pass to `stream` (a terminal; a pipe gets raw bytes)."""
        if self.colour is Colour.never or not stream.isatty():
            return False
        if self.colour is Colour.always:
            return True
        return not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"

    def _kept(self, chunk: logs_pb2.LogChunk) -> bool:
        if self.cutoff is None or not chunk.HasField("stored_at"):
            return True
        return chunk.stored_at.ToNanoseconds() / 1e9 >= self.cutoff

    def lines(self, chunk: logs_pb2.LogChunk, stderr: bool) -> list[bytes]:
        """The chunk as lines (the last may be a line's start), as they would be shown."""
        if not self._kept(chunk):
            return []
        stamp = self._stamp(chunk) if self.timestamps else b""
        pieces = []
        for line in chunk.data.splitlines(keepends=True):
            prefix = stamp if self._line_start[stderr] else b""
            pieces.append(prefix + line)
            self._line_start[stderr] = line.endswith(b"\n")
        return pieces

    def shown(self, chunk: logs_pb2.LogChunk, stderr: bool) -> bytes:
        """The bytes to write for this chunk."""
        if not self.timestamps:
            return chunk.data if self._kept(chunk) else b""
        return b"".join(self.lines(chunk, stderr))

    def tail_done(self) -> None:
        """The tail was written; what follows starts where it ended."""

    @staticmethod
    def _stamp(chunk: logs_pb2.LogChunk) -> bytes:
        if not chunk.HasField("stored_at"):
            return b"-" + b" "
        when = datetime.datetime.fromtimestamp(chunk.stored_at.ToNanoseconds() / 1e9,
                                               datetime.UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3].encode() + b"Z "
