"""The one runtime every command runs on: the loaded config and the open store and fetcher,
and the operations on them (poll, queue, deliver, retry, the schedule as stored).

``paperwatch run`` adds schedules, signals, reloads and the watchdog around it; ``run --once``,
``fetch`` and ``digest`` call the same operations, so one cycle by hand catches up, prunes and
alerts exactly as the daemon does. What must survive a restart is in SQLite: the last good
poll (so the days missed while down are fetched), each reader's last digest, the outbox, and
the operator alert state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from paperwatch import collector
from paperwatch.config import Config, Reader, load_config
from paperwatch.delivery import (
    CLAIM,
    OPERATOR,
    RETRY_LONGEST,
    Outcome,
    deliver_due,
    prepare,
    queue_digests,
    queue_notice,
)
from paperwatch.digest import Templates
from paperwatch.fetch import Fetcher
from paperwatch.mail import read_password
from paperwatch.match import Matcher
from paperwatch.models import PageSource
from paperwatch.pipeline import (
    DayReport,
    SearchReport,
    day_range,
    fetch_days,
    fetch_searches,
    recent_days,
    saved_queries,
    saved_searches,
    today_utc,
)
from paperwatch.store import Store, utcnow
from paperwatch.timespec import next_time
from paperwatch.words import plural

log = logging.getLogger(__name__)

KEEP = dt.timedelta(days=90)  # how long sent mail's bytes and the fetch log are kept
# A retry further ahead than the longest backoff (or a claim) was planned by a clock running ahead.
RETRY_HORIZON = max(RETRY_LONGEST, CLAIM)
MAX_CATCH_UP_DAYS = 60
ALERT_AFTER = 3  # polls in a row with a failing day before the operator hears of it
# The state kept in the database between runs (``status`` reads it through ``schedule_state``).
LAST_POLL = "last_poll"            # the earliest day the next poll must fetch again
LAST_POLL_AT = "last_poll_at"      # when the last poll finished
LAST_POLL_SUMMARY = "last_poll_summary"
POLL_FAILURES = "poll_failures"    # polls in a row with a failing day
ALERTED = "source_alerted"         # "yes" while the operator has been told the source fails


@dataclass(frozen=True, slots=True)
class Loaded:
    """A config with its compiled rules and templates: what a reload swaps in one piece."""

    config: Config
    matcher: Matcher
    templates: Templates

    @classmethod
    def load(cls, path: Path | None) -> Loaded:
        return cls.of(load_config(path))

    @classmethod
    def of(cls, config: Config) -> Loaded:
        """Everything checked at start-up: rules, templates, the SMTP password; ConfigError if not.
        The matcher's tables are built now too, with the collector paused, like all of the config."""
        with collector.paused():
            matcher, templates = prepare(config)
            matcher.build()
        if config.mail.smtp is not None:
            read_password(config.mail.smtp)
        return cls(config, matcher, templates)


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll fetched: a report per day and per saved search, and its one-line summary."""

    days: list[DayReport]
    searches: list[SearchReport]
    summary: str

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.days) or any(r.failed for r in self.searches)

    def failures(self) -> list[str]:
        return [r.line() for r in self.days if r.failed] + [r.line() for r in self.searches if r.failed]


class Runtime:
    """The operations of every command, on one loaded config, store and fetcher."""

    def __init__(self, loaded: Loaded, store: Store, fetcher: Fetcher) -> None:
        self.loaded = loaded
        self.store = store
        self.fetcher = fetcher
        self.poll_lock = asyncio.Lock()  # a digest waits for a poll under way: its papers belong in it
        self.mail_lock = asyncio.Lock()  # one delivery run at a time over the outbox

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, loaded: Loaded) -> AsyncIterator[Runtime]:
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(await Store.open(loaded.config.database))
            runtime = cls(loaded, store, await Fetcher(loaded.config.source).__aenter__())
            stack.push_async_callback(lambda: runtime.fetcher.close())  # a reload may have replaced it
            yield runtime

    @property
    def config(self) -> Config:
        return self.loaded.config

    async def replace(self, loaded: Loaded) -> None:
        """Run on a newly loaded config from now on (the database stays: that takes a restart)."""
        if loaded.config.source != self.config.source:
            async with self.poll_lock:  # never swap the HTTP session under a running poll
                old, self.fetcher = self.fetcher, await Fetcher(loaded.config.source).__aenter__()
                await old.close()
        self.loaded = loaded
        await self.record_readers()

    async def record_readers(self) -> None:
        """A reader's digests start from the day paperwatch first served them, never from history."""
        known = await self.store.reader_states()  # one read for the readers already recorded
        for reader in self.config.readers:
            if reader.name not in known:
                await self.store.reader_state(reader.name)
        await self.store.watch_searches(saved_searches(self.config))

    # -- poll -----------------------------------------------------------------------------

    async def poll(self) -> PollResult:
        """Fetch the recent days, any missed since the last good poll, and the saved searches;
        store them, prune old records, and tell the operator when the source keeps failing."""
        async with self.poll_lock:
            config, store = self.config, self.store
            days = await self._days_to_fetch(today_utc())
            reports = await fetch_days(self.fetcher, store, config.source.base_url, days)
            searched = await fetch_searches(self.fetcher, store, config.source.base_url, saved_queries(config))
            failed = [r for r in reports if r.failed]
            # Days that failed are fetched again next time, however long ago they were.
            await store.set_state(LAST_POLL, min([r.day for r in failed], default=today_utc()).isoformat())
            result = PollResult(reports, searched, _summary(reports, searched))
            await store.set_state(LAST_POLL_AT, utcnow().isoformat())
            await store.prune(before=utcnow() - KEEP)
            await store.set_state(LAST_POLL_SUMMARY, result.summary)
            await self._source_health(result)
            return result

    async def _days_to_fetch(self, today: dt.date) -> list[dt.date]:
        days = set(recent_days(self.config.source.lookback_days, today))
        last = await self.store.get_state(LAST_POLL)
        if last is not None:
            since = max(dt.date.fromisoformat(last), today - dt.timedelta(days=MAX_CATCH_UP_DAYS))
            days.update(day_range(since, today))
        return sorted(days)

    async def _source_health(self, result: PollResult) -> None:
        """Tell the operator once when polls keep failing or the page changed shape, once when fixed."""
        store, config = self.store, self.config
        failed = result.failures()
        # A page read from the cards or the API still delivers papers, but the parser needs work.
        reshaped = ([r.line() for r in result.days if r.source in (PageSource.CARDS, PageSource.API)
                     or "changed shape" in (r.detail or "")]
                    + [r.line() for r in result.searches if "changed shape" in (r.error or "")])
        count = int(await store.get_state(POLL_FAILURES) or 0) + 1 if failed else 0
        await store.set_state(POLL_FAILURES, str(count))
        alerted = await store.get_state(ALERTED) == "yes"
        if not alerted and (reshaped or count >= ALERT_AFTER):
            why = "the page changed shape" if reshaped else f"{count} polls in a row had failing days"
            text = "\n".join([f"paperwatch cannot read {config.source.base_url} as it should: {why}.", "",
                              *dict.fromkeys(failed + reshaped), "", "You will hear once more when it recovers."])
            await self._tell_operator(f"paperwatch: source failing ({why})", text, alerted=True)
            log.warning("source failing (%s): operator told", why)
        elif alerted and not failed and not reshaped:
            await self._tell_operator("paperwatch: source recovered",
                                      f"paperwatch reads {config.source.base_url} again: the last poll had no failures.",
                                      alerted=False)
            log.info("source recovered: operator told")

    async def _tell_operator(self, subject: str, text: str, *, alerted: bool) -> None:
        """Queue the note, remember that the operator knows, and send it now rather than at the next retry."""
        await queue_notice(self.store, self.config, subject, text)
        await self.store.set_state(ALERTED, "yes" if alerted else "no")
        async with self.mail_lock:
            log_outcomes(await deliver_due(self.store, self.config, reader=OPERATOR))

    # -- mail -----------------------------------------------------------------------------

    async def queue(self, readers: Sequence[Reader], *, off_loop: bool = False) -> list[Outcome]:
        """Compose and queue each reader's digest of everything matched since their last one.

        ``off_loop``: in a worker thread on a connection of its own, so that matching (CPU work)
        never holds up the event loop: the daemon's watchdog, signals and other jobs go on.
        Each regex runs in linear time (RE2), so the work is bounded by the papers' length."""
        loaded = self.loaded
        if not off_loop:
            return await queue_digests(self.store, loaded.config, loaded.matcher, loaded.templates, readers)

        async def work() -> list[Outcome]:
            async with await Store.open(loaded.config.database) as store:
                return await queue_digests(store, loaded.config, loaded.matcher, loaded.templates, readers)

        return await asyncio.to_thread(asyncio.run, work())

    async def deliver(self, reader: str | None = None) -> list[Outcome]:
        """Send what in the outbox is due (only ``reader``'s, if given)."""
        return await deliver_due(self.store, self.config, reader=reader)

    async def retry(self) -> list[Outcome]:
        """Deliver whatever in the outbox is due again (temporary failures, operator notes)."""
        now = utcnow()
        # A retry planned while the clock ran ahead would wait for that date: due now instead.
        await self.store.pull_forward(beyond=now + RETRY_HORIZON, now=now)
        return await deliver_due(self.store, self.config)


def _summary(days: list[DayReport], searches: list[SearchReport]) -> str:
    failed = sum(r.failed for r in days)
    summary = (f"poll: {plural(len(days), 'day')}, {plural(sum(r.papers for r in days), 'paper')}, "
               f"{sum(r.new for r in days)} new, {failed} failed")
    if searches:
        summary += (f"; {plural(len(searches), 'search', 'searches')}, "
                    f"{plural(sum(r.new for r in searches), 'new result')}, "
                    f"{sum(r.failed for r in searches)} failed")
    return summary


def log_outcomes(outcomes: list[Outcome], logger: logging.Logger = log) -> None:
    """One line per outcome, under ``logger``'s name (the daemon logs its jobs' under its own)."""
    for outcome in outcomes:
        (logger.info if outcome.ok else logger.warning)("%s: %s", outcome.reader, outcome.text)


# -- the schedule as stored, for ``status`` (which runs apart from the daemon) ----------------


@dataclass(frozen=True, slots=True)
class Schedule:
    last_poll: dt.datetime | None
    last_poll_summary: str | None
    next_poll: dt.datetime | None
    failing_polls: int
    operator_alerted: bool
    next_digests: dict[str, dt.datetime | None]


async def schedule_state(store: Store, config: Config) -> Schedule:
    """When the poll and each reader's digest run next, judged from their last runs."""
    zone = config.paperwatch.timezone
    stamp = await store.get_state(LAST_POLL_AT)
    last_poll = dt.datetime.fromisoformat(stamp) if stamp else None
    digests = {reader.name: await next_digest(store, config, reader) for reader in config.readers}
    return Schedule(
        last_poll=last_poll, last_poll_summary=await store.get_state(LAST_POLL_SUMMARY),
        next_poll=next_time(config.source.poll, zone, last_poll) if last_poll else None,
        failing_polls=int(await store.get_state(POLL_FAILURES) or 0),
        operator_alerted=await store.get_state(ALERTED) == "yes", next_digests=digests)


async def next_digest(store: Store, config: Config, reader: Reader) -> dt.datetime | None:
    """When the reader's schedule next falls after their last digest (or their start)."""
    state = await store.reader_state(reader.name, record=False)  # stamps from a clock run ahead read as now
    return next_time(reader.schedule, reader.timezone or config.paperwatch.timezone,
                     state.last_digest_at or state.started_at)
