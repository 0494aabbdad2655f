"""The operator console (`hodeictl tui`), driven by Textual's pilot on the embedded stack.

Prints, each beside a same-run reference (a bare `python -c pass`):
- first paint: start to the first rows drawn, with JOBS jobs in the database;
- key latency while following a job that prints LINES lines (median and worst);
- 200 job updates a second: whether the table keeps up (updates applied/s, lag at the end);
- memory while following that job (RSS growth; the output ring is bounded).

Usage: python benchmarks/bench_tui.py [JOBS] [LINES]   (defaults 10000, 1000000)
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from stack import Stack, embedded_stack
from textual import events

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc
from hodeictl.target import Settings
from hodeictl.tui.app import HodeiApp
from hodeictl.tui.screens.job import RING_LINES, JobScreen
from hodeictl.tui.widgets.output import OutputView

SIZE = (160, 48)
RATE = 200  # job submissions a second (each is several updates: pending, running, ...)
RATE_SECONDS = 10


def python_start() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def fill(stack: Stack, count: int) -> None:
    """`count` jobs no worker will take (their selector matches none), 100 in flight."""
    spec = jobs_pb2.JobSpec(command=["true"], selector={"bench": "nowhere"})
    with stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        for start in range(0, count, 100):
            calls = [stub.SubmitJob.future(jobs_pb2.SubmitJobRequest(spec=spec), timeout=30)
                     for _ in range(min(100, count - start))]
            for call in calls:
                call.result()


def submit(stack: Stack, command: list[str]) -> str:
    with stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        request = jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(command=command))
        return str(stub.SubmitJob(request, timeout=10).job.id)


def make_app(stack: Stack) -> HodeiApp:
    token = stack.home / "bench-token"
    token.write_text(stack.token)
    return HodeiApp(Settings(server=stack.address, token_file=str(token)))


async def first_paint(stack: Stack) -> float:
    start = time.perf_counter()
    app = make_app(stack)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#jobs-table")
        while not getattr(table, "row_count", 0):
            await pilot.pause(0.005)
        await pilot.pause(0)
        return time.perf_counter() - start


async def follow(stack: Stack, lines: int) -> tuple[list[float], float, int, float]:
    """Key latencies (s) while the output streams in, RSS growth (MiB), lines received
    (the screen opens at the tail of what the job printed so far), seconds."""
    # In 100 bursts, so the lines arrive while the screen follows them.
    step = max(lines // 100, 1)
    script = (f"i=0; while [ $i -lt 100 ]; do seq $((i*{step}+1)) $(((i+1)*{step})); "
              "i=$((i+1)); sleep 0.02; done")
    job_id = submit(stack, ["sh", "-c", script])
    app = make_app(stack)
    latencies: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)
        before = rss_mb()
        start = time.perf_counter()
        screen = JobScreen(job_id)
        await app.push_screen(screen)
        view = screen.query_one(OutputView)
        last = str(step * 100)
        # The screen opens at the output's tail: done when the job's last line is held.
        while (not screen.buffer.lines or screen.buffer.lines[-1].text != last
               or not latencies) and time.perf_counter() - start < 600:
            # A key as the terminal sends it, timed until its action has run (the pilot's
            # press() would wait for the app to be idle, which it is not while streaming).
            was = view.following
            pressed = time.perf_counter()
            app.post_message(events.Key("f", "f"))
            while view.following == was and time.perf_counter() - pressed < 10:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - pressed)
            await asyncio.sleep(0.05)
        return latencies, rss_mb() - before, screen.buffer.total, time.perf_counter() - start


def change_time(job: jobs_pb2.Job) -> float | None:
    """When the server made the change a job update reports (None: not known)."""
    stamp = {jobs_pb2.JOB_STATE_PENDING: job.created_at,
             jobs_pb2.JOB_STATE_RUNNING: job.started_at}.get(job.state, job.finished_at)
    return stamp.ToNanoseconds() / 1e9 if stamp.seconds else None


async def updates(stack: Stack) -> tuple[float, float, float, int, int, list[float]]:
    """Updates applied per second while sending, how long after the last submission the
    last update arrived and the table held every job, rows, jobs sent, and each update's
    lag (from the change on the server to the console applying it, seconds)."""
    app = make_app(stack)
    applied = 0
    last_arrival = 0.0
    lags: list[float] = []
    original = app.apply_job

    def counting(job: jobs_pb2.Job) -> None:
        nonlocal applied, last_arrival
        applied += 1
        last_arrival = time.perf_counter()
        if (changed := change_time(job)) is not None:
            lags.append(time.time() - changed)
        original(job)

    app.apply_job = counting  # type: ignore[method-assign]
    sent: list[str] = []

    def producer() -> None:
        with stack.channel() as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            spec = jobs_pb2.JobSpec(command=["true"], labels={"bench": "rate"})
            begin = time.perf_counter()
            for tick in range(RATE_SECONDS * 10):
                calls = [stub.SubmitJob.future(jobs_pb2.SubmitJobRequest(spec=spec), timeout=30)
                         for _ in range(RATE // 10)]
                sent.extend(call.result().job.id for call in calls)
                time.sleep(max(0.0, begin + (tick + 1) / 10 - time.perf_counter()))

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"label:bench=rate", "enter")
        await pilot.pause(1.0)
        thread = threading.Thread(target=producer)
        start = time.perf_counter()
        thread.start()
        while thread.is_alive():
            await pilot.pause(0.1)
        elapsed = time.perf_counter() - start
        during = applied / elapsed
        table = app.screen.query_one("#jobs-table")
        done = time.perf_counter()
        while not set(sent) <= set(table.rows) and time.perf_counter() - done < 120:  # type: ignore[attr-defined]
            await pilot.pause(0.02)
        table_lag = time.perf_counter() - done
        arrival_lag = max(0.0, last_arrival - done) if last_arrival else 0.0
        return (during, arrival_lag, table_lag, len(table.rows),  # type: ignore[attr-defined]
                len(sent), lags)


async def measure(stack: Stack, jobs: int, lines: int, reference: float) -> None:
    paint = min([await first_paint(stack) for _ in range(2)])
    print(f"first paint with {jobs} jobs: {paint * 1000:.0f} ms "
          f"(goal <= 1000 ms); ratio to python -c pass {paint / reference:.1f}x", flush=True)
    latencies, grown, seen, took = await follow(stack, lines)
    print(f"following a job printing {lines} lines ({seen} seen in {took:.1f} s, "
          f"{seen / took:,.0f} lines/s): key latency median "
          f"{statistics.median(latencies) * 1000:.0f} ms, worst "
          f"{max(latencies) * 1000:.0f} ms over {len(latencies)} presses (goal <= 100 ms); "
          f"ratio of worst to python -c pass {max(latencies) / reference:.1f}x", flush=True)
    print(f"memory while following {lines} lines: RSS grew {grown:.1f} MiB "
          f"(the output ring holds at most {RING_LINES} lines)", flush=True)
    rate, arrival, lag, rows, sent, lags = await updates(stack)
    print(f"{RATE} submissions/s of `true` jobs for {RATE_SECONDS} s ({sent} jobs, each "
          f"several updates): {rate:,.0f} updates/s applied while sending; the table held "
          f"every job {lag * 1000:.0f} ms after the last submission ({rows} rows); the "
          f"server's last update arrived {arrival * 1000:.0f} ms after it", flush=True)
    lags.sort()
    if lags:
        print(f"each update, from the change on the server to the console: median "
              f"{lags[len(lags) // 2] * 1000:.0f} ms, 90th percentile "
              f"{lags[int(len(lags) * 0.9)] * 1000:.0f} ms, worst {lags[-1] * 1000:.0f} ms "
              f"over {len(lags)} updates; ratio of the median to python -c pass "
              f"{lags[len(lags) // 2] / reference:.1f}x", flush=True)


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    reference = min(python_start() for _ in range(3))
    print(f"reference: python -c pass {reference * 1000:.0f} ms")
    with embedded_stack() as stack:
        print(f"filling {jobs} jobs ...", flush=True)
        fill(stack, jobs)
        asyncio.run(measure(stack, jobs, lines, reference))


if __name__ == "__main__":
    main()
