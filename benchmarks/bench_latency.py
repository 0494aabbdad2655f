"""Submit -> start latency with a warm agent, on the embedded stack.

"Start" is when the agent reported the job's process running (the job's started_at);
"submit" is the job's created_at. Both come from PostgreSQL's clock, as does the attempt's
assigned_at, which splits the latency in two: submit -> assigned (the insert, waking the
dispatcher, the claim) and assigned -> start (the assignment, the message to the agent, the
agent starting the process through its keeper, the report back, the server taking it).
The jobs go one at a time: the client sees one end (it asks every 20 ms), waits 10 ms and
submits the next, so the stack sits idle 10-30 ms before each. The same-run references: one
`true` process started and awaited, one at a time back to back (the issue's reference), and
the same after the median idle time the jobs had (the previous job's finished_at to this
one's created_at): an idle pause slows the next piece of work on this machine by about half
(see `reference.py`).
Usage: python benchmarks/bench_latency.py [SAMPLES]
"""

from __future__ import annotations

import statistics
import sys
import time

from reference import measure, one_spawn_ms
from stack import embedded_stack, wait_finished

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc

WARM_UP = 10
PAUSE = 0.01  # between seeing one job's end and submitting the next


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with embedded_stack() as stack, stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        latencies, queued, started_after, idle = [], [], [], []
        previous_end = None
        for i in range(samples + WARM_UP):
            job = stub.SubmitJob(jobs_pb2.SubmitJobRequest(
                spec=jobs_pb2.JobSpec(command=["true"])), timeout=10).job
            wait_finished(stub, [job.id])
            done = stub.GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=10)
            time.sleep(PAUSE)  # before the next job; the figures are PostgreSQL's timestamps
            created = done.created_at.ToNanoseconds()
            if previous_end is not None and i >= WARM_UP:
                idle.append((created - previous_end) / 1e9)
            previous_end = done.finished_at.ToNanoseconds()
            if i < WARM_UP:
                continue
            started = done.started_at.ToNanoseconds()
            assigned = done.attempts[-1].assigned_at.ToNanoseconds()
            latencies.append((started - created) / 1e6)
            queued.append((assigned - created) / 1e6)
            started_after.append((started - assigned) / 1e6)
    reference = measure()
    pause = statistics.median(idle)
    after_pause = one_spawn_ms(samples=200, gap=pause)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(f"submit->start latency over {len(latencies)} jobs: "
          f"p50 {p50:.1f} ms = {p50 / reference.spawn_ms:.1f} x one sequential spawn, "
          f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")
    print(f"  = {p50 / after_pause:.1f} x one spawn after the jobs' median idle time "
          f"({pause * 1000:.0f} ms): {after_pause:.2f} ms")
    print(f"  p50 submit -> assigned {statistics.median(queued):.1f} ms, "
          f"assigned -> start {statistics.median(started_after):.1f} ms")
    print(f"  {reference.describe()}")


if __name__ == "__main__":
    main()
