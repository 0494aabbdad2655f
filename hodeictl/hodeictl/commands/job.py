"""`hodeictl job ...`: run, submit, get, list, logs, cancel, retry."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from hodei_api.v1 import jobs_pb2
from hodeictl import follow, jobfile, jobflow, output, target, values
from hodeictl.client import parse_job_id
from hodeictl.commands import watch
from hodeictl.errors import EXIT_INTERRUPTED, ServerError, UsageError
from hodeictl.output import OutputFormat, note

app = typer.Typer(help="Run, inspect and cancel jobs.", no_args_is_help=True)


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


# The job options shared by `run` and `submit`; both read them back through `ctx.params`.
CommandArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="-- CMD ARGS...", help="The command to run.", show_default=False),
]
FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="TOML job file; options given here override it."),
]
NameOpt = Annotated[str | None, typer.Option("--name", help="A name for the job.")]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", metavar="K=V", help="Environment variable (repeatable)."),
]
WorkdirOpt = Annotated[
    str | None, typer.Option("--workdir", "-w", help="Working directory on the worker.")
]
LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", "-l", metavar="K=V", help="Label (repeatable).")
]
SelectorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--selector", "-s", metavar="K=V", help="Run only on workers with this label (repeatable)."
    ),
]
CpusOpt = Annotated[
    float | None,
    typer.Option("--cpus", metavar="N", parser=values.number(0, values.MAX_CPUS),
                 help=f"CPUs the job needs (0-{values.MAX_CPUS:g})."),
]
MemoryOpt = Annotated[
    int | None,
    typer.Option("--memory-mb", metavar="MIB", parser=values.integer(0, values.MAX_MEMORY_MB),
                 help=f"Memory the job needs, in MiB (0-{values.MAX_MEMORY_MB})."),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", metavar="DURATION",
                 parser=values.duration(values.MAX_TIMEOUT_SECONDS),
                 help="Time limit: 90, 90s, 5m, 1h30m (at most 366 days)."),
]
MaxAttemptsOpt = Annotated[
    int | None,
    typer.Option("--max-attempts", metavar="N", parser=values.integer(1, values.MAX_ATTEMPTS),
                 help=f"Attempts in total (retries + 1; 1-{values.MAX_ATTEMPTS})."),
]
class RetryOn(enum.StrEnum):
    """Attempt endings `--retry-on` accepts."""

    lost = "lost"
    failed = "failed"
    timed_out = "timed_out"


RetryOnOpt = Annotated[
    list[RetryOn] | None,
    typer.Option(
        "--retry-on", case_sensitive=False,
        help="Retry after this ending while attempts remain (repeatable; default: lost).",
    ),
]
BackoffOpt = Annotated[
    float | None,
    typer.Option("--backoff", metavar="DURATION",
                 parser=values.duration(values.MAX_BACKOFF_SECONDS, "2s or 1m"),
                 help="Delay before the second attempt, doubling after (default 1s, max 60s)."),
]
ScriptOpt = Annotated[str | None, typer.Option("--script", help="Script to run, not a command.")]
InterpreterOpt = Annotated[
    str | None, typer.Option("--interpreter", help="Interpreter for --script (default: sh).")
]
IdempotencyOpt = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Submitting again with the same key returns the job."),
]
SecretOpt = Annotated[
    list[str] | None,
    typer.Option("--secret", metavar="NAME",
                 help="A secret the job gets, as a file in $HODEI_SECRETS_DIR (repeatable; "
                      "BACKEND:NAME for another backend)."),
]


class SecretDelivery(enum.StrEnum):
    """How `--secret-delivery` hands secrets to the process."""

    file = "file"
    stdin = "stdin"
    both = "both"


SecretDeliveryOpt = Annotated[
    SecretDelivery | None,
    typer.Option("--secret-delivery",
                 help="file: $HODEI_SECRETS_DIR/NAME (default); stdin: one JSON object; both."),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]
JobIdArg = Annotated[str, typer.Argument(metavar="ID", help="The job id.", show_default=False)]


def _spec(params: dict[str, Any]) -> jobs_pb2.JobSpec:
    """The JobSpec from the job file (if any) overridden by the command line."""
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


def _follow(settings: target.Settings, job_id: str) -> None:
    """Follow the job's output to its end and exit with its exit code."""
    try:
        job = target.call(settings, lambda client: follow.write_logs(client, job_id, follow=True))
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
def run(
    ctx: typer.Context,
    command: CommandArg = None,
    file: FileOpt = None,
    name: NameOpt = None,
    env: EnvOpt = None,
    workdir: WorkdirOpt = None,
    label: LabelOpt = None,
    selector: SelectorOpt = None,
    cpus: CpusOpt = None,
    memory_mb: MemoryOpt = None,
    timeout: TimeoutOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    retry_on: RetryOnOpt = None,
    backoff: BackoffOpt = None,
    script: ScriptOpt = None,
    interpreter: InterpreterOpt = None,
    idempotency_key: IdempotencyOpt = None,
    secret: SecretOpt = None,
    secret_delivery: SecretDeliveryOpt = None,
    # Dependencies and fan-out (hodeictl.jobflow).
    after: jobflow.AfterOpt = None,
    completions: jobflow.CompletionsOpt = None,
    parallelism: jobflow.ParallelismOpt = None,
    correlation_id: watch.CorrelationOpt = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the job id and return.")
    ] = False,
) -> None:
    """Run a job and follow its output; exit with its exit code.

    The job is a command after --, a --script, or a -f job.toml file.
    """
    job = _submit(ctx)
    if detach:
        typer.echo(job.id)
        return
    _follow(ctx.obj, job.id)


@app.command(context_settings={"allow_interspersed_args": False})
def submit(
    ctx: typer.Context,
    command: CommandArg = None,
    file: FileOpt = None,
    name: NameOpt = None,
    env: EnvOpt = None,
    workdir: WorkdirOpt = None,
    label: LabelOpt = None,
    selector: SelectorOpt = None,
    cpus: CpusOpt = None,
    memory_mb: MemoryOpt = None,
    timeout: TimeoutOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    retry_on: RetryOnOpt = None,
    backoff: BackoffOpt = None,
    script: ScriptOpt = None,
    interpreter: InterpreterOpt = None,
    idempotency_key: IdempotencyOpt = None,
    secret: SecretOpt = None,
    secret_delivery: SecretDeliveryOpt = None,
    # Dependencies and fan-out (hodeictl.jobflow).
    after: jobflow.AfterOpt = None,
    completions: jobflow.CompletionsOpt = None,
    parallelism: jobflow.ParallelismOpt = None,
    correlation_id: watch.CorrelationOpt = None,
) -> None:
    """Submit a job and print its id (nothing else, for scripts)."""
    typer.echo(_submit(ctx).id)


@app.command()
def get(
    ctx: typer.Context, job_id: JobIdArg, output_format: FormatOpt = OutputFormat.table
) -> None:
    """Show a job: state, exit code, reason, worker, times and attempts."""
    job_id = parse_job_id(job_id)
    job = target.call(ctx.obj, lambda client: client.get_job(job_id))
    if output_format is OutputFormat.json:
        output.print_json(output.job_to_dict(job))
    else:
        output.print_job(job)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: Annotated[
        list[StateFilter] | None,
        typer.Option("--state", case_sensitive=False, help="Only jobs in this state (repeatable)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", parser=values.integer(1, values.INT32_MAX),
                          help="At most this many jobs.")
    ] = 50,
    output_format: FormatOpt = OutputFormat.table,
    watch_changes: Annotated[
        bool, typer.Option("--watch", "-w", help="Then print each change as it happens.")
    ] = False,
) -> None:
    """List jobs, newest first."""
    states = [jobs_pb2.JobState.Value(f"JOB_STATE_{s.value.upper()}") for s in state or []]
    if watch_changes:
        watch.watch_list(ctx.obj, states, limit, output_format)
        return
    jobs = target.call(ctx.obj, lambda client: client.list_jobs(states, limit))
    if output_format is OutputFormat.json:
        output.print_json([output.job_to_dict(job) for job in jobs])
    else:
        output.print_jobs(jobs)


@app.command()
def logs(
    ctx: typer.Context,
    job_id: JobIdArg,
    follow_output: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Follow until the job ends; exit with its code."),
    ] = False,
) -> None:
    """Print a job's output (stdout to stdout, stderr to stderr)."""
    job_id = parse_job_id(job_id)
    if follow_output:
        _follow(ctx.obj, job_id)
    else:
        target.call(ctx.obj, lambda client: follow.write_logs(client, job_id, follow=False))


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: JobIdArg,
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded with the job.")] = "",
) -> None:
    """Cancel a job."""
    job_id = parse_job_id(job_id)
    reply = target.call(ctx.obj, lambda client: client.cancel_job(job_id, reason))
    state = output.job_state(reply.job.state)
    if reply.changed:
        typer.echo(f"Job {job_id}: {state}")
    else:
        typer.echo(f"Job {job_id} already finished ({state}); nothing to cancel.")


@app.command()
def retry(ctx: typer.Context, job_id: JobIdArg) -> None:
    """Run a finished job again, as a new attempt."""
    job_id = parse_job_id(job_id)
    job = target.call(ctx.obj, lambda client: client.retry_job(job_id))
    typer.echo(f"Job {job_id}: {output.job_state(job.state)} (attempt {job.attempt + 1} queued)")
