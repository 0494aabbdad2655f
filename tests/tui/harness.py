"""Driving the console with Textual's pilot against a real server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from textual.pilot import Pilot
from textual.widget import Widget

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc
from hodeictl.target import Settings
from hodeictl.tui.app import HodeiApp
from tests.e2e.harness import ServerProcess, token_channel

SIZE = (160, 48)


def make_app(server: ServerProcess, workdir: Path, token: str | None = None,
             **kwargs: object) -> HodeiApp:
    """The console against `server`, sending `token` (the server's admin token by default)
    from a token file, as `hodeictl --server ADDRESS --token-file PATH tui` would."""
    token_file = workdir / f"token-{uuid.uuid4().hex[:8]}"
    token_file.write_text(token or server.token)
    settings = Settings(server=server.address, token_file=str(token_file))
    return HodeiApp(settings, **kwargs)  # type: ignore[arg-type]


async def wait_for(pilot: Pilot[None], predicate: Callable[[], object], within: float = 30.0,
                   what: str = "condition", shows: Callable[[], str] | None = None) -> None:
    """Let the app run until `predicate()` holds; fails with `what` (and what `shows`
    returns then) after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            seen = f"; it shows:\n{shows()}" if shows is not None else ""
            raise AssertionError(f"timed out waiting for {what}{seen}")
        await pilot.pause(0.05)


def shown(widget: Widget) -> str:
    """The text a widget shows now (its lines as drawn)."""
    return "\n".join(strip.text for strip in widget.render_lines(widget.region.reset_offset))


def submit(server: ServerProcess, *command: str, name: str = "",
           labels: dict[str, str] | None = None) -> jobs_pb2.Job:
    """Submit a job over gRPC, as another client would."""
    spec = jobs_pb2.JobSpec(name=name, command=list(command), labels=labels or {})
    with token_channel(server.address, server.token) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        return stub.SubmitJob(jobs_pb2.SubmitJobRequest(spec=spec), timeout=10).job


def get_job(server: ServerProcess, job_id: str) -> jobs_pb2.Job:
    with token_channel(server.address, server.token) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        return stub.GetJob(jobs_pb2.GetJobRequest(id=job_id), timeout=10)


def wait_state(server: ServerProcess, job_id: str, states: set[int],
               timeout: float = 60.0) -> jobs_pb2.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(server, job_id)
        if job.state in states or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


__all__ = ["SIZE", "get_job", "grpc", "make_app", "run", "shown", "submit", "wait_for",
           "wait_state"]
