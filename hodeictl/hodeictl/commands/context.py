"""`hodeictl context ...`: named servers in the config file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from hodeictl import completion, output, values
from hodeictl.config import LOCAL_CONTEXT, Config
from hodeictl.errors import UsageError
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat
from hodeictl.table import Column

app = typer.Typer(
    rich_markup_mode=None,
    help=f"Manage contexts: named Hodei servers ('{LOCAL_CONTEXT}' is the embedded stack).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The context name.",
                                        autocompletion=completion.contexts)]
NewNameArg = Annotated[
    str, typer.Argument(metavar="NAME", parser=values.context_name,
                        help="The context name: letters, digits, '.', '_', '-', '@'.")
]


@app.command("list")
def list_contexts(
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """List contexts; the current one is marked with *."""
    from hodeictl.embedded import home_dir

    config = Config.load()
    current = config.current_context or LOCAL_CONTEXT
    local = f"embedded stack in {output.display_path(home_dir())}"
    rows = [(LOCAL_CONTEXT, local), *sorted(config.contexts.items())]
    data = [{"name": name, "server": server, "current": name == current}
            for name, server in rows]
    if not output.print_data(output_format, data):
        output.print_pairs_table(
            (Column("NAME"), Column("CURRENT"), Column("SERVER", shrink=1, min_width=16)),
            [(name, "*" if name == current else "", server) for name, server in rows],
            output_format, kind="context",
        )


@app.command("use")
def use_context(name: NameArg) -> None:
    """Make NAME the current context ('local': the embedded stack)."""
    config = Config.load()
    config.use_context(name)
    config.save()
    output.note(f"Using context '{name}'.")


@app.command("set")
def set_context(
    name: NewNameArg,
    server: Annotated[
        str, typer.Option("--server", metavar="HOST:PORT", parser=values.server_address,
                          help="The server address.")
    ],
    token_file: Annotated[
        str | None,
        typer.Option("--token-file", metavar="PATH",
                     help="A file holding the context's API token (read at each call)."),
    ] = None,
    token_stdin: Annotated[
        bool,
        typer.Option("--token-stdin",
                     help="Read the API token from stdin (or HODEI_TOKEN) and keep it in the "
                          "config file, which only you can read."),
    ] = False,
    ca_cert: Annotated[
        Path | None,
        typer.Option("--ca-cert", metavar="PATH",
                     help="Speak TLS, verifying the server with this CA certificate "
                          "(from `hodeictl certs init`)."),
    ] = None,
) -> None:
    """Create or update context NAME: its server, the API token its calls carry, and the CA
    certificate to verify the server with (TLS)."""
    if token_file and token_stdin:
        raise UsageError("give --token-file or --token-stdin, not both")
    path = None
    if ca_cert is not None:
        try:
            resolved = ca_cert.expanduser().resolve()
            is_file = resolved.is_file()
        except (OSError, RuntimeError, ValueError):  # a name too long, a loop, a NUL
            is_file = False
        if not is_file:
            raise UsageError(f"--ca-cert: {ca_cert} is not a file")
        path = str(resolved)
    token = _read_token() if token_stdin else None
    if token_file:  # read later from any directory
        token_file = os.path.abspath(os.path.expanduser(token_file))
    config = Config.load()
    config.set_context(name, server, token=token, token_file=token_file, ca_cert=path)
    config.save()
    with_token = " with a token" if token or token_file else ""
    tls = f" (TLS, CA {path})" if path else ""
    output.note(f"Context '{name}' set to {server}{with_token}{tls}.")


def _read_token() -> str:
    """The token from HODEI_TOKEN, else stdin (a hidden prompt on a terminal); never echoed."""
    token = os.environ.get("HODEI_TOKEN", "").strip()
    if not token:
        if sys.stdin.isatty():
            token = typer.prompt("API token", hide_input=True, err=True).strip()
        else:
            token = sys.stdin.readline().strip()
    if not token:
        raise UsageError("--token-stdin: no token on stdin (nor in HODEI_TOKEN)")
    return token


@app.command("view")
def view_context(
    name: Annotated[
        str | None,
        typer.Argument(metavar="[NAME]", autocompletion=completion.contexts,
                       help="The context (default: the current one)."),
    ] = None,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """Show a context: its server, where its token comes from (never the token), its CA."""
    config = Config.load()
    name = name or config.current_context or LOCAL_CONTEXT
    if name == LOCAL_CONTEXT:
        from hodeictl.embedded import home_dir

        data = {"name": LOCAL_CONTEXT,
                "server": f"embedded stack in {output.display_path(home_dir())}",
                "token": "the stack's own", "ca_cert": "none (plaintext on 127.0.0.1)",
                "current": "yes" if not config.current_context else "no"}
    else:
        data = config.view(name)
    if not output.print_data(output_format, data):
        output.print_fields([(key.replace("_", " ").capitalize(), value)
                             for key, value in data.items()])


@app.command("delete")
def delete_context(name: NameArg) -> None:
    """Delete context NAME (if it was the current one, 'local' is now)."""
    config = Config.load()
    was_current = config.delete_context(name)
    config.save()
    output.note(f"Context '{name}' deleted." + (" Using context 'local'." if was_current
                                                else ""))
