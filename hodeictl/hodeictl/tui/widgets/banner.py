"""The banner at the top: which server, who we are, and whether the connection holds."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static


class ConnectionBanner(Static):
    """Hidden while connected; says what is wrong and when the next try is otherwise."""

    problem: reactive[str] = reactive("")

    def watch_problem(self, problem: str) -> None:
        self.display = bool(problem)
        self.update(Text(problem))


class StatusLine(Static):
    """Context, identity and mode, one line."""

    def show(self, context: str, identity: str, role: str, read_only: bool) -> None:
        parts = [f"ctx {context}"]
        if identity:
            parts.append(f"{identity} ({role})")
        if read_only:
            parts.append("READ-ONLY")
        self.update(Text("  |  ".join(parts)))
