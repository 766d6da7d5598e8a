"""``paperwatch run``: the long-running process that polls, matches and delivers on schedule.

The scheduler only calls into the pipeline (fetch → store) and the outbox (queue → deliver).
What must survive a restart is in SQLite: the last successful poll (so the days missed
while down are fetched), each reader's last digest (so a missed digest is sent once, on
start, covering the whole gap), the outbox itself, and the operator alert state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

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
from paperwatch.errors import ConfigError, PaperwatchError
from paperwatch.fetch import Fetcher
from paperwatch.mail import read_password
from paperwatch.match import Matcher
from paperwatch.models import PageSource
from paperwatch.notify import Notifier, watchdog_interval
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
from paperwatch.schedule import Job, Scheduler, next_time
from paperwatch.store import DatabaseLock, Store, utcnow

log = logging.getLogger(__name__)

STOP_DEADLINE = 20.0  # seconds in-flight work gets on SIGTERM; the units' TimeoutStopSec is longer
CONFIG_CHECK = 2.0  # seconds between looks at the config file's modification time
CLOCK_CHECK = 5.0  # seconds between looks at the wall clock (a suspended laptop's timers lag, a clock steps)
KEEP = dt.timedelta(days=90)  # how long sent mail's bytes and the fetch log are kept
RETRY_SCHEDULE = "60s"  # how often due retries in the outbox are attempted
# A retry further ahead than the longest backoff (or a claim) was planned by a clock running ahead.
RETRY_HORIZON = max(RETRY_LONGEST, CLAIM)
MAX_CATCH_UP_DAYS = 60
ALERT_AFTER = 3  # polls in a row with a failing day before the operator hears of it
# Keys of the daemon's state kept in the database (``status`` reads them too).
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
        """Everything checked at start-up: rules, templates, the SMTP password; ConfigError if not."""
        matcher, templates = prepare(config)
        if config.mail.smtp is not None:
            read_password(config.mail.smtp)
        return cls(config, matcher, templates)


class Daemon:
    def __init__(self, loaded: Loaded, notifier: Notifier | None = None) -> None:
        self.loaded = loaded
        self.notifier = notifier or Notifier()
        self.scheduler = Scheduler()
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._spawned: set[asyncio.Future[None]] = set()
        self._poll_lock = asyncio.Lock()
        self._mail_lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()  # reloads take turns: the last to start reads the newest file
        self._store: Store | None = None
        self._fetcher: Fetcher | None = None
        self._config_stamp: tuple[int, int] | None = None
        self._watched: tuple[tuple[int, int] | None, bool] = (None, False)  # last stamp reloaded, by the watcher

    @property
    def config(self) -> Config:
        return self.loaded.config

    async def run(self) -> int:
        lock = DatabaseLock(self.config.database)
        lock.acquire()  # a second daemon on this database exits here, naming the first
        try:
            return await self._run()
        finally:
            lock.release()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn("reload", lambda: self.reload("SIGHUP")))
        try:
            async with await Store.open(self.config.database) as store:
                self._store = store
                try:
                    await self._serve()
                finally:
                    if self._fetcher is not None:
                        await self._fetcher.close()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.close()
        log.info("stopped")
        return 0

    async def _serve(self) -> None:
        self._fetcher = await Fetcher(self.config.source).__aenter__()
        await self._record_readers()
        missed = [r.name for r in self.config.readers if await self._missed_digest(r)]
        self.scheduler.start()
        self.scheduler.replace(self._jobs())
        self._spawn("start-up", functools.partial(self._catch_up, missed))
        helpers = [asyncio.create_task(self._watch_config()), asyncio.create_task(self._watchdog()),
                   asyncio.create_task(self._clock())]
        self.notifier.ready(self._summary())
        log.info("started: %s", self._summary())
        await self._stop.wait()
        self.notifier.stopping()
        log.info("stopping: finishing in-flight work (at most %.0f s)", STOP_DEADLINE)
        # Paused, not shut down: APScheduler's shutdown cancels the jobs under way at once.
        self.scheduler.pause()
        for helper in helpers:
            helper.cancel()
        await self._finish()
        self.scheduler.shutdown()

    def stop(self) -> None:
        self._stop.set()

    async def _finish(self) -> None:
        pending = {task for task in self._running if not task.done()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_DEADLINE)
            for task in late:
                task.cancel()
            if late:
                log.warning("cancelled %s still running after %.0f s", _count(len(late), "job"), STOP_DEADLINE)
                await asyncio.wait(late)
        await asyncio.sleep(0)  # let cancelled helpers unwind before the store closes

    # -- jobs -------------------------------------------------------------------------------

    def _jobs(self) -> list[Job]:
        config = self.config
        zone = config.paperwatch.timezone
        jobs = [Job("poll", config.source.poll, zone, self._guarded("poll", self.poll)),
                Job("retry", RETRY_SCHEDULE, "UTC", self._guarded("retry", self.retry))]
        for reader in config.readers:
            jobs.append(Job(f"digest:{reader.name}", reader.schedule, reader.timezone or zone,
                            self._guarded(f"digest for {reader.name}", functools.partial(self.digest, reader.name))))
        return jobs

    async def _catch_up(self, missed: list[str]) -> None:
        """At start: poll (fetching every day missed while down), then send the digests whose
        time fell while paperwatch was not running, one each covering the whole gap, then
        whatever the outbox still holds (a crash may have left a message unsent)."""
        await self._guarded("poll", self.poll)()
        for name in missed:
            await self._guarded(f"digest for {name}", functools.partial(self.digest, name))()
        await self._guarded("retry", self.retry)()

    async def _missed_digest(self, reader: Reader) -> bool:
        """Whether a scheduled digest fell while paperwatch was not running: then send one now."""
        assert self._store is not None
        due = await next_digest(self._store, self.config, reader)
        return due is not None and due <= utcnow()

    def _guarded(self, name: str, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``job`` as the scheduler runs it: tracked for shutdown, and failures logged, never fatal."""

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                # Only the stop cancels a job, after its deadline: what it committed stays, the rest
                # is done again at the next start.
                log.warning("%s cancelled: still running at the stop deadline", name)
            except PaperwatchError as exc:
                log.error("%s failed: %s", name, exc)
            except Exception:
                log.exception("%s failed unexpectedly; the next run is still scheduled", name)
            finally:
                self._running.discard(task)

        return run

    def _spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(self._guarded(name, work)())
        self._spawned.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._spawned.discard)

    async def poll(self) -> None:
        """Fetch the recent days (and any missed since the last good poll) and store them."""
        assert self._store is not None and self._fetcher is not None
        async with self._poll_lock:
            config, store = self.config, self._store
            today = today_utc()
            days = set(recent_days(config.source.lookback_days, today))
            last = await store.get_state(LAST_POLL)
            if last is not None:
                since = max(dt.date.fromisoformat(last), today - dt.timedelta(days=MAX_CATCH_UP_DAYS))
                days.update(day_range(since, today))
            reports = await fetch_days(self._fetcher, store, config.source.base_url, sorted(days))
            searched = await fetch_searches(self._fetcher, store, config.source.base_url, saved_queries(config))
            failed = [r for r in reports if r.failed]
            # Days that failed are fetched again next time, however long ago they were.
            await store.set_state(LAST_POLL, min([r.day for r in failed], default=today).isoformat())
            for line in [r.line() for r in failed] + [r.line() for r in searched if r.failed]:
                log.error("poll: %s", line)
            summary = (f"poll: {_count(len(reports), 'day')}, {_count(sum(r.papers for r in reports), 'paper')}, "
                       f"{sum(r.new for r in reports)} new, {len(failed)} failed")
            if searched:
                summary += (f"; {_count(len(searched), 'search', 'searches')}, "
                            f"{_count(sum(r.new for r in searched), 'new result')}, "
                            f"{sum(r.failed for r in searched)} failed")
            log.info("%s", summary)
            await store.set_state(LAST_POLL_AT, utcnow().isoformat())
            await store.prune(before=utcnow() - KEEP)
            await store.set_state(LAST_POLL_SUMMARY, summary)
            self.notifier.status(summary)
            await self._source_health(reports, searched)

    async def digest(self, name: str) -> None:
        """Queue the reader's digest of everything matched since their last one, then deliver."""
        assert self._store is not None
        loaded = self.loaded
        reader = next((r for r in loaded.config.readers if r.name == name), None)
        if reader is None:  # removed by a reload while this run was waiting
            return
        async with self._poll_lock:
            pass  # a poll under way (waking from a suspend, say) finishes first: its papers belong in this digest
        async with self._mail_lock:
            # logged as they happen: "queued" before "sent"
            _log_outcomes(await self._queue_off_loop(loaded, reader))
            _log_outcomes(await deliver_due(self._store, loaded.config, reader=reader.name))

    async def _queue_off_loop(self, loaded: Loaded, reader: Reader) -> list[Outcome]:
        """Compose and queue a digest in a worker thread, on a connection of its own.

        Matching every paper against a reader's rules is CPU work: off the loop, the watchdog,
        the signals and the other jobs go on meanwhile. Each regex runs in linear time (RE2), so
        the work is bounded by the papers' length; digests take turns (the mail lock), so the
        matcher's caches are never used by two threads at once."""
        database = self.config.database

        async def work() -> list[Outcome]:
            async with await Store.open(database) as store:
                return await queue_digests(store, loaded.config, loaded.matcher, loaded.templates, [reader])

        return await asyncio.to_thread(asyncio.run, work())

    async def retry(self) -> None:
        """Deliver whatever in the outbox is due again (temporary failures, operator notes)."""
        assert self._store is not None
        async with self._mail_lock:
            now = utcnow()
            # A retry planned while the clock ran ahead would wait for that date: due now instead.
            await self._store.pull_forward(beyond=now + RETRY_HORIZON, now=now)
            _log_outcomes(await deliver_due(self._store, self.config))

    async def _source_health(self, days: list[DayReport], searches: list[SearchReport]) -> None:
        """Tell the operator once when polls keep failing or the page changed shape, once when fixed."""
        assert self._store is not None
        store, config = self._store, self.config
        failed = [r.line() for r in days if r.failed] + [r.line() for r in searches if r.failed]
        # A page read from the cards or the API still delivers papers, but the parser needs work.
        reshaped = ([r.line() for r in days if r.source in (PageSource.CARDS, PageSource.API)
                     or "changed shape" in (r.detail or "")]
                    + [r.line() for r in searches if "changed shape" in (r.error or "")])
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
        assert self._store is not None
        await queue_notice(self._store, self.config, subject, text)
        await self._store.set_state(ALERTED, "yes" if alerted else "no")
        async with self._mail_lock:
            _log_outcomes(await deliver_due(self._store, self.config, reader=OPERATOR))

    # -- reload -------------------------------------------------------------------------------

    async def reload(self, why: str) -> None:
        """Re-read the config; a valid one takes effect for the next jobs, a broken one changes nothing.

        Reloads take turns, each reading the file when its turn comes: a slow one started first
        can never finish last with the older file. READY=1 follows RELOADING=1 whatever happens."""
        async with self._reload_lock:
            self.notifier.reloading()
            status = "config not reloaded: running the previous one"
            try:
                status = await self._reload(why)
            finally:
                self.notifier.ready(status)

    async def _reload(self, why: str) -> str:
        # An edit followed by SIGHUP is one change, whichever of the file watcher and the signal
        # comes first: the other one does not reload it again.
        stamp = _stamp(self.config.path) if self.config.path else None
        if why == "SIGHUP" and stamp is not None and self._watched == (stamp, True):
            self._watched = (stamp, False)
            log.info("config already reloaded for this change (SIGHUP)")
            return self._summary()
        self._config_stamp, self._watched = stamp, (stamp, why != "SIGHUP")
        try:
            loaded = await asyncio.to_thread(Loaded.load, self.config.path)
        except ConfigError as exc:
            count = _count(len(exc.problems), "problem")
            log.error("config not reloaded (%s), the running config stays: %s", why, count)
            for problem in exc.problems:
                log.error("%s", problem)
            return f"config rejected: {count}; running the previous one"
        if loaded.config.database != self.config.database:
            log.warning("paperwatch.database changed: that takes a restart; keeping %s", self.config.database)
        if loaded.config.source != self.config.source:
            async with self._poll_lock:  # never swap the HTTP session under a running poll
                old, self._fetcher = self._fetcher, await Fetcher(loaded.config.source).__aenter__()
                if old is not None:
                    await old.close()
        self.loaded = loaded
        await self._record_readers()
        self.scheduler.replace(self._jobs())
        log.info("config reloaded (%s): %s", why, self._summary())
        return self._summary()

    async def _watch_config(self) -> None:
        path = self.config.path
        if path is None:
            return
        self._config_stamp = _stamp(path)
        while True:
            await asyncio.sleep(CONFIG_CHECK)
            if _stamp(path) != self._config_stamp:
                await self._guarded("reload", lambda: self.reload("file changed"))()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 while the event loop keeps time; a stalled loop stops the pings."""
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            started = time.monotonic()
            await asyncio.sleep(interval)
            if time.monotonic() - started < 2 * interval:
                self.notifier.watchdog()

    async def _clock(self) -> None:
        """Timers run on the monotonic clock, which stops while a laptop sleeps: a schedule that
        fell during a suspend would wait out the rest of its timer after waking. Looking at the
        wall clock now and then runs it on waking instead (once, however many runs it missed)."""
        while True:
            wall, steady = time.time(), time.monotonic()
            await asyncio.sleep(CLOCK_CHECK)
            slept = (time.time() - wall) - (time.monotonic() - steady)
            if slept < -CLOCK_CHECK:
                self._replan(-slept)
            elif slept > CLOCK_CHECK:
                log.info("the clock jumped %.0f s (a suspend?): running whatever fell due meanwhile", slept)
            self.scheduler.wakeup()

    def _replan(self, back: float) -> None:
        """The wall clock stepped back (corrected after running ahead, say): every next run was
        planned on the wrong date, days or years away. Plan them again from now, polling at once
        (the last poll was at most one interval ago, by the steady clock)."""
        log.warning("the clock stepped back %.0f s: planning every job again from now", back)
        jobs = self._jobs()
        self.scheduler.replace([dataclasses.replace(job, now=job.name == "poll") for job in jobs])

    async def _record_readers(self) -> None:
        """A reader's digests start from the day paperwatch first served them, never from history."""
        assert self._store is not None
        for reader in self.config.readers:
            await self._store.reader_state(reader.name)
        await self._store.watch_searches(saved_searches(self.config))

    def _summary(self) -> str:
        rules = sum(len(r.rules) for r in self.config.readers)
        return (f"{_count(len(self.config.readers), 'reader')}, {_count(rules, 'rule')}, "
                f"polling {self.config.source.base_url} "
                f"every {self.config.source.poll}")


@dataclass(frozen=True, slots=True)
class Schedule:
    """The daemon's schedule as the database shows it, for ``status`` (which runs apart from it)."""

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
    state = await store.reader_state(reader.name, record=False)
    return next_time(reader.schedule, reader.timezone or config.paperwatch.timezone,
                     state.last_digest_at or state.started_at)


def _count(number: int, word: str, plural: str | None = None) -> str:
    return f"{number} {word if number == 1 else plural or word + 's'}"


def _log_outcomes(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        (log.info if outcome.ok else log.warning)("%s: %s", outcome.reader, outcome.text)


def _stamp(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        status = path.stat()
        return status.st_mtime_ns, status.st_size
    return None


async def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT; a broken config exits 78 before anything starts."""
    return await Daemon(Loaded.of(config)).run()
