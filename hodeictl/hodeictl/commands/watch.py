"""`hodeictl job list --watch` and `hodeictl job wait`: jobs followed through the server's
WatchJobs stream, never by polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence

import typer

from hodei_api.v1 import jobs_pb2
from hodeictl import follow, output, streams, target, views
from hodeictl.client import HodeiClient, parse_job_id
from hodeictl.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TIMED_OUT
from hodeictl.options import WaitFor
from hodeictl.output import OutputFormat, note
from hodeictl.terminal import sanitize

Kind = jobs_pb2.WatchJobsResponse
_KIND_NAMES = {Kind.KIND_SNAPSHOT: "snapshot", Kind.KIND_SYNCED: "synced",
               Kind.KIND_UPSERT: "changed", Kind.KIND_REMOVED: "removed",
               Kind.KIND_RESET: "reset"}
_FINAL = frozenset({jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED,
                    jobs_pb2.JOB_STATE_CANCELLED, jobs_pb2.JOB_STATE_TIMED_OUT})

def _line(job: jobs_pb2.Job, change: str) -> str:
    """One change as a line: id, state, exit code, attempt, name, what changed."""
    exit_code = str(job.exit_code) if job.has_exit_code else "-"
    state = output.job_state(job.state) if job.state else "-"
    return sanitize(f"{job.id}  {state:<10} {exit_code:>4}  {job.attempt:>3}  "
                    f"{job.spec.name or '-'}  ({change})", single_line=True)


def watch_list(settings: target.Settings, states: Sequence[int], limit: int,
               output_format: OutputFormat) -> None:
    """Print the jobs, then one line (or JSON object) per change until interrupted."""
    wanted = jobs_pb2.JobFilter(states=list(states))

    async def run(client: HodeiClient) -> None:
        snapshot: list[jobs_pb2.Job] = []
        synced = False
        async with contextlib.aclosing(streams.watch_jobs(client, wanted, limit)) as stream:
            async for message in stream:
                if output_format is OutputFormat.json:
                    data: dict[str, object] = {"change": _KIND_NAMES.get(message.kind, "?"),
                                               "revision": message.revision}
                    if message.HasField("job"):
                        data["job"] = output.job_to_dict(message.job)
                    print_json_line(data)
                    continue
                if message.kind == Kind.KIND_RESET:
                    snapshot, synced = [], False
                    note("The view was reset (the watch fell behind or reconnected); "
                         "the current jobs follow.")
                elif message.kind == Kind.KIND_SNAPSHOT:
                    snapshot.append(message.job)
                elif message.kind == Kind.KIND_SYNCED:
                    views.print_jobs(snapshot)
                    synced = True
                    if message.more:
                        note(f"Showing the newest {limit} jobs; changes to any job follow.")
                elif synced:
                    change = "removed" if message.kind == Kind.KIND_REMOVED else "changed"
                    typer.echo(_line(message.job, change))

    try:
        target.call(settings, run)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _reached(job: jobs_pb2.Job, wanted: WaitFor) -> bool | None:
    """True when `job` is where `wanted` says, False when it never will be, else None."""
    final = job.state in _FINAL
    if wanted is WaitFor.finished:
        return True if final else None
    if wanted is WaitFor.succeeded:
        return job.state == jobs_pb2.JOB_STATE_SUCCEEDED if final else None
    if wanted is WaitFor.failed:
        return job.state != jobs_pb2.JOB_STATE_SUCCEEDED if final else None
    if job.state == jobs_pb2.JOB_STATE_RUNNING:
        return True
    return False if final else None


def wait(
    ctx: typer.Context, job_id: str, wait_for: WaitFor, timeout: float | None,
    output_format: OutputFormat,
) -> None:
    """Wait until a job finishes (or succeeds, fails, runs), watching it live."""
    job_id = parse_job_id(job_id)
    wanted = jobs_pb2.JobFilter(ids=[job_id])

    async def run(client: HodeiClient) -> tuple[jobs_pb2.Job, bool]:
        await client.get_job(job_id)  # NOT_FOUND says so at once
        held = False
        async with contextlib.aclosing(streams.watch_jobs(client, wanted)) as stream:
            async for message in stream:
                if message.kind in (Kind.KIND_SNAPSHOT, Kind.KIND_RESET):
                    held = message.kind == Kind.KIND_SNAPSHOT
                if message.kind == Kind.KIND_REMOVED or (
                        message.kind == Kind.KIND_SYNCED and not held):
                    return jobs_pb2.Job(id=job_id), False  # deleted meanwhile
                if message.kind in (Kind.KIND_SNAPSHOT, Kind.KIND_UPSERT):
                    reached = _reached(message.job, wait_for)
                    if reached is not None:
                        return message.job, reached
        raise AssertionError("the job watch ended")  # watch_jobs reconnects or raises

    async def bounded(client: HodeiClient) -> tuple[jobs_pb2.Job, bool]:
        try:
            return await asyncio.wait_for(run(client), timeout)
        except TimeoutError:
            note(f"Job {job_id} was not {wait_for.value} after {timeout:g}s.")
            raise typer.Exit(EXIT_TIMED_OUT) from None

    try:
        job, reached = target.call(ctx.obj, bounded)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not job.state:
        note(f"Job {job_id} was deleted.")
        raise typer.Exit(EXIT_FAILURE)
    if output_format is OutputFormat.json:
        output.print_json(output.job_to_dict(job))
    if wait_for is WaitFor.finished:
        code, ending = follow.exit_status(job)
        if ending:
            note(ending)
        raise typer.Exit(code)
    if not reached:
        note(f"Job {job_id} ended {output.job_state(job.state)}, not {wait_for.value}.")
        raise typer.Exit(EXIT_FAILURE)
    if output_format is not OutputFormat.json and sys.stderr.isatty():
        note(f"Job {job_id}: {output.job_state(job.state)}")


def print_json_line(data: object) -> None:
    """One JSON object a line, for a stream read by a script. Every character beyond
    ASCII is escaped, so no control or bidi character of the server's reaches a terminal."""
    typer.echo(json.dumps(data, ensure_ascii=True))
