"""When things run: config schedules → APScheduler 3 triggers and jobs, behind one small class.

A schedule is an interval (``"30m"``) or a 5-field cron expression in a time zone, read the
way crontab(5) reads it: day-of-week 0 and 7 are Sunday (APScheduler 3 alone counts from
Monday), and when both day-of-month and day-of-week are restricted either one suffices.

Cron schedules follow the zone's wall clock, and each wall-clock time fires once: ``0 8 * * *``
runs once per calendar day at 08:00 local time across daylight-saving changes, a time the
spring change skips runs at the same moment shifted forward (02:30 → 03:30), and a time the
autumn change repeats runs only the first time. (APScheduler's own CronTrigger fires the
repeated hour twice and then keeps returning the same instant, which would hang the
scheduler loop: it only ever sees UTC here, where no hour repeats.)

Jobs never overlap themselves, and a run missed while the process was busy or the machine
asleep is made up once, not once per miss.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from paperwatch.config import parse_duration

log = logging.getLogger(__name__)
# APScheduler says "Running job ..." at INFO on every run: our jobs log what matters themselves.
logging.getLogger("apscheduler").setLevel(logging.WARNING)

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) is Sunday
_ONE_SECOND = dt.timedelta(seconds=1)


def is_cron(spec: str) -> bool:
    return len(spec.split()) == 5


def check(spec: str) -> None:
    """Raise ValueError, saying what is wrong, unless ``spec`` is an interval or a cron expression."""
    if is_cron(spec):
        WallClockCron(spec, dt.UTC)
    else:
        parse_duration(spec)


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


@dataclass(frozen=True, slots=True)
class Job:
    """A named schedule and the coroutine it runs; ``now`` also runs it at once."""

    name: str
    spec: str
    timezone: str
    run: Callable[[], Awaitable[None]]
    now: bool = False


class Scheduler:
    """The process's one scheduler. ``replace`` swaps the whole job set (a reload)."""

    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC, job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": None})

    def start(self) -> None:
        self._scheduler.start()

    def pause(self) -> None:
        """Start nothing new; what runs goes on."""
        if self._scheduler.running:
            self._scheduler.pause()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def replace(self, jobs: list[Job]) -> None:
        self._scheduler.remove_all_jobs()
        for job in jobs:
            now = dt.datetime.now(dt.UTC)
            self._scheduler.add_job(job.run, trigger(job.spec, job.timezone), id=job.name, name=job.name,
                                    **({"next_run_time": now} if job.now else {}))
            log.debug("job %s: %s (%s)", job.name, job.spec, job.timezone)

    def wakeup(self) -> None:
        """Run whatever is due now (the scheduler otherwise sleeps until its next timer)."""
        if self._scheduler.running:
            self._scheduler.wakeup()

    def next_runs(self) -> dict[str, dt.datetime | None]:
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}
