"""`hodeictl worker ...`: the worker fleet."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hodeictl import target, values, views
from hodeictl.options import (
    AllOpt,
    NoHeadersOpt,
    OutputOpt,
    QuietOpt,
    WorkerIdArg,
    duration_option,
)
from hodeictl.output import OutputFormat
from hodeictl.terminal import sanitize

app = typer.Typer(rich_markup_mode=None,
                  help="Inspect and drain workers.", no_args_is_help=True)


@app.command("list")
def list_workers(
    ctx: typer.Context,
    include_gone: AllOpt = False,
    output_format: OutputOpt = OutputFormat.table,
    no_headers: NoHeadersOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List workers: state, slots in use, labels, capacity, last heartbeat."""
    workers = target.call(ctx.obj, lambda client: client.list_workers(include_gone))
    views.print_workers(workers, output_format, no_headers=no_headers, quiet=quiet)


@app.command()
def drain(
    ctx: typer.Context,
    worker_ref: WorkerIdArg,
    grace: Annotated[
        float,
        duration_option("--grace", high=values.MAX_GRACE_SECONDS,
                        help_text="How long running jobs may go on before they are cancelled "
                                  "(default: the agent's own, 30s; at most 1d)."),
    ] = 0.0,
) -> None:
    """Drain a worker: no new jobs; running ones finish, then the agent exits."""
    async def drain(client: Any) -> Any:
        from hodeictl import resolve

        return await client.drain_worker(await resolve.worker_id(client, worker_ref), grace)

    worker = target.call(ctx.obj, drain)
    typer.echo(sanitize(f"Worker {worker.id} ({worker.name}): draining"))
