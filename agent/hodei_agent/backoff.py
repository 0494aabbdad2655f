"""Exponential backoff with full jitter, for reconnecting to the server."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays of `uniform(0, min(cap, base * 2**failures))` seconds ("full jitter").

    Full jitter spreads a fleet of agents that lost the same server so they do not all come
    back in the same instant, and the cap keeps an agent from sleeping long after the server
    is back.
    """

    def __init__(
        self,
        base: float = 0.2,
        cap: float = 10.0,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rand = rand
        self._failures = 0

    def ceiling(self) -> float:
        """Largest delay the next call to `next_delay` can return."""
        # Bound the exponent so a long outage cannot overflow the float.
        return min(self.cap, self.base * 2 ** min(self._failures, 32))

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        delay = self._rand(0.0, self.ceiling())
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Forget past failures (after a connection proved healthy)."""
        self._failures = 0
