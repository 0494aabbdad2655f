"""`hodeictl schedule ...`: the cron schedules of templates."""

from __future__ import annotations

from typing import Annotated

import typer

from hodei_api.v1 import templates_pb2
from hodeictl import output, target
from hodeictl.output import OutputFormat
from hodeictl.terminal import sanitize

app = typer.Typer(help="List, suspend and resume the schedules of templates.",
                  no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The template's name.",
                                        show_default=False)]
_CONCURRENCY = {
    templates_pb2.CONCURRENCY_POLICY_ALLOW: "allow",
    templates_pb2.CONCURRENCY_POLICY_FORBID: "forbid",
    templates_pb2.CONCURRENCY_POLICY_REPLACE: "replace",
}


def _state(status: templates_pb2.ScheduleStatus) -> str:
    if status.template_disabled:
        return "DISABLED"
    return "SUSPENDED" if status.suspended else "ACTIVE"


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    output_format: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """List schedules: next run, last run and its state, ticks started, missed, skipped."""
    schedules = target.call(ctx.obj, lambda client: client.list_schedules())
    if output_format is OutputFormat.json:
        output.print_json([output.to_dict(s) for s in schedules])
        return
    output.print_pairs_table(
        ("TEMPLATE", "SCHEDULE", "CONCURRENCY", "STATE", "NEXT RUN", "LAST RUN", "LAST STATE",
         "STARTED", "MISSED", "SKIPPED", "LAST MISSED"),
        [(s.template, f"{s.cron} {s.timezone or 'UTC'}",
          _CONCURRENCY.get(s.concurrency, "allow"), _state(s),
          "-" if s.suspended or s.template_disabled else output.local_time(s, "next_run_at"),
          output.local_time(s, "last_scheduled_at"),
          output.job_state(s.last_state) if s.last_state else "-",
          str(s.started), str(s.missed), str(s.skipped),
          f"{output.local_time(s, 'last_missed_at')}: {s.last_missed_reason}"
          if s.missed else "-")
         for s in schedules])


@app.command()
def suspend(ctx: typer.Context, name: NameArg) -> None:
    """Suspend a template's schedule: no tick starts a run until it is resumed."""
    target.call(ctx.obj, lambda client: client.set_schedule_suspended(name, True))
    typer.echo(sanitize(f"Schedule of {name} suspended."))


@app.command()
def resume(ctx: typer.Context, name: NameArg) -> None:
    """Resume a schedule; the latest tick missed meanwhile starts if its deadline allows."""
    status = target.call(ctx.obj, lambda client: client.set_schedule_suspended(name, False))
    typer.echo(sanitize(f"Schedule of {name} resumed; next run "
                        f"{output.local_time(status, 'next_run_at')}."))
