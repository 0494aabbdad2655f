"""Durations as people write them: `90`, `90s`, `1.5m`, `1h30m`, or a number of seconds."""

from __future__ import annotations

import math
import re

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:{_NUMBER}[hms])*{_NUMBER}[hms]?")
_DURATION_PART = re.compile(rf"({_NUMBER})([hms]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse(value: str | float) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `1h30m` or a number; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        if not _DURATION.fullmatch(text):
            raise ValueError(f"not a duration: {value!r}")
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def describe(seconds: float) -> str:
    """`seconds` in the largest whole unit: `1 day`, `366 days`, `5m`, `90s`."""
    if seconds >= 86400 and seconds % 86400 == 0:
        days = seconds / 86400
        return f"{days:g} day" + ("" if days == 1 else "s")
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
