"""`hodeictl plugin ...`: the plugins this installation loads (entry-point group `hodei`)."""

from __future__ import annotations

from typing import Annotated

import typer

from hodei_plugins.info import PluginInfo
from hodeictl import output
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat
from hodeictl.table import Column

app = typer.Typer(rich_markup_mode=None,
                  help="Inspect plugins.", no_args_is_help=True)


@app.command("list")
def list_plugins(
    ctx: typer.Context,
    on_server: Annotated[
        bool, typer.Option("--server", help="What the server has loaded, not this install.")
    ] = False,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """List plugins: name, distribution and version, what each adds, status.

    Status is loaded, disabled (named in HODEI_DISABLED_PLUGINS=name[,name...]) or
    failed: reason. Without --server, the plugins of this installation (hodeictl's venv);
    with it, those of the server hodeictl talks to.
    """
    if on_server:
        from hodeictl import target

        info = target.call(ctx.obj, lambda client: client.server_info())
        plugins = [PluginInfo(p.name, p.module, p.distribution, p.version, p.status, p.reason,
                              list(p.provides)) for p in info.plugins]
    else:
        from hodei_plugins.manager import get_host

        host = get_host()
        host.providers()  # run the registration hooks, so one raising in them shows failed
        host.strategies()
        host.secret_backends()
        plugins = host.plugins
    if not output.print_data(output_format, [p.to_dict() for p in plugins]):
        output.print_pairs_table(
            (Column("NAME"), Column("STATUS", shrink=1, min_width=8),
             Column("PROVIDES", priority=1, shrink=1, min_width=16),
             Column("DISTRIBUTION", priority=3), Column("VERSION", priority=2)),
            [(p.name, p.status_text, p.provides_text or "-", p.distribution, p.version)
             for p in plugins], output_format, kind="plugin",
        )

