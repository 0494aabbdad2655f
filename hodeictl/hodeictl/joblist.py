"""`hodeictl job list` without --watch: the query and the listing.

Both the typer command (hodeictl.commands.job) and the fast path of hodeictl.launch call
`list_jobs`, so the two cannot drift apart. Nothing here imports typer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from hodeictl import target, values
from hodeictl.output import OutputFormat

# The states `job list --state` accepts, lower-case as typed.
STATES = ("pending", "assigned", "running", "succeeded", "failed", "cancelled", "timed_out",
          "lost", "blocked")


def list_jobs(
    settings: target.Settings,
    *,
    states: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    name: str = "",
    since: float | None = None,
    limit: int = 50,
    every: bool = False,
    output_format: OutputFormat = OutputFormat.table,
    no_headers: bool = False,
    quiet: bool = False,
) -> None:
    """Print the jobs that match, newest first: `limit` of them, or with `every` all."""
    from hodeictl import views
    from hodeictl.client import job_filter

    wanted = job_filter(states=states, labels=labels, name_glob=name,
                        created_after=time.time() - since if since is not None else None)
    count = values.INT32_MAX if every else limit
    jobs = target.call(settings, lambda client: client.list_jobs(wanted, count))
    views.print_jobs(jobs, output_format, no_headers=no_headers, quiet=quiet)
