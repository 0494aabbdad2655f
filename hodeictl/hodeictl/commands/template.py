"""`hodeictl template ...`: jobs defined once and run many times, by hand or on a schedule."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hodeictl import output, target, values
from hodeictl.errors import EXIT_INTERRUPTED, ServerError
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat, note
from hodeictl.table import Column
from hodeictl.terminal import sanitize

if TYPE_CHECKING:
    from hodei_api.v1 import templates_pb2

app = typer.Typer(rich_markup_mode=None,
                  help="Define jobs once, run them many times, on a schedule or by hand.",
                  no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The template's name.",
                                        show_default=False)]
FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The template file (TOML).")]


def _when(stamp: object, field: str) -> str:
    return output.local_time(stamp, field)  # type: ignore[arg-type]


def _schedule(status: templates_pb2.ScheduleStatus) -> str:
    zone = f" {status.timezone}" if status.timezone else " UTC"
    return f"{status.cron}{zone}"


def _rate(stats: templates_pb2.TemplateStats) -> str:
    finished = stats.succeeded + stats.failed
    return f"{stats.success_rate:.0%}" if finished else "-"


def _seconds(value: float, stats: templates_pb2.TemplateStats) -> str:
    return f"{value:.1f}s" if stats.succeeded + stats.failed else "-"


def _state(template: templates_pb2.Template) -> str:
    if template.disabled:
        return "DISABLED"
    if template.HasField("schedule") and template.schedule.suspended:
        return "SUSPENDED"
    return "ENABLED"


def _print_list(templates: list[templates_pb2.Template],
                output_format: OutputFormat = OutputFormat.table) -> None:
    rows = []
    for t in templates:
        stats = t.stats
        scheduled = t.HasField("schedule")
        rows.append((
            t.name, str(t.latest_version), _state(t),
            _schedule(t.schedule) if scheduled else "-",
            _when(t.schedule, "next_run_at") if scheduled else "-",
            str(stats.runs), _rate(stats), _seconds(stats.p50_seconds, stats),
            _seconds(stats.p95_seconds, stats),
            output.job_state(stats.last_state) if stats.last_state else "-",
        ))
    output.print_pairs_table(
        (Column("NAME", shrink=2, min_width=16), Column("VERSION", priority=5, right=True),
         Column("STATE"), Column("SCHEDULE", priority=3, shrink=1),
         Column("NEXT RUN", priority=4), Column("RUNS", priority=6, right=True),
         Column("SUCCESS", priority=2, right=True), Column("P50", priority=7, right=True),
         Column("P95", priority=8, right=True), Column("LAST", priority=1)),
        rows, output_format, kind="template")


def _print_template(t: templates_pb2.Template) -> None:
    from hodeictl import templatefile

    types = {v: k for k, v in templatefile.TYPES.items()}
    concurrency = {v: k for k, v in templatefile.CONCURRENCY.items()}
    spec, stats = t.spec, t.stats
    lines = [
        ("Name", t.name),
        ("Version", f"{t.version} (latest {t.latest_version})"),
        ("State", _state(t)),
        ("Description", spec.description or "-"),
        ("Updated", f"{_when(t, 'updated_at')} by {t.updated_by or '-'}"),
        ("Runs", f"{stats.runs} ({stats.succeeded} succeeded, {stats.failed} failed, "
                 f"{stats.active} active); success rate {_rate(stats)}"),
        ("Duration", f"p50 {_seconds(stats.p50_seconds, stats)}, "
                     f"p95 {_seconds(stats.p95_seconds, stats)}"),
        ("Last result", (f"{output.job_state(stats.last_state)} ({stats.last_job_id}, "
                         f"{_when(stats, 'last_finished_at')})") if stats.last_state else "-"),
    ]
    if t.HasField("schedule"):
        s = t.schedule
        deadline = (f"{s.starting_deadline_seconds:g}s"
                    if s.HasField("starting_deadline_seconds") else "none")
        policy = concurrency.get(s.concurrency, "allow")
        lines += [
            ("Schedule", f"{_schedule(s)}; concurrency {policy}; starting deadline "
                         f"{deadline}"),
            ("Next run", "suspended" if s.suspended else _when(s, "next_run_at")),
            ("Ticks", f"{s.started} started, {s.missed} missed, {s.skipped} skipped"),
        ]
        if s.missed:
            lines.append(("Last missed", f"{_when(s, 'last_missed_at')}: "
                                         f"{s.last_missed_reason}"))
    if spec.history.HasField("succeeded") or spec.history.HasField("failed"):
        keep = [f"{n} {k}" for k in ("succeeded", "failed")
                if spec.history.HasField(k) for n in [getattr(spec.history, k)]]
        lines.append(("Keeps", ", ".join(keep) + " finished runs' jobs"))
    for param in spec.parameters:
        detail = types.get(param.type, "string")
        if param.required:
            detail += ", required"
        if param.HasField("default"):
            detail += f", default {param.default!r}"
        if param.choices:
            detail += f", one of {', '.join(param.choices)}"
        lines.append((f"Parameter {param.name}", detail + (f": {param.description}"
                                                           if param.description else "")))
    job = spec.job
    first_line = job.script.strip().partition("\n")[0]
    lines.append(("Job", shlex.join(job.command) if job.command
                  else f"{job.interpreter or 'sh'} script: {first_line}"))
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        typer.echo(sanitize(f"{name:<{width}}  {value}"))
    if t.recent_runs:
        typer.echo("")
        output.print_pairs_table(
            ("JOB", "VERSION", "STATE", "SCHEDULED FOR", "CREATED", "FINISHED", "PARAMETERS"),
            [(r.job_id, str(r.version), output.job_state(r.state),
              _when(r, "scheduled_at"), _when(r, "created_at"), _when(r, "finished_at"),
              ", ".join(f"{k}={v}" for k, v in sorted(r.parameters.items())) or "-")
             for r in t.recent_runs])


@app.command()
def create(ctx: typer.Context, file: FileOpt) -> None:
    """Create a template from a TOML file (version 1)."""
    from hodeictl import templatefile

    spec = templatefile.load(file)
    template = target.call(ctx.obj, lambda client: client.create_template(spec))
    typer.echo(sanitize(f"Template {template.name} created (version {template.version})."))


@app.command()
def update(ctx: typer.Context, file: FileOpt) -> None:
    """Replace a template with a new version (older versions stay readable)."""
    from hodeictl import templatefile

    spec = templatefile.load(file)
    template = target.call(ctx.obj, lambda client: client.update_template(spec))
    typer.echo(sanitize(f"Template {template.name} updated (version {template.version})."))


@app.command("list")
def list_templates(ctx: typer.Context, output_format: OutputOpt = OutputFormat.table) -> None:
    """List templates: version, schedule, next run, runs, success rate, p50/p95, last result."""
    templates = target.call(ctx.obj, lambda client: client.list_templates())
    if not output.print_data(output_format, [output.to_dict(t) for t in templates]):
        _print_list(templates, output_format)


@app.command()
def get(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[
        int | None,
        typer.Option("--version", metavar="N", parser=values.integer(1, values.INT32_MAX),
                     help="This version (default: the latest).")
    ] = None,
    runs: Annotated[
        int | None,
        typer.Option("--runs", metavar="N", parser=values.integer(1, 100),
                     help="Show this many recent runs (default 10).")
    ] = None,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """Show a template: its version, schedule, parameters, history and recent runs."""
    template = target.call(ctx.obj, lambda client: client.get_template(name, version or 0,
                                                                        runs or 10))
    if not output.print_data(output_format, output.to_dict(template)):
        _print_template(template)


@app.command()
def disable(ctx: typer.Context, name: NameArg) -> None:
    """Disable a template: it can't be run, and its schedule starts nothing."""
    target.call(ctx.obj, lambda client: client.set_template_enabled(name, False))
    typer.echo(sanitize(f"Template {name} disabled."))


@app.command()
def enable(ctx: typer.Context, name: NameArg) -> None:
    """Enable a disabled template."""
    target.call(ctx.obj, lambda client: client.set_template_enabled(name, True))
    typer.echo(sanitize(f"Template {name} enabled."))


@app.command()
def delete(ctx: typer.Context, name: NameArg) -> None:
    """Delete a template (refused while a run of it has not ended; its jobs stay)."""
    target.call(ctx.obj, lambda client: client.delete_template(name))
    typer.echo(sanitize(f"Template {name} deleted."))


@app.command("run")
def run_template(
    ctx: typer.Context,
    name: NameArg,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="K=V", help="A parameter's value (repeatable)."),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option("--version", metavar="N", parser=values.integer(1, values.INT32_MAX),
                     help="Run this version (default: the latest).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Running again with the same key returns the "
                                               "same run."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the job id and return.")
    ] = False,
) -> None:
    """Run a template and follow its output; exit with its exit code."""
    from hodeictl import follow, jobfile

    given = jobfile.parse_pairs(param or [], "--param")
    reply = target.call(ctx.obj, lambda client: client.run_template(
        name, given, version or 0, idempotency_key or ""))
    job = reply.job
    if not reply.created:
        note(f"Job {job.id} already existed for this idempotency key.")
    if detach:
        typer.echo(job.id)
        return
    try:
        final = target.call(ctx.obj, lambda client: follow.follow_run(client, job.id))
    except KeyboardInterrupt:
        note(f"Stopped following job {job.id}; it keeps running. "
             f"Cancel it with: hodeictl job cancel {job.id}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if final is None:
        raise ServerError(f"the log stream of job {job.id} ended before the job finished")
    code, ending = follow.exit_status(final)
    if ending:
        note(ending)
    raise typer.Exit(code)

