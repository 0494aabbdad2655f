"""Providers: each configured provider, its workers, slots and health."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text

from hodeictl.client import HodeiClient
from hodeictl.tui.cells import safe
from hodeictl.tui.screens.listing import ListingScreen


class ProvidersScreen(ListingScreen):
    screen_name = "providers"
    COLUMNS: ClassVar[Sequence[str]] = ("NAME", "TYPE", "WORKERS", "STARTING", "MIN/MAX",
                                        "SLOTS", "STRATEGY", "HEALTH")

    async def fetch(self, client: HodeiClient) -> Sequence[Any]:
        return await client.list_providers()

    def cells(self, item: Any) -> list[Text]:
        health = Text("ok", style="green") if item.healthy else safe(f"failing: {item.error}", 80)
        return [safe(item.name, 30), safe(item.type, 20), Text(str(item.workers)),
                Text(str(item.starting)), Text(f"{item.min_workers}/{item.max_workers}"),
                Text(f"{item.slots_used}/{item.slots_total}"), safe(item.strategy, 20),
                health]
