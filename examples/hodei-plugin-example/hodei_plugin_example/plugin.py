"""The hooks of the example plugin (entry point `example` of group `hodei`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import typer

from hodei_plugins import hookimpl
from hodei_plugins.schedulers import JobRequest, WorkerView


class EmptiestLast:
    """Bin packing: the fitting worker with the *fewest* free slots (the busiest)."""

    name: ClassVar[str] = "emptiest-last"

    def choose(self, job: JobRequest, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return min(candidates, key=lambda w: w.free_slots, default=None)


def hello_plugin(
    name: Annotated[str, typer.Option("--name", help="Who to greet.")] = "world",
) -> None:
    """Say hello from the example plugin."""
    typer.echo(f"hello, {name}, from hodei-plugin-example")


@hookimpl
def hodei_register_strategies() -> list[type]:
    return [EmptiestLast]


@hookimpl
def hodei_add_cli_commands(app: typer.Typer) -> None:
    app.command("hello-plugin")(hello_plugin)
