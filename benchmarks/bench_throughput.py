"""Throughput of N `true` jobs through 2 agents x 4 slots, on the embedded stack, beside the
same-run reference: how many `true` processes per second the machine spawns through asyncio,
8 at once (the most any scheduler could run here).

The jobs are submitted one SubmitJob call each (32 in flight); with --batch, in one
SubmitJobs call (against a server without it, one call each again).

Usage: python benchmarks/bench_throughput.py [JOBS] [--batch]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from reference import measure
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


def submit_batch(stub: jobs_pb2_grpc.JobServiceStub, spec: jobs_pb2.JobSpec,
                 count: int) -> list[str] | None:
    """Submit `count` jobs in SubmitJobs calls of 10,000; None if the server lacks it."""
    if not hasattr(jobs_pb2, "SubmitJobsRequest"):  # the build from before it
        return None
    ids: list[str] = []
    for first in range(0, count, 10_000):
        request = jobs_pb2.SubmitJobsRequest(
            jobs=[jobs_pb2.SubmitJobRequest(spec=spec)] * min(10_000, count - first))
        try:
            ids.extend(j.id for j in stub.SubmitJobs(request, timeout=120).jobs)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise
    return ids


def run_true_jobs(stack: Stack, count: int,
                  on_start: Callable[[], object] = lambda: None, batch: bool = False) -> Run:
    """With both agents up, submit `count` `true` jobs and wait for all of them to end;
    `on_start` is called just before the first submission."""
    stack.warm_up()
    stack.wait_workers(2)
    spec = jobs_pb2.JobSpec(command=["true"])
    with stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        on_start()
        start = time.perf_counter()
        ids = (submit_batch(stub, spec, count) if batch else None) or asyncio.run(
            submit_all(stack, spec, count))
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
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 1000
    batch = "--batch" in sys.argv
    with embedded_stack() as stack:
        run = run_true_jobs(stack, count, batch=batch)
        failed = not_succeeded(stack, run.ids)
    reference = measure()
    rate = count / run.elapsed
    print(f"{count} jobs ({failed} not succeeded) through 2 agents x 4 slots: "
          f"{run.elapsed:.2f} s, {rate:.0f} jobs/s = {rate / reference.spawns_per_s:.0%} of the "
          f"spawn rate (submission alone: {count / run.submitted:.0f} jobs/s"
          f"{', one SubmitJobs call' if batch and hasattr(jobs_pb2, 'SubmitJobsRequest') else ''})")
    print(f"  {reference.describe()}")


if __name__ == "__main__":
    main()
