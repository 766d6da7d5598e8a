"""Time specs as the config writes them: durations (``"30m"``) and 5-field cron expressions,
and when one fires next.

The config (which checks them), the scheduler (which runs them) and ``status`` or ``run --once``
(which only ask when they fire) read them here: none of those imports another, and a command
that asks a time never loads the scheduler.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) is Sunday
_ONE_SECOND = dt.timedelta(seconds=1)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str | float) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"6h"``, ``"1d"``, ``"1.5s"`` or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        found = _DURATION.match(str(text))
        if not found:
            raise ValueError(f"{text!r} is not a duration like 90s, 30m, 6h or 1d")
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


def is_duration(text: str) -> bool:
    return _DURATION.match(text) is not None


def is_cron(spec: str) -> bool:
    return len(spec.split()) == 5


def check(spec: str) -> None:
    """Raise ValueError, saying what is wrong, unless ``spec`` is an interval or a cron expression."""
    if is_cron(spec):
        WallClockCron(spec, dt.UTC)
    else:
        parse_duration(spec)


class WallClockCron(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A crontab(5) expression on ``zone``'s wall clock, each wall-clock time firing once."""

    __slots__ = ("_parts", "_zone", "spec")

    def __init__(self, spec: str, zone: dt.tzinfo) -> None:
        minute, hour, day, month, weekday = spec.split()
        weekdays = _weekdays(weekday)
        try:
            if day.startswith("*") or weekday.startswith("*"):
                parts = [CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekdays,
                                     timezone=dt.UTC)]
            else:  # both restricted: crontab runs on a day that satisfies either
                parts = [CronTrigger(minute=minute, hour=hour, day=day, month=month, timezone=dt.UTC),
                         CronTrigger(minute=minute, hour=hour, month=month, day_of_week=weekdays, timezone=dt.UTC)]
        except ValueError as exc:
            raise ValueError(f"{spec!r} is not a valid cron expression: {exc}") from None
        self.spec, self._zone, self._parts = spec, zone, parts

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
        start = now if previous_fire_time is None else min(now, previous_fire_time + dt.timedelta(microseconds=1))
        # Wall-clock times written as UTC: a calendar without gaps or repeats to search in.
        wall = start.astimezone(self._zone).replace(tzinfo=dt.UTC)
        while True:
            times: list[dt.datetime] = [t for t in (p.get_next_fire_time(None, wall) for p in self._parts) if t]
            if not times:
                return None
            found = min(times)
            # fold=0: a skipped time lands after the gap, a repeated time means its first occurrence.
            instant = found.replace(tzinfo=self._zone)
            if instant >= start and (previous_fire_time is None or instant > previous_fire_time):
                return instant.astimezone(self._zone)
            wall = found + _ONE_SECOND  # that wall-clock time already passed (or fired): the next one

    def __str__(self) -> str:
        return f"cron[{self.spec}]"

    def __repr__(self) -> str:
        return f"<WallClockCron {self.spec!r} {self._zone}>"


def _weekdays(field: str) -> str:
    """A crontab day-of-week field (0-7, names, ranges, steps) in APScheduler's terms."""
    if field.startswith("*") and "/" not in field:
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        if (step_text and not step_text.isdigit()) or step_text == "0":
            raise ValueError(f"day of week {field!r}: {step_text!r} is not a step")
        step = int(step_text or 1)
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low, high = (_weekday(end, field) for end in span.split("-", 1))
        else:
            low = _weekday(span, field)
            high = 7 if step_text else low
        if high < low:
            raise ValueError(f"day of week {field!r}: the range {span!r} runs backwards")
        days.update(n % 7 for n in range(low, high + 1, step))
    # APScheduler's names, in its Monday-first order
    return ",".join(_CRON_DAYS[n] for n in sorted(days, key=lambda n: (n - 1) % 7))


def _weekday(text: str, field: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text in _CRON_DAYS:
        return _CRON_DAYS.index(text)
    raise ValueError(f"day of week {field!r}: {text!r} is neither 0-7 nor a day name like mon")


def trigger(spec: str, timezone: str, *, start: dt.datetime | None = None) -> BaseTrigger:
    """The trigger for a schedule string; intervals count from ``start`` (default: now)."""
    zone = zoneinfo.ZoneInfo(timezone)
    if is_cron(spec):
        return WallClockCron(spec, zone)
    return IntervalTrigger(seconds=parse_duration(spec), start_date=start, timezone=zone)


def next_time(spec: str, timezone: str, after: dt.datetime) -> dt.datetime | None:
    """When a schedule fires next, strictly after ``after`` (intervals counting from ``after``)."""
    made = trigger(spec, timezone, start=after)
    when: dt.datetime | None = made.get_next_fire_time(None, after)
    if when is not None and when <= after:  # an interval's first fire time is its start
        when = made.get_next_fire_time(when, after + dt.timedelta(microseconds=1))
    return when
