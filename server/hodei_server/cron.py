"""Cron schedules: parsing them, their ticks, and which of the ticks due may still start.

Expressions are croniter's: five fields (minute hour day month weekday) or six, seconds
last; `H` in a field takes a value spread by a hash of the template's name, as Jenkins
does, so that a hundred "H 3 * * *" templates do not all start at 03:00:00. Ticks are
computed in the schedule's time zone (zoneinfo), so "0 3 * * *" in Europe/Madrid is 03:00
there, summer and winter.

`plan` decides what the ticks due since the last decided one become, following
Kubernetes' CronJob: only the latest may start, and only within its starting deadline;
every other one is missed, counted and reported (never silently dropped, and with no
limit after which the schedule stops).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

from croniter import croniter

# Ticks counted one by one in a pass; an outage longer than this many ticks counts this many.
MAX_COUNTED = 100_000
# Missed ticks recorded one by one in a pass (the latest ones); the others are counted.
MAX_RECORDED = 100
MAX_EXPRESSION = 200
_TIMEZONE = re.compile(r"[A-Za-z0-9_+/-]{1,64}")


class CronError(ValueError):
    """A schedule that can't be used; the message says why."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A checked cron expression in its time zone; `hash_id` spreads its `H` fields."""

    expression: str
    timezone: str
    hash_id: str

    @property
    def zone(self) -> dt.tzinfo:
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else dt.UTC

    def after(self, moment: dt.datetime) -> croniter:
        return croniter(self.expression, moment.astimezone(self.zone),
                        hash_id=self.hash_id.encode())

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first tick strictly after `moment` (in UTC)."""
        tick: dt.datetime = self.after(moment).get_next(dt.datetime)
        return tick.astimezone(dt.UTC)


def parse(expression: str, timezone: str, hash_id: str) -> CronSchedule:
    """A usable schedule, or CronError saying what is wrong with it."""
    expression = " ".join(expression.split())
    if len(expression) > MAX_EXPRESSION:
        raise CronError(f"cron expression longer than {MAX_EXPRESSION} characters")
    fields = expression.split(" ")
    if len(fields) not in (5, 6):
        raise CronError(f"cron expression {expression[:80]!r} must have 5 fields (minute hour "
                        "day month weekday) or 6 (seconds last)")
    if timezone and not _TIMEZONE.fullmatch(timezone):
        raise CronError(f"timezone {timezone[:80]!r} is not a time zone name such as "
                        "'Europe/Madrid' or 'UTC'")
    try:
        zone = zoneinfo.ZoneInfo(timezone) if timezone else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(f"timezone {timezone!r} is not a known time zone (an IANA name "
                        "such as 'Europe/Madrid')") from None
    del zone
    if not croniter.is_valid(expression, hash_id=hash_id.encode()):
        raise CronError(f"cron expression {expression[:80]!r} is not valid")
    schedule = CronSchedule(expression, timezone, hash_id)
    try:
        schedule.next_after(dt.datetime.now(dt.UTC))
    except (ValueError, KeyError, OverflowError) as exc:  # e.g. "0 0 30 2 *": never
        raise CronError(f"cron expression {expression[:80]!r} never fires ({exc})") from None
    return schedule


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What the ticks due in (cursor, now] become.

    `latest`: the last of them (the new cursor), None if none is due. `start`: whether
    it may start (the concurrency policy has the last word). `missed`: the ticks recorded
    as missed, with their reason (at most MAX_RECORDED); `missed_count` counts them all."""

    latest: dt.datetime | None
    start: bool
    missed: list[tuple[dt.datetime, str]]
    missed_count: int
    next_run: dt.datetime


def plan(schedule: CronSchedule, cursor: dt.datetime, now: dt.datetime,
         starting_deadline: float | None) -> TickPlan:
    """Which ticks after `cursor` and up to `now` start, and which are missed."""
    it = schedule.after(cursor)
    due: list[dt.datetime] = []
    count = 0
    while count < MAX_COUNTED:
        tick = it.get_next(dt.datetime).astimezone(dt.UTC)
        if tick > now:
            break
        count += 1
        due.append(tick)
        if len(due) > MAX_RECORDED + 1:
            del due[0]
    else:
        # An outage of more than MAX_COUNTED ticks: count that many, and the latest.
        latest = schedule.after(now).get_prev(dt.datetime).astimezone(dt.UTC)
        following = schedule.next_after(latest)
        due.append(following if following <= now else latest)  # `now` may be a tick
        count += 1
    if not due:
        return TickPlan(None, False, [], 0, schedule.next_after(cursor))
    latest = due[-1]
    missed = [(tick, f"superseded by the tick at {_shown(latest)}") for tick in due[:-1]]
    late = (now - latest).total_seconds()
    start = starting_deadline is None or late <= starting_deadline
    if not start:
        missed.append((latest, f"{late:.0f}s late, past its starting deadline of "
                               f"{starting_deadline:g}s"))
    return TickPlan(latest, start, missed, count - (1 if start else 0),
                    schedule.next_after(latest))


def _shown(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
