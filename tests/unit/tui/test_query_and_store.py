"""The jobs filter and the console's in-memory state."""

from __future__ import annotations

import pytest

from hodei_api.v1 import jobs_pb2, logs_pb2
from hodeictl.errors import UsageError
from hodeictl.tui import query
from hodeictl.tui.store import JobIndex, OutputBuffer, Position, Rates, page_lines

OUT, ERR = logs_pb2.LOG_STREAM_STDOUT, logs_pb2.LOG_STREAM_STDERR


def job(job_id: str, state: int = jobs_pb2.JOB_STATE_PENDING, name: str = "",
        labels: dict[str, str] | None = None, worker: str = "") -> jobs_pb2.Job:
    return jobs_pb2.Job(id=job_id, state=state, worker_id=worker,
                        spec=jobs_pb2.JobSpec(name=name, command=["echo", "hi"],
                                              labels=labels or {}))


def test_filter_words_combine() -> None:
    q = query.parse("state:failed,lost label:team=infra worker:w1 nightly")
    assert q.states == {jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_LOST}
    assert q.labels == (("team", "infra"),)
    assert q.workers == ("w1",) and q.words == ("nightly",)
    hit = job("a", jobs_pb2.JOB_STATE_FAILED, "nightly-build", {"team": "infra"}, "id-1")
    assert q.matches(hit, {"id-1": "w1"})
    assert not q.matches(hit, {"id-1": "w2"})
    assert not q.matches(job("b", jobs_pb2.JOB_STATE_FAILED, "nightly", {"team": "web"}, "id-1"),
                         {"id-1": "w1"})
    assert query.parse(q.text()) == q


def test_filter_matches_text_in_id_name_and_command() -> None:
    assert query.parse("ECHO").matches(job("x"))
    assert not query.parse("state:running").matches(job("x"))
    assert query.parse("").empty


@pytest.mark.parametrize(("text", "message"), [
    ("state:bogus", "unknown state 'bogus'"),
    ("state:", "state: needs a value"),
    ("label:team", "label: expects KEY=VALUE"),
])
def test_bad_filters_say_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        query.parse(text)


def test_output_buffer_is_a_bounded_ring_of_sanitised_lines() -> None:
    buffer = OutputBuffer(max_lines=3)
    assert buffer.feed(OUT, b"one\ntwo\nthr") == 2
    assert buffer.feed(ERR, b"err\x1b[2J\n") == 1
    assert buffer.feed(OUT, b"ee\nfour\n") == 2
    assert [(line.stream, line.text) for line in buffer.lines] == [
        (ERR, "err^[[2J"), (OUT, "three"), (OUT, "four")]
    assert buffer.total == 5 and buffer.dropped == 2


def test_output_buffer_joins_split_utf8_and_crlf_and_flushes_the_rest() -> None:
    buffer = OutputBuffer()
    snowman = "☃".encode()
    buffer.feed(OUT, b"a" + snowman[:1])
    buffer.feed(OUT, snowman[1:] + b"\r")
    buffer.feed(OUT, b"\nlast")
    assert [line.text for line in buffer.lines] == ["a☃"]
    assert buffer.flush() == 1
    assert [line.text for line in buffer.lines] == ["a☃", "last"]


def test_job_index_counts_transitions_and_failures() -> None:
    index = JobIndex()
    index.reset([job("a"), job("b")])
    index.upsert(job("a", jobs_pb2.JOB_STATE_RUNNING))
    index.upsert(job("a", jobs_pb2.JOB_STATE_FAILED))
    index.upsert(job("a", jobs_pb2.JOB_STATE_FAILED))  # a repeat counts once
    assert sum(index.rates.started) == 1 and sum(index.rates.finished) == 1
    assert [j.id for j in index.failures] == ["a"]
    assert index.by_state()[jobs_pb2.JOB_STATE_PENDING] == 1


def test_rates_slide_by_the_second() -> None:
    rates = Rates()
    rates.count(2, 0, now=1000.2)
    rates.count(1, 1, now=1000.9)
    rates.count(0, 1, now=1003.1)
    assert list(rates.started)[-4:] == [3, 0, 0, 0]
    assert list(rates.finished)[-4:] == [1, 0, 0, 1]


def test_output_lines_know_where_they_start() -> None:
    buffer = OutputBuffer()
    buffer.feed(OUT, b"one\ntw", Position(1, 1, 0))
    buffer.feed(ERR, b"err\n", Position(1, 2, 0))
    buffer.feed(OUT, b"o\nthree\n", Position(1, 3, 5))
    assert [(line.text, line.start) for line in buffer.lines] == [
        ("one", Position(1, 1, 0)), ("err", Position(1, 2, 0)),
        ("two", Position(1, 1, 4)), ("three", Position(1, 3, 7))]
    assert buffer.first_start() == Position(1, 1, 0)


def test_prepending_a_page_keeps_the_window_bounded() -> None:
    buffer = OutputBuffer(max_lines=4)
    buffer.feed(OUT, b"c\nd\ne\n", Position(1, 2, 0))
    chunks = [logs_pb2.LogChunk(attempt=1, seq=1, stream=OUT, data=b"b\n", offset=2)]
    page = page_lines(chunks)
    assert [(line.text, line.start) for line in page] == [("b", Position(1, 1, 2))]
    assert buffer.prepend(page) == 1 and buffer.at_end
    assert [line.text for line in buffer.lines] == ["b", "c", "d", "e"]
    assert buffer.prepend(page_lines([logs_pb2.LogChunk(
        attempt=1, seq=1, stream=OUT, data=b"a\n")])) == 1
    # Full: the newest line falls off the back, and the window no longer reaches the end.
    assert [line.text for line in buffer.lines] == ["a", "b", "c", "d"]
    assert not buffer.at_end and buffer.prepended == 2 and buffer.dropped == 0


def test_a_chunk_fed_in_slices_gives_the_same_lines_and_starts() -> None:
    from hodeictl.tui.screens.job import slices

    data = b"".join(b"line %d\r\n" % n if n % 7 == 0 else b"line %d\n" % n
                    for n in range(5000)) + b"partial"
    pieces = list(slices(data, 1000))
    assert len(pieces) > 30
    assert all(data[offset:offset + len(piece)] == piece for offset, piece in pieces)
    assert b"".join(piece for _, piece in pieces) == data
    assert all(piece.endswith(b"\n") for _, piece in pieces[:-1])
    whole, sliced = OutputBuffer(100_000), OutputBuffer(100_000)
    whole.feed(OUT, data, Position(1, 3, 40))
    for offset, piece in pieces:
        sliced.feed(OUT, piece, Position(1, 3, 40 + offset))
    whole.flush()
    sliced.flush()
    assert list(sliced.lines) == list(whole.lines)
    assert sliced.lines[7].text == "line 7" and sliced.lines[-1].text == "partial"
    assert sliced.lines[1].start == (1, 3, 40 + len(b"line 0\r\n"))
    assert list(slices(b"x" * 5000, 1000)) == [(0, b"x" * 5000)]
    assert list(slices(b"", 1000)) == []
