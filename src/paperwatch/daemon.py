"""``paperwatch run``: the long-running process that polls, matches and delivers on schedule.

The operations themselves (poll, queue, deliver, retry) are the runtime's, the same ones every
command calls; the daemon adds only the schedules, signals, reloads, the clock watch and the
watchdog. A digest whose time fell while paperwatch was not running is sent once on start,
covering the whole gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from paperwatch import collector
from paperwatch.config import Config, Reader
from paperwatch.errors import ConfigError, PaperwatchError
from paperwatch.notify import Notifier, watchdog_interval
from paperwatch.runtime import Loaded, Runtime, log_outcomes, next_digest
from paperwatch.schedule import Job, Scheduler
from paperwatch.store import DatabaseLock, utcnow
from paperwatch.words import plural

log = logging.getLogger(__name__)

STOP_DEADLINE = 20.0  # seconds in-flight work gets on SIGTERM; the units' TimeoutStopSec is longer
CONFIG_CHECK = 2.0  # seconds between looks at the config file's modification time
CLOCK_CHECK = 5.0  # seconds between looks at the wall clock (a suspended laptop's timers lag, a clock steps)
RETRY_SCHEDULE = "60s"  # how often due retries in the outbox are attempted


class Daemon:
    def __init__(self, loaded: Loaded, notifier: Notifier | None = None) -> None:
        self.loaded = loaded
        self.notifier = notifier or Notifier()
        self.scheduler = Scheduler()
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._spawned: set[asyncio.Future[None]] = set()
        self._reload_lock = asyncio.Lock()  # reloads take turns: the last to start reads the newest file
        self._runtime: Runtime | None = None
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
            async with Runtime.open(self.loaded) as runtime:
                self._runtime = runtime
                await self._serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.close()
        log.info("stopped")
        return 0

    async def _serve(self) -> None:
        await self.runtime.record_readers()
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
                log.warning("cancelled %s still running after %.0f s", plural(len(late), "job"), STOP_DEADLINE)
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
        due = await next_digest(self.runtime.store, self.config, reader)
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

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "the runtime is open while the daemon runs"
        return self._runtime

    async def poll(self) -> None:
        """Fetch the recent days (and any missed since the last good poll) and store them."""
        result = await self.runtime.poll()
        for line in result.failures():
            log.error("poll: %s", line)
        log.info("%s", result.summary)
        self.notifier.status(result.summary)

    async def digest(self, name: str) -> None:
        """Queue the reader's digest of everything matched since their last one, then deliver."""
        reader = next((r for r in self.config.readers if r.name == name), None)
        if reader is None:  # removed by a reload while this run was waiting
            return
        runtime = self.runtime
        async with runtime.poll_lock:
            pass  # a poll under way (waking from a suspend, say) finishes first: its papers belong in this digest
        async with runtime.mail_lock:
            # logged as they happen: "queued" before "sent"
            log_outcomes(await runtime.queue([reader], off_loop=True), log)
            log_outcomes(await runtime.deliver(reader.name), log)

    async def retry(self) -> None:
        """Deliver whatever in the outbox is due again (temporary failures, operator notes)."""
        async with self.runtime.mail_lock:
            log_outcomes(await self.runtime.retry(), log)

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
            problems = plural(len(exc.problems), "problem")
            log.error("config not reloaded (%s), the running config stays: %s", why, problems)
            for problem in exc.problems:
                log.error("%s", problem)
            return f"config rejected: {problems}; running the previous one"
        if loaded.config.database != self.config.database:
            log.warning("paperwatch.database changed: that takes a restart; keeping %s", self.config.database)
        await self.runtime.replace(loaded)
        self.loaded = loaded
        collector.release()  # the first config's cycles can go now
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

    def _summary(self) -> str:
        rules = sum(len(r.rules) for r in self.config.readers)
        return (f"{plural(len(self.config.readers), 'reader')}, {plural(rules, 'rule')}, "
                f"polling {self.config.source.base_url} "
                f"every {self.config.source.poll}")


def _stamp(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        status = path.stat()
        return status.st_mtime_ns, status.st_size
    return None


async def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT; a broken config exits 78 before anything starts."""
    with collector.kept():  # the config and all it compiled to, until a reload replaces it
        loaded = Loaded.of(config)
    return await Daemon(loaded).run()
