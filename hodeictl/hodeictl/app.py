"""The hodeictl typer application and its entry point."""

from __future__ import annotations

import importlib.metadata
import traceback
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from hodei_plugins.manager import get_host
from hodeictl import usage, values
from hodeictl.commands import (
    certs,
    context,
    events,
    job,
    plugin,
    provider,
    schedule,
    secret,
    stack,
    template,
    token,
    watch,
    worker,
)
from hodeictl.commands import tui as tui_command
from hodeictl.errors import EXIT_USAGE, HodeiCtlError
from hodeictl.target import Settings

# Where the root context keeps the command line, to name the option a bad value was given to.
_ARGS = "hodeictl.args"


class _ReportingGroup(TyperGroup):
    """The root command group: reports a HodeiCtlError, and any usage error click finds
    while parsing the command line, as one line and its exit code.

    Living in the group, the handler covers `main()` and `typer.testing.CliRunner` alike.
    The root's own options are parsed in `make_context`; every sub-command's in `invoke`.
    """

    def make_context(self, info_name: str | None, args: list[str], *rest: Any,
                     **kwargs: Any) -> Any:
        with usage.one_line_errors():
            ctx = super().make_context(info_name, args, *rest, **kwargs)
        ctx.meta[_ARGS] = list(args)
        return ctx

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            with usage.one_line_errors():
                return super().invoke(ctx)
        except HodeiCtlError as error:
            self._report(ctx, error, str(error), error.exit_code)
        except UnicodeEncodeError as error:
            # Text that came in as bytes that are not UTF-8 (an argument, a file name) and
            # has to go out as UTF-8: to the server, or into the config file.
            self._report(ctx, error, usage.not_utf8(error, ctx.meta.get(_ARGS, [])),
                         EXIT_USAGE)

    @staticmethod
    def _report(ctx: typer.Context, error: Exception, message: str, code: int) -> NoReturn:
        settings = ctx.obj
        if isinstance(settings, Settings) and settings.debug:
            traceback.print_exception(error)
        typer.echo(usage.one_line(f"hodeictl: {message}"), err=True)
        raise typer.Exit(code) from None


app = typer.Typer(
    cls=_ReportingGroup,
    name="hodeictl",
    help="Hodei: run commands on your fleet and follow them live.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(job.app, name="job")
app.add_typer(worker.app, name="worker")
app.add_typer(context.app, name="context")
app.add_typer(plugin.app, name="plugin")
app.add_typer(provider.app, name="provider")
app.add_typer(token.app, name="token")
app.add_typer(token.audit_app, name="audit")
app.add_typer(certs.app, name="certs")
app.add_typer(secret.app, name="secret")
app.add_typer(template.app, name="template")
app.add_typer(schedule.app, name="schedule")
app.command()(stack.up)
app.command()(stack.down)
app.command()(stack.status)
app.command()(token.whoami)
app.command()(events.events)
job.app.command()(watch.wait)
app.command(name="tui")(tui_command.tui)
# Third-party distributions add sub-commands through the `hodei_add_cli_commands` hook.
get_host().add_cli_commands(app)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"hodeictl {importlib.metadata.version('hodei')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server", envvar="HODEI_SERVER", metavar="HOST:PORT", help="The Hodei server.",
            parser=values.server_address,
        ),
    ] = None,
    context_name: Annotated[
        str | None,
        typer.Option(
            "--context", envvar="HODEI_CONTEXT", metavar="NAME", help="A context from the config."
        ),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file", envvar="HODEI_TOKEN_FILE", metavar="PATH",
            help="A file holding the API token to send (env HODEI_TOKEN: the token itself).",
        ),
    ] = None,
    ca_cert: Annotated[
        str | None,
        typer.Option(
            "--ca-cert", envvar="HODEI_CA_CERT", metavar="PATH",
            help="Speak TLS to --server, verifying it with this CA certificate.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="HODEI_DEBUG", help="Show tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Without --server or --context, hodeictl uses (and starts) an embedded local stack."""
    ctx.obj = Settings(server=server, context=context_name, debug=debug, token_file=token_file,
                       ca_cert=ca_cert)


def main() -> None:
    """Console-script entry point: `hodeictl`."""
    app(prog_name="hodeictl")
