"""`hodeictl secret ...`: the server's encrypted secret store.

A value is read from stdin or a file, never from the command line (where `ps` and the shell
history would show it), and is never printed back.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hodeictl import output, target
from hodeictl.errors import UsageError
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat

app = typer.Typer(rich_markup_mode=None,
                  help="Set, list and delete secrets jobs can use.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The secret's name.",
                                        show_default=False)]


def _read_value(from_file: Path | None) -> bytes:
    if from_file is not None:
        try:
            return from_file.read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read {from_file}: {error.strerror or error}") from None
    if sys.stdin.isatty():
        value = typer.prompt("Value", hide_input=True, confirmation_prompt=True)
        return str(value).encode()
    return sys.stdin.buffer.read()


@app.command("set")
def set_secret(
    ctx: typer.Context,
    name: NameArg,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", metavar="PATH",
                     help="Read the value from this file (default: stdin, byte for byte)."),
    ] = None,
) -> None:
    """Store a secret (replacing one of that name); the value comes from stdin or a file."""
    value = _read_value(from_file)
    if not value:
        raise UsageError("the value is empty; give it on stdin or with --from-file PATH")
    reply = target.call(ctx.obj, lambda client: client.set_secret(name, value))
    verb = "created" if reply.created else "updated"
    typer.echo(f"Secret {reply.secret.name} {verb} ({reply.secret.size_bytes} bytes, "
               f"key {reply.secret.key_id}).")


@app.command("list")
def list_secrets(
    ctx: typer.Context,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """List secrets: name, backend, size, last update (never values)."""
    secrets = target.call(ctx.obj, lambda client: client.list_secrets())
    if output.print_data(output_format, [output.to_dict(s) for s in secrets]):
        return
    output.print_pairs_table(
        ("NAME", "BACKEND", "BYTES", "UPDATED", "BY"),
        [(s.name, s.backend, str(s.size_bytes), output.local_time(s, "updated_at"),
          s.updated_by or "-") for s in secrets], output_format, kind="secret",
    )


@app.command()
def delete(ctx: typer.Context, name: NameArg) -> None:
    """Delete a secret. Jobs that name it and have not started fail with a clear reason."""
    if target.call(ctx.obj, lambda client: client.delete_secret(name)):
        typer.echo(f"Secret {name} deleted.")
    else:
        typer.echo(f"No secret {name}; nothing deleted.")
