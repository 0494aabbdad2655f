"""Audit (admins): the security audit log, newest last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text

from hodeictl.client import HodeiClient
from hodeictl.tui.cells import age, safe
from hodeictl.tui.screens.listing import ListingScreen

ROWS = 500


class AuditScreen(ListingScreen):
    screen_name = "audit"
    COLUMNS: ClassVar[Sequence[str]] = ("ID", "AGE", "ACTOR", "ACTION", "TARGET", "ALLOWED",
                                        "REASON")

    async def fetch(self, client: HodeiClient) -> Sequence[Any]:
        entries: list[Any] = []
        after = 0
        while True:
            page = await client.list_audit(after_id=after, limit=1000)
            entries.extend(page)
            if len(page) < 1000:
                return entries[-ROWS:]
            after = page[-1].id

    def cells(self, item: Any) -> list[Text]:
        allowed = Text("yes", style="green") if item.allowed else Text("no", style="red")
        return [Text(str(item.id)), Text(age(item.at)), safe(item.actor, 30),
                safe(item.action.rsplit("/", 1)[-1], 30), safe(item.target, 40), allowed,
                safe(item.reason, 60)]
