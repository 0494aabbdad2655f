"""A job's tail and pages of earlier output, cut by the server; the Job screen opens at the
tail and fetches earlier lines on scroll back, its window bounded."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from hodei_api.v1 import jobs_pb2, logs_pb2, logs_pb2_grpc
from hodeictl.tui.screens import job as job_screen
from hodeictl.tui.screens.job import JobScreen
from hodeictl.tui.widgets.output import OutputView
from tests.e2e.harness import ServerProcess, token_channel
from tests.tui.harness import SIZE, make_app, run, submit, wait_for, wait_state

pytestmark = pytest.mark.e2e

LINES = 30_000
DONE = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED}


def numbers(first: int, last: int) -> bytes:
    return b"".join(b"%d\n" % n for n in range(first, last + 1))


def stream(server: ServerProcess, **fields: object) -> list[logs_pb2.LogEvent]:
    with token_channel(server.address, server.token) as channel:
        stub = logs_pb2_grpc.LogServiceStub(channel)
        return list(stub.StreamLogs(logs_pb2.StreamLogsRequest(**fields), timeout=30))


def output(events: list[logs_pb2.LogEvent]) -> bytes:
    return b"".join(e.chunk.data for e in events if e.HasField("chunk"))


@pytest.fixture(scope="module")
def counted(tui_server: ServerProcess) -> jobs_pb2.Job:
    """A finished job that printed 1..LINES, stored as many chunks."""
    job = submit(tui_server, "seq", "1", str(LINES))
    assert wait_state(tui_server, job.id, DONE).state == jobs_pb2.JOB_STATE_SUCCEEDED
    return job


def test_the_tail_and_pages_back_rebuild_the_whole_output(tui_server: ServerProcess,
                                                         counted: jobs_pb2.Job) -> None:
    tail = stream(tui_server, job_id=counted.id, tail_lines=10)
    assert output(tail) == numbers(LINES - 9, LINES)
    assert tail[-1].HasField("end")
    chunks = [e.chunk for e in tail if e.HasField("chunk")]
    assert len(chunks) == 1 and chunks[0].offset > 0, "the tail starts inside a chunk"
    pages = [output(tail)]
    first = chunks[0]
    while True:
        page = stream(tui_server, job_id=counted.id, tail_lines=7000,
                      before_attempt=first.attempt, before_seq=first.seq,
                      before_offset=first.offset)
        if not page:
            break
        assert not any(e.HasField("end") for e in page)
        assert output(page).count(b"\n") <= 7000
        pages.insert(0, output(page))
        first = page[0].chunk
    assert len(pages) == 1 + 5  # 29,990 lines before the tail, 7,000 a page
    assert b"".join(pages) == numbers(1, LINES)
    assert pages[0] == numbers(1, LINES - 10 - 4 * 7000)


def test_a_last_line_without_newline_counts_and_bad_requests_say_why(
        tui_server: ServerProcess) -> None:
    job = submit(tui_server, "printf", "a\\nb\\nc")
    wait_state(tui_server, job.id, DONE)
    assert output(stream(tui_server, job_id=job.id, tail_lines=2)) == b"b\nc"
    assert output(stream(tui_server, job_id=job.id, tail_lines=9)) == b"a\nb\nc"
    for fields, says in (({"tail_lines": -1}, "tail_lines must be >= 0"),
                         ({"before_attempt": 1, "before_seq": 1, "follow": True,
                           "tail_lines": 5}, "neither follows"),
                         ({"before_attempt": 1, "before_seq": 1}, "needs tail_lines"),
                         ({"after_attempt": 1, "after_seq": 1, "tail_lines": 3},
                          "resumed")):
        with pytest.raises(grpc.RpcError) as caught:
            stream(tui_server, job_id=job.id, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert says in (caught.value.details() or "")


def test_the_job_screen_opens_at_the_tail_and_pages_back(
        tui_server: ServerProcess, counted: jobs_pb2.Job, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A window of 5,000 lines, pages of 2,000: three pages fill it and cut the newest.
    monkeypatch.setattr(job_screen, "RING_LINES", 5_000)
    monkeypatch.setattr(job_screen, "PAGE_LINES", 2_000)

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            app.push_screen(JobScreen(counted.id))
            await wait_for(pilot, lambda: isinstance(app.screen, JobScreen))
            screen = app.screen
            assert isinstance(screen, JobScreen)
            buffer = screen.buffer
            texts = lambda: [line.text for line in buffer.lines]  # noqa: E731

            def state() -> str:
                view = screen.query_one(OutputView)
                return (f"{len(buffer.lines)} lines {texts()[:1]}..{texts()[-1:]}, at_end "
                        f"{buffer.at_end}, earlier {buffer.earlier}, scroll_y "
                        f"{view.scroll_y}, following {view.following}")

            await wait_for(pilot, lambda: texts()[-1:] == [str(LINES)], what="the tail",
                           shows=state)
            view = screen.query_one(OutputView)
            # Only the tail was read: the job's history was not replayed.
            assert texts() == [str(n) for n in range(LINES - job_screen.TAIL_LINES + 1,
                                                     LINES + 1)]
            assert buffer.earlier and buffer.at_end
            await pilot.press("home")
            first = LINES - job_screen.TAIL_LINES - 2_000 + 1
            await wait_for(pilot, lambda: texts()[0] == str(first), what="a page back",
                           shows=state)
            assert len(buffer.lines) == job_screen.TAIL_LINES + 2_000 and buffer.at_end
            # Where the reader was stays in view: the old first line, below the page.
            await wait_for(pilot, lambda: int(view.scroll_y) >= 1_990, what="the view kept",
                           shows=state)
            await pilot.press("home")
            await wait_for(pilot, lambda: texts()[0] == str(first - 2_000),
                           what="a second page", shows=state)
            assert len(buffer.lines) == 5_000 and not buffer.at_end
            assert texts()[-1] == str(first - 2_000 + 4_999)
            await pilot.press("end")
            await wait_for(pilot, lambda: buffer.at_end and texts()[-1:] == [str(LINES)],
                           what="back at the live tail", shows=state)
            assert len(buffer.lines) == job_screen.TAIL_LINES

    run(scenario())


def test_job_logs_tail_prints_the_servers_tail(tui_server: ServerProcess,
                                               counted: jobs_pb2.Job) -> None:
    result = tui_server.hodeictl("job", "logs", counted.id, "--tail", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == numbers(LINES - 2, LINES)
    nothing = tui_server.hodeictl("job", "logs", counted.id, "--tail", "0")
    assert nothing.returncode == 0 and nothing.stdout == b""
