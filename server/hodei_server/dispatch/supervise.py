"""Helpers for long-running loops: backoff with jitter, supervised tasks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


def retry_delay(failures: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 16)))


def supervised(
    coro: Coroutine[Any, Any, None], name: str, on_crash: asyncio.Event
) -> asyncio.Task[None]:
    """Run `coro` as a named task; a crash is logged and sets `on_crash`."""
    task = asyncio.create_task(coro, name=name)

    def done(t: asyncio.Task[None]) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.error("task %s crashed", name, exc_info=exc)
            on_crash.set()

    task.add_done_callback(done)
    return task
