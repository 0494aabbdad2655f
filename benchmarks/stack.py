"""Starts a throw-away embedded stack for a benchmark and stops it afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc, workers_pb2, workers_pb2_grpc

BIN = Path(sys.executable).parent


class _Bearer(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the stack's admin token to every unary call (all a benchmark makes)."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details._replace(metadata=[*(details.metadata or ()), self.header]),
                            request)


@dataclass
class Stack:
    home: Path
    address: str
    token: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "HODEI_SERVER": self.address, "HODEI_HOME": str(self.home),
                "HODEI_TOKEN": self.token}

    def channel(self) -> grpc.Channel:
        return grpc.intercept_channel(grpc.insecure_channel(self.address), _Bearer(self.token))

    def wait_workers(self, count: int, timeout: float = 60.0) -> None:
        with self.channel() as channel:
            stub = workers_pb2_grpc.WorkerServiceStub(channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                workers = stub.ListWorkers(workers_pb2.ListWorkersRequest(), timeout=5).workers
                ready = [w for w in workers if w.state in (workers_pb2.WORKER_STATE_READY,
                                                           workers_pb2.WORKER_STATE_BUSY)]
                if len(ready) >= count:
                    return
                time.sleep(0.1)
        raise RuntimeError(f"{count} workers did not connect in {timeout}s")

    def warm_up(self, jobs: int = 16) -> None:
        """Enough parallel work for the local provider to start both agents."""
        with self.channel() as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            ids = [
                stub.SubmitJob(jobs_pb2.SubmitJobRequest(
                    spec=jobs_pb2.JobSpec(command=["sleep", "0.5"])), timeout=10).job.id
                for _ in range(jobs)
            ]
            wait_finished(stub, ids)


ACTIVE = [jobs_pb2.JOB_STATE_PENDING, jobs_pb2.JOB_STATE_ASSIGNED, jobs_pb2.JOB_STATE_RUNNING]


def wait_finished(stub: jobs_pb2_grpc.JobServiceStub, ids: list[str], timeout: float = 300) -> None:
    """Wait until none of `ids` is pending, assigned or running.

    Benchmarks own their stack, so "no active job at all" is the test; but listing by state
    costs the server and PostgreSQL more as the table grows (about 1 ms of PostgreSQL each
    with 1,000 jobs), which `bench_cpu_per_job.py` would charge to them every 20 ms. So the
    last job submitted (one of the last to start) is watched first, by id, and the list
    asked only once it has ended.
    """
    deadline = time.monotonic() + timeout
    while ids and stub.GetJob(jobs_pb2.GetJobRequest(id=ids[-1]), timeout=10).state in ACTIVE:
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not finish in time")
        time.sleep(0.02)
    while True:
        active = stub.ListJobs(jobs_pb2.ListJobsRequest(states=ACTIVE, page_size=1),
                               timeout=10).jobs
        if not active:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not finish in time")
        time.sleep(0.02)


@contextlib.contextmanager
def embedded_stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="hodei-bench-"))
    log = (home / "stack.log").open("ab")
    # HODEI_BENCH_PROFILE=FILE: the stack's server process runs under cProfile (its agents
    # do not), written to FILE when it stops.
    profile = os.environ.get("HODEI_BENCH_PROFILE")
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *profiler, "-m", "hodei_server.embedded", "--home", str(home),
         "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        stack_file = home / "stack.json"
        deadline = time.monotonic() + 120
        while not stack_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((home / "stack.log").read_text())
            time.sleep(0.05)
        info = json.loads(stack_file.read_text())
        stack = Stack(home, info["address"], info["token"])
        stack.wait_workers(1)
        yield stack
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
            stopped = True
        except subprocess.TimeoutExpired:
            proc.kill()
            stopped = False
        log.close()
        if stopped:  # its PostgreSQL is stopped too: nothing of the stack is left running
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(home.with_name(f"{home.name}-postgres"), ignore_errors=True)
