"""`hodeictl token ...`: API tokens (the admin role), and `whoami` for any token."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from hodeictl import durations, output, target, values
from hodeictl.errors import UsageError
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat

if TYPE_CHECKING:
    from hodei_api.v1 import auth_pb2

app = typer.Typer(rich_markup_mode=None,
                  help="Manage API tokens (needs the admin role).", no_args_is_help=True)

ROLES = ("viewer", "submitter", "operator", "admin")
# The server answers at most this many audit rows per call.
MAX_AUDIT_ROWS = 1000
# The longest lifetime the server gives a token (ten years of 366 days).
MAX_EXPIRY_DAYS = 3660
_DAYS = re.compile(r"(\d+(?:\.\d+)?)d")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The token's unique name.")]


def parse_role(text: str) -> auth_pb2.Role.ValueType:
    """`submitter` → ROLE_SUBMITTER; raises UsageError."""
    from hodei_api.v1 import auth_pb2

    if text.lower() not in ROLES:
        raise UsageError(f"--role must be one of {', '.join(ROLES)}; got {values.shown(text)}")
    return auth_pb2.Role.Value(f"ROLE_{text.upper()}")


def parse_expiry(text: str) -> float:
    """Seconds from a duration (`30d`, `1d12h`, `90m`; hodeictl.durations); 0 for `never`."""
    if text.strip().lower() in ("never", "0", ""):
        return 0.0
    try:
        return durations.check(text, MAX_EXPIRY_DAYS * 86400)
    except ValueError as error:
        raise UsageError(f"--expires: {error} (or never)") from None


def role_name(role: int) -> str:
    from hodei_api.v1 import auth_pb2

    return auth_pb2.Role.Name(role).removeprefix("ROLE_").lower()  # type: ignore[arg-type]


def token_to_dict(token: auth_pb2.ApiToken) -> dict[str, object]:
    data = output.to_dict(token)
    data["role"] = role_name(token.role)
    return data


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    expires: Annotated[
        str,
        typer.Option("--expires", metavar="DURATION", help="Lifetime, e.g. 30d (default: never)."),
    ] = "never",
) -> None:
    """Create an API token and print it once: only its hash is kept."""
    wanted = parse_role(role)
    ttl = parse_expiry(expires)
    reply = target.call(ctx.obj, lambda client: client.create_token(name, wanted, ttl))
    typer.echo(reply.secret)
    until = output.local_time(reply.token, "expires_at") if ttl else "never"
    output.note(f"API token '{name}' ({role_name(reply.token.role)}), expires: {until}. "
                "It is shown only this once; store it now.")


@app.command()
def revoke(ctx: typer.Context, name: NameArg) -> None:
    """Revoke the API token NAME at once; its name is free again."""
    token = target.call(ctx.obj, lambda client: client.revoke_token(name))
    typer.echo(f"Revoked API token '{token.name}' ({role_name(token.role)}).")


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    include_revoked: Annotated[
        bool, typer.Option("--all", "-a", help="Include revoked tokens.")
    ] = False,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """List API tokens: name, role, creator, expiry, last use (never a secret)."""
    tokens = target.call(ctx.obj, lambda client: client.list_tokens(include_revoked))
    if output.print_data(output_format, [token_to_dict(t) for t in tokens]):
        return
    output.print_pairs_table(
        ("NAME", "ROLE", "CREATED BY", "EXPIRES", "LAST USED", "REVOKED"),
        [(t.name, role_name(t.role), t.created_by, output.local_time(t, "expires_at"),
          output.local_time(t, "last_used_at"), output.local_time(t, "revoked_at"))
         for t in tokens], output_format, kind="token",
    )


def whoami(ctx: typer.Context) -> None:
    """Show the name and role of the API token hodeictl sends."""
    reply = target.call(ctx.obj, lambda client: client.who_am_i())
    typer.echo(f"{reply.name} ({role_name(reply.role)})")


audit_app = typer.Typer(rich_markup_mode=None,
                  help="Read the security audit log (needs the admin role).",
                        no_args_is_help=True)


@audit_app.command("list")
def list_audit(
    ctx: typer.Context,
    action: Annotated[
        str, typer.Option("--action", metavar="ACTION",
                         help="Only this action: a method (DrainWorker or its full path) or an "
                              "event such as secret.set.")
    ] = "",
    refused: Annotated[bool, typer.Option("--refused", help="Only refusals.")] = False,
    after: Annotated[
        int, typer.Option("--after", metavar="ID", parser=values.integer(0, values.INT64_MAX),
                          help="Rows after this id.")
    ] = 0,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", parser=values.integer(1, MAX_AUDIT_ROWS),
                          help=f"At most this many rows (1-{MAX_AUDIT_ROWS}).")
    ] = 100,
    output_format: OutputOpt = OutputFormat.table,
) -> None:
    """Refusals and token changes: who, which call, allowed or not, why."""
    entries = target.call(ctx.obj, lambda client: client.list_audit(action, after, limit))
    if refused:
        entries = [e for e in entries if not e.allowed]
    if output.print_data(output_format, [output.to_dict(e) for e in entries]):
        return
    output.print_pairs_table(
        ("#", "AT", "ACTOR", "ACTION", "TARGET", "ALLOWED", "REASON"),
        [(str(e.id), output.local_time(e, "at"), e.actor, e.action, e.target or "-",
          "yes" if e.allowed else "no", e.reason or "-") for e in entries], output_format,
    )
