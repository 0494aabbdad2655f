"""`hodeictl events`: the event trail (state changes, security decisions), and with
--follow the events as they happen, resumed after a reconnect without a gap or a repeat."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from typing import Annotated

import typer
from google.protobuf import timestamp_pb2

from hodei_api.v1 import events_pb2
from hodeictl import durations, output, streams, target, values
from hodeictl.client import HodeiClient, parse_job_id
from hodeictl.commands.watch import print_json_line
from hodeictl.errors import EXIT_INTERRUPTED, UsageError
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat
from hodeictl.terminal import sanitize
from hodeictl.views import event_to_dict

MAX_SINCE_SECONDS = 100 * 366 * 86400.0


def _since(value: str) -> timestamp_pb2.Timestamp:
    """`1h`, `30m`, `90s` ago, or an ISO 8601 time (`2026-12-05T10:00:00Z`)."""
    try:
        seconds = durations.parse(value)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise UsageError(f"--since {values.shown(value)} is neither a duration (90s, 5m, "
                             "1h) nor a time (2026-12-05T10:00:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.astimezone()
    else:
        if seconds > MAX_SINCE_SECONDS:
            raise UsageError(f"--since {values.shown(value)} is longer ago than 100 years")
        moment = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(dt.UTC))
    return stamp


def _worker_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise UsageError(f"--worker {values.shown(value)} is not a worker id (expected a "
                         "UUID; hodeictl worker list shows them)") from None


def _line(event: events_pb2.Event) -> str:
    stamp = event.created_at.ToDatetime(tzinfo=dt.UTC).astimezone()
    detail = event.payload_json if event.payload_json not in ("", "{}") else ""
    correlation = f" [{event.correlation_id}]" if event.correlation_id else ""
    return sanitize(f"{stamp:%Y-%m-%d %H:%M:%S}  {event.type:<22} {event.aggregate_id}  "
                    f"{event.actor}{correlation}  {detail}", single_line=True)


def events(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", metavar="ID",
                                            help="Events of this job.")] = None,
    worker: Annotated[str | None, typer.Option("--worker", metavar="ID",
                                               help="Events of this worker and its jobs.")] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", metavar="T",
                     help="job, job.failed, worker.*, audit ... (repeatable)."),
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", metavar="A",
                                              help="Who caused it: token:NAME, agent, "
                                                   "reconciler ...")] = None,
    correlation_id: Annotated[str | None, typer.Option(
        "--correlation-id", metavar="ID", help="Events carrying this correlation id.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="WHEN", help="From this long ago (1h, 30m) or this time.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing events as they happen.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", parser=values.integer(1, 100_000),
                          help="Without --since: the latest N events.")
    ] = 100,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """Show what happened: job and worker state changes, and (to admins) security events."""
    wanted = events_pb2.EventFilter(
        job_id=parse_job_id(job) if job else "",
        worker_id=_worker_id(worker) if worker else "",
        types=types or [], actor=actor or "", correlation_id=correlation_id or "")
    if since is not None:
        wanted.since.CopyFrom(_since(since))

    if follow and output_format is OutputFormat.yaml:
        raise UsageError("--follow prints a line an event: -o table, json (an object a line) "
                         "or name")
    whole = output_format in (OutputFormat.json, OutputFormat.yaml) and not follow

    async def run(client: HodeiClient) -> None:
        listed: list[events_pb2.Event] = []
        stream = streams.watch_events(client, wanted, follow=follow, limit=limit)
        async with contextlib.aclosing(stream) as items:
            async for event in items:
                if whole:
                    listed.append(event)
                elif output_format is OutputFormat.json:
                    print_json_line(event_to_dict(event))
                elif output_format is OutputFormat.name:
                    typer.echo(f"event/{event.id}")
                else:
                    typer.echo(_line(event))
        if whole:
            output.print_data(output_format, [event_to_dict(e) for e in listed])

    try:
        target.call(ctx.obj, run)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
