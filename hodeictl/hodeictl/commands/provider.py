"""`hodeictl provider ...`: the providers that start and stop workers."""

from __future__ import annotations

import typer

from hodeictl import output, target
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat
from hodeictl.table import Column

app = typer.Typer(rich_markup_mode=None,
                  help="Inspect providers.", no_args_is_help=True)


@app.command("list")
def list_providers(
    ctx: typer.Context,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """List the server's providers: type, worker bounds, workers, slots in use, health."""
    providers = target.call(ctx.obj, lambda client: client.list_providers())
    if output.print_data(output_format, [output.to_dict(p) for p in providers]):
        return
    output.print_pairs_table(
        (Column("NAME"), Column("TYPE", priority=3), Column("WORKERS", priority=2),
         Column("MIN-MAX", priority=4), Column("SLOTS", priority=1),
         Column("STRATEGY", priority=5), Column("HEALTH", shrink=1, min_width=8)),
        [
            (
                p.name,
                p.type + (" (ephemeral)" if p.ephemeral else ""),
                f"{p.workers}" + (f" (+{p.starting} starting)" if p.starting else ""),
                f"{p.min_workers}-{p.max_workers}",
                f"{p.slots_used}/{p.slots_total}",
                p.strategy or "default",
                "ok" if p.healthy else f"error: {p.error}",
            )
            for p in providers
        ],
        output_format, kind="provider",
    )
