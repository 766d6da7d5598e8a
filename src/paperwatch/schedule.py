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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from paperwatch.timespec import trigger

log = logging.getLogger(__name__)
# APScheduler says "Running job ..." at INFO on every run: our jobs log what matters themselves.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


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
