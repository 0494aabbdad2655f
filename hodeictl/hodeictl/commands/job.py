"""`hodeictl job ...`: run, submit, get, list, logs, cancel, retry."""

from __future__ import annotations

import enum
import functools
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hodeictl import output, target, values, views
from hodeictl.errors import EXIT_INTERRUPTED, ServerError, UsageError
from hodeictl.options import (
    ColorOpt,
    JobIdArg,
    NoHeadersOpt,
    OutputOpt,
    QuietOpt,
    WaitFor,
    duration_option,
    job_spec_options,
)
from hodeictl.output import OutputFormat, note

if TYPE_CHECKING:
    from hodei_api.v1 import jobs_pb2

app = typer.Typer(rich_markup_mode=None,
                  help="Run, inspect and cancel jobs.", no_args_is_help=True)

# Words that, right after --detach, were meant as its value rather than as the command.
_BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


class StateFilter(enum.StrEnum):
    """Job states `job list --state` accepts."""

    pending = "pending"
    assigned = "assigned"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"
    lost = "lost"
    blocked = "blocked"


MAX_COUNT = 1_000_000
CountOpt = Annotated[
    int | None,
    typer.Option("--count", metavar="N", parser=values.integer(1, MAX_COUNT),
                 help="Submit N independent copies of the job at once (a job array), in "
                      "batches of 10,000 a call; with --idempotency-key K, copy i has the key "
                      "K/i. (--completions makes one indexed job instead.)"),
]


def _spec(params: dict[str, Any]) -> jobs_pb2.JobSpec:
    """The JobSpec from the job file (if any) overridden by the command line."""
    from hodeictl import jobfile, jobflow

    command_line = jobfile.JobOptions(
        name=params["name"],
        command=params["command"] or None,
        script=params["script"],
        interpreter=params["interpreter"],
        env=jobfile.parse_pairs(params["env"] or [], "--env"),
        working_dir=params["workdir"],
        labels=jobfile.parse_pairs(params["label"] or [], "--label"),
        selector=jobfile.parse_pairs(params["selector"] or [], "--selector"),
        cpus=params["cpus"],
        memory_mb=params["memory_mb"],
        timeout_seconds=params["timeout"],
        max_attempts=params["max_attempts"],
        retry_on=[r.value for r in params["retry_on"]] if params["retry_on"] else None,
        backoff_seconds=params["backoff"],
        secrets=[{"name": name} for name in params["secret"] or []],
        secret_delivery=params["secret_delivery"].value if params["secret_delivery"] else None,
        flow=jobflow.from_params(params),
    )
    if command_line.command is not None and command_line.script is not None:
        raise UsageError("give either a command after -- or --script, not both")
    base = jobfile.load(params["file"]) if params["file"] else jobfile.JobOptions()
    return jobfile.to_spec(jobfile.merge(base, command_line))


def _submit(ctx: typer.Context) -> jobs_pb2.Job:
    spec = _spec(ctx.params)
    key = ctx.params["idempotency_key"] or ""
    correlation = ctx.params.get("correlation_id") or ""
    reply = target.call(ctx.obj, lambda client: client.submit_job(spec, key, correlation))
    if not reply.created:
        note(f"Job {reply.job.id} already existed for this idempotency key.")
    return reply.job


def resolve_job(settings: target.Settings, ref: str) -> str:
    """The id of the job `ref` names: an id, a unique id prefix, or a name."""
    from hodeictl import resolve

    if (full := resolve.full_id(ref)) is not None:
        return full  # no round trip for what is already an id

    return target.call(settings, lambda client: resolve.job_id(client, ref))


async def _get(client: Any, ref: str) -> jobs_pb2.Job:
    from hodeictl import resolve

    return await client.get_job(await resolve.job_id(client, ref))  # type: ignore[no-any-return]


def _follow(settings: target.Settings, job_id: str, view: Any = None) -> None:
    """Follow the job's output to its end and exit with its exit code."""
    from hodeictl import follow

    try:
        job = target.call(settings, lambda client: follow.follow_run(client, job_id,
                                                                     view=view))
    except KeyboardInterrupt:
        note(
            f"Stopped following job {job_id}; it keeps running. "
            f"Cancel it with: hodeictl job cancel {job_id}"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if job is None:
        raise ServerError(f"the log stream of job {job_id} ended before the job finished")
    code, ending = follow.exit_status(job)
    if ending:
        note(ending)
    raise typer.Exit(code)


@app.command(context_settings={"allow_interspersed_args": False})
@job_spec_options
def run(
    ctx: typer.Context,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the job id and return.")
    ] = False,
    color: ColorOpt = None,
) -> None:
    """Run a job and follow its output; exit with its exit code.

    The job is a command after --, a --script, or a -f job.toml file.
    """
    _refuse_detach_value(ctx)
    job = _submit(ctx)
    if detach:
        typer.echo(job.id)
        return
    from hodeictl.logview import LogView

    _follow(ctx.obj, job.id, LogView(colour=color))


def _refuse_detach_value(ctx: typer.Context) -> None:
    """`--detach true` would run `true`: a flag takes no value, the command comes after --."""
    command = ctx.params.get("command") or []
    if not ctx.params.get("detach") or not command or command[0].lower() not in _BOOLEAN_WORDS:
        return
    args = ctx.find_root().meta.get("hodeictl.args", [])
    if "--" in args:
        return  # `--detach -- true`: the command really is `true`
    raise UsageError(f"--detach takes no value; to run {command[0]!r} as the command, put it "
                     f"after --: hodeictl job run --detach -- {' '.join(command)}")


@app.command(context_settings={"allow_interspersed_args": False})
@job_spec_options
def submit(ctx: typer.Context, count: CountOpt = None) -> None:
    """Submit a job and print its id (nothing else, for scripts); with --count N, N
    copies of it (a job array), one id a line."""
    if count is None:
        typer.echo(_submit(ctx).id)
        return
    spec = _spec(ctx.params)
    key = ctx.params["idempotency_key"] or ""
    entries = [(spec, f"{key}/{i}" if key else "") for i in range(count)]
    correlation = ctx.params.get("correlation_id") or ""
    submitted = target.call(ctx.obj, lambda client: client.submit_jobs(entries, correlation))
    typer.echo("\n".join(job.id for job in submitted))
    existed = sum(1 for job in submitted if not job.created)
    if existed:
        note(f"{existed} of the {count} jobs already existed for their idempotency keys.")


@app.command()
def get(
    ctx: typer.Context, job_ref: JobIdArg, output_format: OutputOpt = OutputFormat.table
) -> None:
    """Show a job: state, exit code, reason, worker, times, attempts and its events
    (submitted, why it waits, assigned, started, retries, finished)."""
    from hodeictl import timeline

    job, events, events_note = target.call(ctx.obj, lambda client: timeline.job_with_events(
        client, job_ref))
    data = output.job_to_dict(job)
    data["events"] = [views.event_to_dict(event) for event in events]
    if not output.print_data(output_format, data):
        views.print_job(job, events, events_note)
    elif events_note:
        note(events_note)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: Annotated[
        list[StateFilter] | None,
        typer.Option("--state", case_sensitive=False, help="Only jobs in this state (repeatable)."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", metavar="K=V",
                     help="Only jobs with this label (repeatable: all must match)."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="GLOB",
                     help="Only jobs whose name matches: build-* (* any text, ? one character)."),
    ] = None,
    since: Annotated[
        float | None,
        duration_option("--since", high=values.MAX_SINCE_SECONDS,
                        help_text="Only jobs created in the last DURATION: 90s, 1h, 2d."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", parser=values.integer(1, values.INT32_MAX),
                          help="At most this many jobs (default 50).")
    ] = 50,
    every: Annotated[
        bool, typer.Option("--all", "-a", help="Every matching job, page after page (no --limit).")
    ] = False,
    output_format: OutputOpt = OutputFormat.table,
    no_headers: NoHeadersOpt = False,
    quiet: QuietOpt = False,
    watch_changes: Annotated[
        bool, typer.Option("--watch", "-w", help="Then print each change as it happens.")
    ] = False,
) -> None:
    """List jobs, newest first."""
    if watch_changes:
        if label or name or since is not None or every:
            raise UsageError("--watch filters by --state only (and shows the newest --limit "
                             "jobs first)")
        from hodei_api.v1 import jobs_pb2
        from hodeictl.commands import watch

        states = [jobs_pb2.JobState.Value(f"JOB_STATE_{s.value.upper()}") for s in state or []]
        watch.watch_list(ctx.obj, states, limit, output_format)
        return
    from hodeictl import jobfile, joblist

    joblist.list_jobs(ctx.obj, states=[s.value for s in state or []],
                      labels=jobfile.parse_pairs(label or [], "--label"), name=name or "",
                      since=since, limit=limit, every=every, output_format=output_format,
                      no_headers=no_headers, quiet=quiet)


@app.command()
def logs(
    ctx: typer.Context,
    job_ref: JobIdArg,
    follow_output: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Follow until the job ends; exit with its code."),
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option("--tail", metavar="N", parser=values.integer(0, values.INT32_MAX),
                     help="Only the last N lines so far (then, with -f, what follows)."),
    ] = None,
    since: Annotated[
        float | None,
        duration_option("--since", high=values.MAX_SINCE_SECONDS,
                        help_text="Only output of the last DURATION: 90s, 10m, 2h."),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t",
                           help="Start each line with when it was stored (UTC).")
    ] = False,
    color: ColorOpt = None,
) -> None:
    """Print a job's output (stdout to stdout, stderr to stderr)."""
    from hodeictl.logview import LogView

    job_id = resolve_job(ctx.obj, job_ref)
    view = LogView(since=since, timestamps=timestamps, tail=tail, colour=color)
    if follow_output:
        _follow(ctx.obj, job_id, view)
    else:
        from hodeictl import follow

        target.call(ctx.obj, lambda client: follow.write_logs(client, job_id, follow=False,
                                                              view=view))


@app.command()
def cancel(
    ctx: typer.Context,
    job_ref: JobIdArg,
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded with the job.")] = "",
) -> None:
    """Cancel a job."""
    job_id = resolve_job(ctx.obj, job_ref)
    reply = target.call(ctx.obj, lambda client: client.cancel_job(job_id, reason))
    typer.echo(cancel_message(job_id, reply.changed, output.job_state(reply.job.state)))


# States a job does not leave; a cancel that found the job in another one is still under way.
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "LOST"})


def cancel_message(job_id: str, changed: bool, state: str) -> str:
    """What `job cancel` says: the state the job is in now, never the one before."""
    if not changed:
        return f"Job {job_id} already finished ({state}); nothing to cancel."
    if state in FINAL_STATES:
        return f"Job {job_id}: {state}"
    return f"Job {job_id}: cancelling (it was {state}; its process is being stopped)"


@app.command()
def retry(ctx: typer.Context, job_ref: JobIdArg) -> None:
    """Run a finished job again, as a new attempt."""
    job_id = resolve_job(ctx.obj, job_ref)
    job = target.call(ctx.obj, lambda client: client.retry_job(job_id))
    typer.echo(f"Job {job_id}: {output.job_state(job.state)} (attempt {job.attempt + 1} queued)")


@app.command()
def delete(
    ctx: typer.Context,
    job_refs: Annotated[
        list[str],
        typer.Argument(metavar="JOB...", show_default=False,
                       help="Jobs: ids, unique id prefixes or names."),
    ],
) -> None:
    """Delete finished jobs with their attempts and output (cancel a running one first)."""
    failed = 0
    for ref in job_refs:
        job_id = resolve_job(ctx.obj, ref)
        try:
            job = target.call(ctx.obj, functools.partial(_delete, job_id=job_id))
        except ServerError as error:  # not finished: say so and go on with the others
            note(f"hodeictl: {error}")
            failed += 1
            continue
        typer.echo(f"Job {job.id} deleted ({output.job_state(job.state)}).")
    if failed:
        raise typer.Exit(1)


async def _delete(client: Any, job_id: str) -> jobs_pb2.Job:
    return await client.delete_job(job_id)  # type: ignore[no-any-return]


@app.command()
def wait(
    ctx: typer.Context,
    job_ref: JobIdArg,
    wait_for: Annotated[
        WaitFor,
        typer.Option("--for", case_sensitive=False,
                     help="finished: exit with the job's exit code; succeeded, failed, "
                          "running: exit 0 once it is, 1 if it ends otherwise."),
    ] = WaitFor.finished,
    timeout: Annotated[
        float | None,
        duration_option("--timeout", high=values.MAX_TIMEOUT_SECONDS,
                        help_text="Give up after this long (exit 124): 90s, 5m, 1h."),
    ] = None,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """Wait until a job finishes (or succeeds, fails, runs), watching it live."""
    from hodeictl.commands import watch

    watch.wait(ctx, resolve_job(ctx.obj, job_ref), wait_for, timeout, output_format)


@app.command()
def schema() -> None:
    """Print the JSON Schema of job files (for editors: taplo, Even Better TOML)."""
    import json

    from hodeictl import jobschema

    typer.echo(json.dumps(jobschema.json_schema(), indent=2))
