"""Schedules: one run per calendar day across daylight-saving changes, never overlapping."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import pytest

from paperwatch.schedule import Job, Scheduler
from paperwatch.timespec import next_time, trigger

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def fire_times(spec: str, zone: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    made, times, previous, now = trigger(spec, zone, start=start), [], None, start
    while (when := made.get_next_fire_time(previous, now)) is not None and when < end:
        times.append(when)
        previous, now = when, when + dt.timedelta(microseconds=1)
    return times


@pytest.mark.parametrize("spec, local_times", [
    ("0 8 * * *", ["08:00"] * 7),
    ("30 2 * * *", ["02:30"] * 7),  # on the spring day 02:30 does not exist, on the autumn day it happens twice
])
@pytest.mark.parametrize("week", [dt.datetime(2027, 3, 24, tzinfo=dt.UTC), dt.datetime(2027, 10, 27, tzinfo=dt.UTC)],
                         ids=["spring forward", "fall back"])
def test_a_daily_cron_runs_once_per_calendar_day_across_dst(spec: str, local_times: list[str],
                                                            week: dt.datetime) -> None:
    times = fire_times(spec, "Europe/Berlin", week, week + dt.timedelta(days=7))
    days = [t.astimezone(BERLIN).date() for t in times]
    assert len(days) == 7 and len(set(days)) == 7
    clock = [t.astimezone(BERLIN).strftime("%H:%M") for t in times]
    assert clock == local_times or (spec.startswith("30 2") and clock.count("03:30") <= 1
                                    and clock.count("02:30") >= 6)


def test_next_time_for_intervals_and_cron() -> None:
    after = dt.datetime(2027, 1, 1, 7, 0, tzinfo=dt.UTC)
    assert next_time("30m", "UTC", after) == after + dt.timedelta(minutes=30)
    assert next_time("0 8 * * 1-5", "Europe/Berlin", after) == dt.datetime(2027, 1, 1, 7, 0, tzinfo=dt.UTC) + \
        dt.timedelta(days=3)  # 1 Jan 2027 is a Friday: 08:00 Berlin was exactly `after`; next is Monday


@pytest.mark.parametrize("spec, fires_on", [
    ("0 8 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),  # crontab numbering: 0 and 7 are Sunday
    ("0 8 * * 0", ["Sun"]),
    ("0 8 * * 7", ["Sun"]),
    ("0 8 * * 5-7", ["Fri", "Sat", "Sun"]),
    ("0 8 * * sat,sun", ["Sat", "Sun"]),
    ("0 8 * * MON-FRI", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("0 8 * * */2", ["Sun", "Tue", "Thu", "Sat"]),
    ("0 8 4 * 1", ["Mon", "Thu"]),  # both restricted: the 4th (a Thursday) or any Monday, as crontab does
])
def test_cron_reads_day_of_week_as_crontab_does(spec: str, fires_on: list[str]) -> None:
    week = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)  # a Monday
    times = fire_times(spec, "UTC", week, week + dt.timedelta(days=7))
    assert sorted(t.strftime("%a") for t in times) == sorted(fires_on)


@pytest.mark.parametrize("spec, problem", [
    ("0 8 * * 8", "'8' is neither 0-7 nor a day name"),
    ("0 8 * * fri-mon", "runs backwards"),
    ("61 8 * * *", "not a valid cron expression"),
    ("0 8 * *", "neither an interval"),
    ("8am", "neither an interval"),
])
def test_a_bad_schedule_says_what_is_wrong(spec: str, problem: str) -> None:
    from paperwatch.config import Reader

    with pytest.raises(ValueError, match=problem):
        Reader(name="r", email="r@example.org", schedule=spec)


async def test_the_scheduler_survives_the_autumn_hour_that_happens_twice() -> None:
    """APScheduler's own CronTrigger returns the repeated 02:30 forever, hanging its loop."""
    made = trigger("30 2 * * *", "Europe/Berlin")
    second_pass = dt.datetime(2027, 10, 31, 1, 30, tzinfo=dt.UTC)  # 02:30 CET, the hour's second time round
    after = made.get_next_fire_time(second_pass, second_pass)
    assert after == dt.datetime(2027, 11, 1, 1, 30, tzinfo=dt.UTC)


async def test_jobs_never_overlap_and_a_failing_run_does_not_stop_the_next() -> None:
    runs: list[int] = []
    running = 0
    second_done = asyncio.Event()

    async def slow() -> None:
        nonlocal running
        running += 1
        runs.append(running)
        # Long enough that several 0.1 s ticks fall while it runs: they must not start another.
        await asyncio.sleep(0.35)
        running -= 1
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        second_done.set()

    scheduler = Scheduler()
    scheduler.start()

    async def guarded() -> None:
        try:
            await slow()
        except RuntimeError:
            pass

    scheduler.replace([Job("slow", "0.1s", "UTC", guarded, now=True)])
    await asyncio.wait_for(second_done.wait(), timeout=30)
    scheduler.shutdown()
    assert len(runs) >= 2 and max(runs) == 1
