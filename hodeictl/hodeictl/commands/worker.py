"""`hodeictl worker ...`: the worker fleet."""

from __future__ import annotations

from typing import Annotated

import typer

from hodeictl import output, target
from hodeictl.output import OutputFormat

app = typer.Typer(help="Inspect workers.", no_args_is_help=True)


@app.command("list")
def list_workers(
    ctx: typer.Context,
    include_gone: Annotated[
        bool, typer.Option("--all", "-a", help="Include terminated and lost workers.")
    ] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """List workers: state, slots in use, labels, capacity, last heartbeat."""
    workers = target.call(ctx.obj, lambda client: client.list_workers(include_gone))
    if output_format is OutputFormat.json:
        output.print_json([output.worker_to_dict(worker) for worker in workers])
    else:
        output.print_workers(workers)
