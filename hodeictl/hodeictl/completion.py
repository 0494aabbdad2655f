"""Dynamic shell completion: job ids and names, worker ids and names, context names.

A Tab must be quick and must never have side effects: completion asks the server that the
command line (or the config) names, with a short timeout, and never starts the embedded
stack (with none running, it offers nothing). Any error offers nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from hodeictl.target import Settings

COMPLETION_TIMEOUT = 2.0
COMPLETION_LIMIT = 200


def _settings(ctx: typer.Context) -> Settings | None:
    """The root's options as parsed so far; None when only a stopped local stack is meant."""
    from hodeictl.config import LOCAL_CONTEXT, Config
    from hodeictl.target import Settings

    params = ctx.find_root().params
    settings = Settings(server=params.get("server"), context=params.get("context_name"),
                        token_file=params.get("token_file"), ca_cert=params.get("ca_cert"))
    if settings.server:
        return settings
    name = settings.context or Config.load().current_context
    if name and name != LOCAL_CONTEXT:
        return settings
    return local_stack_settings(settings)


def local_stack_settings(settings: Settings | None = None) -> Settings | None:
    """Settings that reach the local stack if it is running (None if not): never starts
    it."""
    from hodeictl import embedded
    from hodeictl.target import Settings

    info = embedded.read_stack(embedded.home_dir())
    if info is None:
        return None
    settings = settings or Settings()
    settings.server = info.address
    settings.stack_token = info.token
    return settings


def _ask(ctx: typer.Context, action: Any) -> Any:
    try:
        settings = _settings(ctx)
        if settings is None:
            return None
        from hodeictl import target

        return target.call(settings, action, timeout=COMPLETION_TIMEOUT)
    except Exception:
        return None


def jobs(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Job ids (with name and state as help) whose id or name starts with `incomplete`."""
    from hodeictl import output
    from hodeictl.client import job_filter

    found = _ask(ctx, lambda client: client.list_jobs(job_filter(), COMPLETION_LIMIT)) or []

    offers = []
    seen: set[str] = set()
    for job in found:
        name = job.spec.name
        if job.id.startswith(incomplete) or (name and name.startswith(incomplete)):
            value = name if name and name.startswith(incomplete) and incomplete else job.id
            if value not in seen:  # a name once, for its newest job
                seen.add(value)
                offers.append((value, f"{name or '-'} {output.job_state(job.state)}"))
    return offers


def workers(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Worker names and ids that start with `incomplete`."""
    found = _ask(ctx, lambda client: client.list_workers(False)) or []
    offers = []
    for worker in found:
        if worker.name and worker.name.startswith(incomplete):
            offers.append((worker.name, worker.id))
        elif worker.id.startswith(incomplete):
            offers.append((worker.id, worker.name or "-"))
    return offers


def contexts(incomplete: str) -> list[str]:
    """Context names from the config file (and `local`)."""
    try:
        from hodeictl.config import LOCAL_CONTEXT, Config

        names = [LOCAL_CONTEXT, *Config.load().contexts]
    except Exception:
        return []
    return [name for name in names if name.startswith(incomplete)]


def enabled() -> bool:
    """Whether this process runs for shell completion (click sets `_HODEICTL_COMPLETE`)."""
    return "_HODEICTL_COMPLETE" in os.environ
