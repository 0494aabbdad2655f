"""Throughput of N `true` jobs through 2 agents x 4 slots, on the embedded stack.

Usage: python benchmarks/bench_throughput.py [JOBS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from stack import Stack, embedded_stack, wait_finished

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc

# Submissions in flight at once: enough to keep the queue from running dry.
CONCURRENCY = 32


async def submit_all(stack: Stack, spec: jobs_pb2.JobSpec, count: int) -> list[str]:
    """Submit `count` jobs from one asyncio client, CONCURRENCY at a time."""
    metadata = (("authorization", f"Bearer {stack.token}"),)
    request = jobs_pb2.SubmitJobRequest(spec=spec)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> str:
            async with gate:
                reply = await stub.SubmitJob(request, metadata=metadata, timeout=30)
                return str(reply.job.id)

        return list(await asyncio.gather(*(one() for _ in range(count))))


@dataclass
class Run:
    ids: list[str]
    submitted: float  # seconds from the first submission to the last
    elapsed: float  # seconds from the first submission to the last result


def run_true_jobs(stack: Stack, count: int,
                  on_start: Callable[[], object] = lambda: None) -> Run:
    """With both agents up, submit `count` `true` jobs and wait for all of them to end;
    `on_start` is called just before the first submission."""
    stack.warm_up()
    stack.wait_workers(2)
    with stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        on_start()
        start = time.perf_counter()
        ids = asyncio.run(submit_all(stack, jobs_pb2.JobSpec(command=["true"]), count))
        submitted = time.perf_counter() - start
        wait_finished(stub, ids)
        return Run(ids, submitted, time.perf_counter() - start)


def not_succeeded(stack: Stack, ids: list[str]) -> int:
    succeeded: set[str] = set()
    token = ""
    with stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        while True:
            page = stub.ListJobs(jobs_pb2.ListJobsRequest(
                states=[jobs_pb2.JOB_STATE_SUCCEEDED], page_size=1000, page_token=token),
                timeout=30)
            succeeded.update(j.id for j in page.jobs)
            token = page.next_page_token
            if not token:
                return len(set(ids) - succeeded)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with embedded_stack() as stack:
        run = run_true_jobs(stack, count)
        failed = not_succeeded(stack, run.ids)
    print(f"{count} jobs ({failed} not succeeded) through 2 agents x 4 slots: "
          f"{run.elapsed:.2f} s, {count / run.elapsed:.0f} jobs/s "
          f"(submission alone: {count / run.submitted:.0f} jobs/s)")


if __name__ == "__main__":
    main()
