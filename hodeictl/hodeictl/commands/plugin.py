"""`hodeictl plugin ...`: the plugins this installation loads (entry-point group `hodei`)."""

from __future__ import annotations

import typer

from hodeictl import output
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat

app = typer.Typer(rich_markup_mode=None,
                  help="Inspect plugins.", no_args_is_help=True)


@app.command("list")
def list_plugins(
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """List plugins: name, distribution and version, what each adds, status.

    Status is loaded, disabled (named in HODEI_DISABLED_PLUGINS=name[,name...]) or
    failed: reason.
    """
    from hodei_plugins.manager import get_host

    host = get_host()
    host.providers()  # run the registration hooks, so a plugin raising in one shows failed
    host.strategies()
    host.secret_backends()
    plugins = host.plugins
    if not output.print_data(output_format, [p.to_dict() for p in plugins]):
        output.print_pairs_table(
            ("NAME", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"),
            [(p.name, p.distribution, p.version, p.provides_text or "-", p.status_text)
             for p in plugins],
        )
