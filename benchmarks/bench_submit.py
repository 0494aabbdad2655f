"""Queueing rate: N jobs through SubmitJobs (one call per 10,000), against the same-run
rate of one SubmitJob call per job (32 in flight), on the embedded stack.

The jobs select a label no agent has, so they stay queued: what is measured is the
submission alone, not the dispatching that would otherwise compete for the CPU.
Against a server without SubmitJobs, only the one-call-per-job rate is printed.

Usage: python benchmarks/bench_submit.py [JOBS] [SINGLE_JOBS]
"""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
from bench_throughput import submit_all
from reference import measure
from stack import embedded_stack

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc

BATCH = 10_000
SPEC = jobs_pb2.JobSpec(command=["true"], selector={"bench.hodei.io/queue-only": "yes"})


def submit_batches(stub: jobs_pb2_grpc.JobServiceStub, count: int) -> float | None:
    """Seconds to queue `count` jobs through SubmitJobs; None if the server lacks it."""
    if not hasattr(jobs_pb2, "SubmitJobsRequest"):  # the build from before it
        return None
    entry = jobs_pb2.SubmitJobRequest(spec=SPEC)
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        request = jobs_pb2.SubmitJobsRequest(jobs=[entry] * min(BATCH, count - first))
        try:
            reply = stub.SubmitJobs(request, timeout=120)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise
        assert len(reply.jobs) == len(request.jobs)
    return time.perf_counter() - start


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    single = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000
    with embedded_stack() as stack, stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        submit_batches(stub, 100)  # warm-up (connections, prepared plans)
        batched = submit_batches(stub, count)
        start = time.perf_counter()
        asyncio.run(submit_all(stack, SPEC, single))
        one_by_one = single / (time.perf_counter() - start)
    reference = measure()
    print(f"queue {count} jobs: ", end="")
    if batched is None:
        print("SubmitJobs not implemented by this server")
    else:
        print(f"SubmitJobs {batched:.2f} s, {count / batched:.0f} jobs/s "
              f"({count / batched / one_by_one:.1f} x one SubmitJob per job)")
    print(f"  one SubmitJob per job (32 in flight, {single} jobs): {one_by_one:.0f} jobs/s")
    print(f"  {reference.describe()}")


if __name__ == "__main__":
    main()
