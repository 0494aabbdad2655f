"""What a screen may ask of the console app: its live state and its actions.

Screens know the app through this protocol, never through `hodeictl.tui.app`, which
imports the screens: the app stands above its screens, and nothing runs back up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl.client import HodeiClient
from hodeictl.tui.connection import Connection
from hodeictl.tui.live import Changes
from hodeictl.tui.query import JobQuery
from hodeictl.tui.store import JobIndex

T = TypeVar("T")


class Console(Protocol):
    """The console app as its screens see it (`HodeiApp` is one)."""

    connection: Connection
    jobs: JobIndex
    jobs_more: bool
    fleet: dict[str, workers_pb2.Worker]
    job_changes: list[Changes]
    fleet_changes: list[Changes]
    read_only: bool
    context_label: str
    role: int

    def worker_names(self) -> dict[str, str]: ...

    def apply_job(self, job: jobs_pb2.Job) -> None: ...

    def set_job_query(self, query: JobQuery) -> None: ...

    def screen_names(self) -> list[str]: ...

    def command_words(self) -> list[str]: ...

    def run_command(self, text: str) -> str | None:
        """Run a `:` command; returns an error line, or None."""
        ...

    def can(self, action: str) -> bool: ...

    def act(self, action: str, call: Callable[[HodeiClient], Awaitable[T]],
            done: Callable[[T], None] | None = None, success: str = "") -> None: ...

    def cancel_job(self, job_id: str) -> None: ...

    def retry_job(self, job_id: str) -> None: ...

    def drain_worker(self, worker_id: str, name: str) -> None: ...

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None: ...
