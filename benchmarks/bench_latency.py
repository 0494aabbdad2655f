"""Submit -> start latency with a warm agent, on the embedded stack.

"Start" is when the agent reported the job's process running (the job's started_at);
"submit" is the job's created_at. Both come from PostgreSQL's clock, as does the attempt's
assigned_at, which splits the latency in two: submit -> assigned (the insert, waking the
dispatcher, the claim) and assigned -> start (the assignment, the message to the agent, the
agent starting the process through its keeper, the report back, the server taking it).
The same-run reference: one `true` process started and awaited, one at a time.
Usage: python benchmarks/bench_latency.py [SAMPLES]
"""

from __future__ import annotations

import statistics
import sys
import time

from reference import measure
from stack import embedded_stack, wait_finished

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with embedded_stack() as stack, stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        latencies, queued, started_after = [], [], []
        for i in range(samples + 10):
            job = stub.SubmitJob(jobs_pb2.SubmitJobRequest(
                spec=jobs_pb2.JobSpec(command=["true"])), timeout=10).job
            wait_finished(stub, [job.id])
            if i < 10:  # warm-up
                continue
            done = stub.GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=10)
            created = done.created_at.ToNanoseconds()
            started = done.started_at.ToNanoseconds()
            assigned = done.attempts[-1].assigned_at.ToNanoseconds()
            latencies.append((started - created) / 1e6)
            queued.append((assigned - created) / 1e6)
            started_after.append((started - assigned) / 1e6)
            time.sleep(0.01)
    reference = measure()
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(f"submit->start latency over {len(latencies)} jobs: "
          f"p50 {p50:.1f} ms = {p50 / reference.spawn_ms:.1f} x one sequential spawn, "
          f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")
    print(f"  p50 submit -> assigned {statistics.median(queued):.1f} ms, "
          f"assigned -> start {statistics.median(started_after):.1f} ms")
    print(f"  {reference.describe()}")


if __name__ == "__main__":
    main()
