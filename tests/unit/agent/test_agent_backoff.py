"""Reconnect backoff: exponential, capped, fully jittered."""

from __future__ import annotations

import pytest

from hodei_agent.backoff import Backoff


def test_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.2, cap=10.0, rand=lambda low, high: high)
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays[:6] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4])
    assert delays[6:] == [10.0] * 6


def test_delays_are_bounded_and_jittered() -> None:
    backoff = Backoff(base=0.2, cap=10.0)
    for _ in range(10):
        backoff.next_delay()
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.0 <= delay <= 10.0 for delay in delays)
    assert len(set(delays)) > 150  # full jitter: spread over [0, cap]
    assert min(delays) < 2.0 and max(delays) > 8.0


def test_long_outage_does_not_overflow() -> None:
    backoff = Backoff()
    for _ in range(10_000):
        assert 0.0 <= backoff.next_delay() <= backoff.cap


def test_reset_starts_over() -> None:
    backoff = Backoff(base=0.5, cap=4.0, rand=lambda low, high: high)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)
