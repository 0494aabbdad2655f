"""`hodeictl schedule ...`: the cron schedules of templates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from hodeictl import output, target
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat
from hodeictl.table import Column
from hodeictl.terminal import sanitize

if TYPE_CHECKING:
    from hodei_api.v1 import templates_pb2

app = typer.Typer(rich_markup_mode=None,
                  help="List, suspend and resume the schedules of templates.",
                  no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The template's name.",
                                        show_default=False)]
def _concurrency(policy: int) -> str:
    """`CONCURRENCY_POLICY_FORBID` → `forbid`."""
    from hodei_api.v1 import templates_pb2

    if policy not in templates_pb2.ConcurrencyPolicy.values() or not policy:
        return "allow"
    name = templates_pb2.ConcurrencyPolicy.Name(policy)  # type: ignore[arg-type]
    return name.removeprefix("CONCURRENCY_POLICY_").lower()


def _state(status: templates_pb2.ScheduleStatus) -> str:
    if status.template_disabled:
        return "DISABLED"
    return "SUSPENDED" if status.suspended else "ACTIVE"


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """List schedules: next run, last run and its state, ticks started, missed, skipped."""
    schedules = target.call(ctx.obj, lambda client: client.list_schedules())
    if output.print_data(output_format, [output.to_dict(s) for s in schedules]):
        return
    output.print_pairs_table(
        (Column("TEMPLATE", shrink=2, min_width=16), Column("SCHEDULE", shrink=1),
         Column("CONCURRENCY", priority=8), Column("STATE"), Column("NEXT RUN", priority=1),
         Column("LAST RUN", priority=3), Column("LAST STATE", priority=2),
         Column("STARTED", priority=4, right=True), Column("MISSED", priority=5, right=True),
         Column("SKIPPED", priority=6, right=True),
         Column("LAST MISSED", priority=7, shrink=1, wide=True)),
        [(s.template, f"{s.cron} {s.timezone or 'UTC'}",
          _concurrency(s.concurrency), _state(s),
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
