"""`job logs --tail N --since DURATION --timestamps`."""

from __future__ import annotations

import time

from hodeictl_fakes import FakeJobService, FakeLogService, finished, invoke, serve, services

from hodei_api.v1 import jobs_pb2, logs_pb2
from hodeictl.terminal import StreamSanitizer, sanitize_keeping_colours

JOB = jobs_pb2.Job(id="0b9c6f1e-0000-4000-8000-000000000001",
                   state=jobs_pb2.JOB_STATE_SUCCEEDED)


def _chunk(seq: int, data: bytes, age: int, stream: int = 1) -> logs_pb2.LogChunk:
    chunk = logs_pb2.LogChunk(attempt=1, seq=seq, stream=stream, data=data)
    chunk.stored_at.FromSeconds(int(time.time()) - age)
    return chunk


def _chunks() -> list[logs_pb2.LogChunk]:
    """The output, stored this long ago (from now: a test may run long after import)."""
    return [
        _chunk(1, b"one\ntwo\n", 3600),
        _chunk(2, b"three\nfo", 300),
        _chunk(3, b"ur\nfive\n", 10),
        _chunk(4, b"oops\n", 10, stream=2),
    ]


def _logs(*args: str) -> tuple[bytes, bytes, FakeLogService]:
    logs = FakeLogService(_chunks(), finished(jobs_pb2.JOB_STATE_SUCCEEDED, 0))
    with serve(services(jobs=FakeJobService([JOB]), logs=logs)) as address:
        result = invoke("--server", address, "job", "logs", JOB.id, *args)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes, result.stderr_bytes, logs


def test_tail_prints_the_last_lines_of_both_streams() -> None:
    out, err, logs = _logs("--tail", "3")
    assert out == b"four\nfive\n"
    assert err == b"oops\n"
    # The server cuts the tail: the command does not read the output from its start.
    assert logs.requests[0].tail_lines == 3
    assert _logs("--tail", "0")[:2] == (b"", b"")


def test_tail_then_follow_goes_on_after_the_tail() -> None:
    out, _, logs = _logs("--tail", "1", "-f")
    assert out == b""  # the last line so far was stderr's
    assert [(r.after_attempt, r.after_seq) for r in logs.requests][-1] == (1, 4)


def test_since_keeps_what_was_stored_in_that_window() -> None:
    out, err, _ = _logs("--since", "10m")
    assert out == b"three\nfour\nfive\n"
    assert err == b"oops\n"


def test_timestamps_start_every_line() -> None:
    out, _, _ = _logs("--timestamps", "--since", "10m")
    lines = out.decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["three", "four", "five"]
    assert all(line[:20].count("-") == 2 and line.split(" ")[0].endswith("Z")
               for line in lines)


def test_colours_pass_only_as_sgr() -> None:
    text = "\x1b[1;32mok\x1b[0m \x1b[5mblink\x1b[0m \x1b]0;title\x07 \x1b[38;2;1;2;3mrgb\x1b[m"
    assert sanitize_keeping_colours(text) == (
        "\x1b[1;32mok\x1b[0m ^[[5mblink\x1b[0m ^[]0;title^G \x1b[38;2;1;2;3mrgb\x1b[m")
    stream = StreamSanitizer(colours=True)
    pieces = [b"\x1b", b"[3", b"2mgreen\x1b[", b"0m\x1b[2", b"J"]
    shown = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert shown == "\x1b[32mgreen\x1b[0m^[[2J"
