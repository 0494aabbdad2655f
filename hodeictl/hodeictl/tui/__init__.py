"""`hodeictl tui`: the operator's live console (Textual; the `hodei[tui]` extra)."""

from __future__ import annotations

from hodeictl.errors import UsageError
from hodeictl.target import Settings


def run(settings: Settings, *, read_only: bool = False, screen: str = "jobs") -> None:
    """Run the console until the user quits."""
    try:
        from hodeictl.tui.app import HodeiApp
    except ImportError as error:
        raise UsageError(f"the TUI needs Textual ({error.name} is missing): "
                         "pip install 'hodei[tui]'") from None
    HodeiApp(settings, read_only=read_only, start_screen=screen).run()
