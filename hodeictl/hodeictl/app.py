"""The hodeictl typer application and its entry point.

Importing this module must stay cheap (`hodeictl --help` and every Tab of completion pay
for it): the command modules import typer and hodeictl's light modules only, and grpc,
protobuf, rich and the plugins (with the SDKs they bring) are imported by the commands that
use them. Plugins' sub-commands are looked up only when the command line names a command
that is not built in, or when the list of commands is shown. A test holds this.
"""

from __future__ import annotations

import importlib
import traceback
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from hodeictl import completion, usage, values
from hodeictl.commandlist import COMMANDS, SUBGROUPS, third_party_plugins
from hodeictl.commands import stack, token
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

    _plugins_added = False

    def _load_group(self, name: str) -> Any:
        """The click group of the built-in command group `name`, its module imported now."""
        if name not in self.commands and name in SUBGROUPS:
            module_name, attribute, _ = SUBGROUPS[name]
            module = importlib.import_module(module_name)
            group = _lazy_group(getattr(module, attribute))
            group.name = name
            self.commands[name] = group
        return self.commands.get(name)

    def _load_command(self, name: str) -> Any:
        """The click command of the built-in command `name`, its module imported now."""
        if name not in self.commands:
            module_name, attribute, _ = COMMANDS[name]
            module = importlib.import_module(module_name)
            single = typer.Typer(rich_markup_mode=None)
            single.command(name=name)(getattr(module, attribute))
            self.commands[name] = typer.main.get_command_from_info(
                single.registered_commands[0], pretty_exceptions_short=True,
                rich_markup_mode=None)
        return self.commands[name]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The list of commands, with the help of groups not yet imported (and not imported
        for this) from SUBGROUPS."""
        rows = []
        for name in self.list_commands(ctx):
            lazy = SUBGROUPS.get(name) or COMMANDS.get(name)
            if lazy is not None and name not in self.commands:
                rows.append((name, lazy[2]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _add_plugin_commands(self) -> None:
        """Let plugins add their sub-commands (once, and only when they are asked for).

        The built-in plugins (distribution `hodei`) add none, so the plugin manager, and
        with it every plugin's imports, is loaded only when another distribution declares
        plugins (entry-point group `hodei`).
        """
        if _ReportingGroup._plugins_added:
            return
        _ReportingGroup._plugins_added = True
        if not third_party_plugins():
            return
        from hodei_plugins.manager import get_host

        extra = typer.Typer()
        get_host().add_cli_commands(extra)
        if not extra.registered_commands and not extra.registered_groups:
            return
        group = typer.main.get_group(extra)
        for name, command in getattr(group, "commands", {}).items():
            self.commands.setdefault(name, command)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in SUBGROUPS:
            return self._load_group(cmd_name)
        if cmd_name in COMMANDS:
            return self._load_command(cmd_name)
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: Any) -> list[str]:
        self._add_plugin_commands()
        names = list(super().list_commands(ctx))
        return names + [name for name in (*SUBGROUPS, *COMMANDS) if name not in names]

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


class _LazyCommands(dict[str, Any]):
    """A group's commands by name, each turned from its typer definition into a click
    command when first asked for: `job list` does not pay for `job run`'s 22 options."""

    def __init__(self, builders: dict[str, Any]) -> None:
        super().__init__((name, None) for name in builders)
        self._builders = builders

    def _built(self, name: str) -> Any:
        command = dict.get(self, name)
        if command is None:
            command = self._builders[name]()
            dict.__setitem__(self, name, command)
        return command

    def __getitem__(self, name: str) -> Any:
        if not dict.__contains__(self, name):
            raise KeyError(name)
        return self._built(name)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._built(name) if dict.__contains__(self, name) else default

    def values(self) -> Any:  # type: ignore[override]
        return [self._built(name) for name in self]

    def items(self) -> Any:  # type: ignore[override]
        return [(name, self._built(name)) for name in self]


def _lazy_group(sub: typer.Typer) -> Any:
    """The click group of `sub`, its commands built on demand (see _LazyCommands)."""
    import copy
    import functools

    if sub.registered_groups:
        return typer.main.get_group(sub)
    shell = copy.copy(sub)
    shell.registered_commands = []
    group = typer.main.get_group(shell)
    builders = {}
    for info in sub.registered_commands:
        assert info.callback is not None
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        builders[name] = functools.partial(
            typer.main.get_command_from_info, command_info=info,
            pretty_exceptions_short=sub.pretty_exceptions_short,
            rich_markup_mode=sub.rich_markup_mode)
    group.commands = _LazyCommands(builders)
    return group


def skip_coercion_of_defaults() -> None:
    """Let parameters that were not given keep their default without typer's coercion.

    typer checks every parameter's value through a pydantic adapter, given or not (even
    --help's False); building the adapters imports pydantic, which costs a Tab of
    completion and every command more than the rest of hodeictl's start. A value that was
    not given (None, or the declared default itself) comes out of that check unchanged (None
    as () for a repeatable one), so it is passed on as it is. Given values are checked as
    before. A test compares the two for every parameter of every command. Where typer has
    no such class (older versions coerce without pydantic), nothing changes.
    """
    cls = getattr(typer.core, "_TyperParameter", None)
    original = getattr(cls, "process_value", None)
    if cls is None or original is None or getattr(original, "_hodeictl_fast", False):
        return

    def process_value(self: Any, ctx: Any, value: Any) -> Any:
        if value is None:
            value = () if (self.multiple or self.nargs == -1) else None
        elif value is not self.default or isinstance(value, list | dict):
            return original(self, ctx, value)
        if self.required and self.value_is_missing(value):
            return original(self, ctx, value)  # raises: missing
        return self.callback(ctx, self, value) if self.callback is not None else value

    process_value._hodeictl_fast = True  # type: ignore[attr-defined]
    process_value.original = original  # type: ignore[attr-defined]
    cls.process_value = process_value


skip_coercion_of_defaults()


app = typer.Typer(
    cls=_ReportingGroup,
    name="hodeictl",
    help="Hodei: run commands on your fleet and follow them live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command()(stack.up)
app.command()(stack.down)
app.command()(stack.status)
app.command()(token.whoami)
app.command()(stack.version)
app.command(name="tui")(tui_command.tui)
# Third-party distributions add sub-commands through the `hodei_add_cli_commands` hook,
# run by `_ReportingGroup` when a command that is not built in is asked for.


def _show_version(value: bool) -> None:
    if value:
        import importlib.metadata

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
            "--context", envvar="HODEI_CONTEXT", metavar="NAME", help="A context from the config.",
            autocompletion=completion.contexts,
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
