"""Options and arguments shared by several commands, declared once.

Each is an `Annotated` alias (`OutputOpt`, `JobIdArg`, ...) that a command uses as the
type of a parameter. The 21 options that describe a job (`job run` and `job submit`) are
added to a command by the `job_spec_options` decorator and read back through `ctx.params`.

This module is imported by every command module, so it imports nothing heavy: only typer
and hodeictl's own light modules (`values`, `durations`).
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hodeictl import completion, jobflow, values
from hodeictl.output import OutputFormat

F = TypeVar("F", bound=Callable[..., Any])

# ---- listings ------------------------------------------------------------------------------

OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", case_sensitive=False,
                 help="table, wide (every column), json, yaml, or name (KIND/ID a line)."),
]
NoHeadersOpt = Annotated[
    bool, typer.Option("--no-headers", help="Print the table without its header line.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the ids.")]
AllOpt = Annotated[bool, typer.Option("--all", "-a", help="Include finished or gone ones.")]

# ---- ids -----------------------------------------------------------------------------------

JobIdArg = Annotated[
    str,
    typer.Argument(metavar="JOB", show_default=False, autocompletion=completion.jobs,
                   help="The job: its id, a unique prefix of it, or its name."),
]
WorkerIdArg = Annotated[
    str,
    typer.Argument(metavar="WORKER", show_default=False, autocompletion=completion.workers,
                   help="The worker: its id, a unique prefix of it, or its name."),
]

class ColourChoice(enum.StrEnum):
    """`--color` (hodeictl.logview.Colour, named here so that help needs no import)."""

    auto = "auto"
    always = "always"
    never = "never"


ColorOpt = Annotated[
    ColourChoice | None,
    typer.Option("--color", case_sensitive=False, envvar="HODEI_COLOR",
                 help="Let the job's colours reach a terminal: auto (unless NO_COLOR), "
                      "always, or never (default: shown escaped). Other escape sequences "
                      "are always shown, never obeyed."),
]

# ---- durations -----------------------------------------------------------------------------


def duration_option(*names: str, high: float, help_text: str) -> Any:
    """A `typer.Option` that takes a duration (`90s`, `5m`, `1h30m`, `2d`) up to `high`."""
    return typer.Option(*names, metavar="DURATION", parser=values.duration(high),
                        help=help_text)


# ---- the job a command runs ----------------------------------------------------------------


class RetryOn(enum.StrEnum):
    """Attempt endings `--retry-on` accepts."""

    lost = "lost"
    failed = "failed"
    timed_out = "timed_out"


class SecretDelivery(enum.StrEnum):
    """How `--secret-delivery` hands secrets to the process."""

    file = "file"
    stdin = "stdin"
    both = "both"


MAX_COMPLETIONS = jobflow.MAX_COMPLETIONS


def _job_spec_params(
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="-- CMD ARGS...", help="The command to run.",
                       show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="TOML job file; options given here override it."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the job.")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="K=V", help="Environment variable (repeatable)."),
    ] = None,
    workdir: Annotated[
        str | None, typer.Option("--workdir", "-w", help="Working directory on the worker.")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", metavar="K=V", help="Label (repeatable)."),
    ] = None,
    selector: Annotated[
        list[str] | None,
        typer.Option("--selector", "-s", metavar="K=V",
                     help="Run only on workers with this label (repeatable)."),
    ] = None,
    cpus: Annotated[
        float | None,
        typer.Option("--cpus", metavar="N", parser=values.number(0, values.MAX_CPUS),
                     help=f"CPUs the job needs (0-{values.MAX_CPUS:g})."),
    ] = None,
    memory_mb: Annotated[
        int | None,
        typer.Option("--memory-mb", metavar="MIB",
                     parser=values.integer(0, values.MAX_MEMORY_MB),
                     help=f"Memory the job needs, in MiB (0-{values.MAX_MEMORY_MB})."),
    ] = None,
    timeout: Annotated[
        float | None,
        duration_option("--timeout", high=values.MAX_TIMEOUT_SECONDS,
                        help_text="Time limit: 90s, 5m, 1h30m, 2d (at most 366 days)."),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option("--max-attempts", metavar="N",
                     parser=values.integer(1, values.MAX_ATTEMPTS),
                     help=f"Attempts in total (retries + 1; 1-{values.MAX_ATTEMPTS})."),
    ] = None,
    retry_on: Annotated[
        list[RetryOn] | None,
        typer.Option("--retry-on", case_sensitive=False,
                     help="Retry after this ending while attempts remain (repeatable; "
                          "default: lost)."),
    ] = None,
    backoff: Annotated[
        float | None,
        duration_option("--backoff", high=values.MAX_BACKOFF_SECONDS,
                        help_text="Delay before the second attempt, doubling after "
                                  "(default 1s, at most 1d)."),
    ] = None,
    script: Annotated[
        str | None, typer.Option("--script", help="Script to run, not a command.")
    ] = None,
    interpreter: Annotated[
        str | None, typer.Option("--interpreter", help="Interpreter for --script (default: sh).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key",
                     help="Submitting again with the same key returns the job."),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option("--secret", metavar="NAME",
                     help="A secret the job gets, as a file in $HODEI_SECRETS_DIR (repeatable; "
                          "BACKEND:NAME for another backend)."),
    ] = None,
    secret_delivery: Annotated[
        SecretDelivery | None,
        typer.Option("--secret-delivery",
                     help="file: $HODEI_SECRETS_DIR/NAME (default); stdin: one JSON object; "
                          "both."),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option("--after", metavar="JOB[:COND]", parser=values.after,
                     help="Wait BLOCKED until job JOB succeeded (or :finished, :failed); "
                          "repeatable: all must hold."),
    ] = None,
    completions: Annotated[
        int | None,
        typer.Option("--completions", metavar="N", parser=values.integer(1, MAX_COMPLETIONS),
                     help="Run it N times, indexed 0..N-1 ($HODEI_JOB_INDEX); it succeeds when "
                          "every index did."),
    ] = None,
    parallelism: Annotated[
        int | None,
        typer.Option("--parallelism", metavar="P", parser=values.integer(1, MAX_COMPLETIONS),
                     help="At most P indexes at once (default: all)."),
    ] = None,
    correlation_id: Annotated[
        str | None,
        typer.Option("--correlation-id", metavar="ID", envvar="HODEI_CORRELATION_ID",
                     help="Carried by every event the job causes (hodeictl events "
                          "--correlation-id ID)."),
    ] = None,
) -> None:
    """The parameters `job_spec_options` adds (never called)."""


def job_spec_options(function: F) -> F:
    """Give a command the options that describe a job, after its own parameters.

    The command reads them through `ctx.params` (see `hodeictl.commands.job._spec`).
    """
    own = inspect.signature(function, eval_str=True)
    shared = inspect.signature(_job_spec_params, eval_str=True)
    clash = set(own.parameters) & set(shared.parameters)
    if clash:
        raise TypeError(f"{function.__name__} already has {', '.join(sorted(clash))}")
    names = set(own.parameters)

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **{k: v for k, v in kwargs.items() if k in names})

    params = [*own.parameters.values(), *shared.parameters.values()]
    command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__annotations__["return"] = own.return_annotation
    return command  # type: ignore[return-value]


class WaitFor(enum.StrEnum):
    """What `job wait --for` waits for."""

    finished = "finished"
    succeeded = "succeeded"
    failed = "failed"
    running = "running"
