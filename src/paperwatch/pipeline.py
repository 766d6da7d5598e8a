"""The job bodies: fetch → parse → store for a set of days, and for the readers' saved searches.

``fetch``, ``backfill``, ``run --once`` and the daemon's poll all come through here, so a day
is read and recorded the same way whoever asked. A page that can't be had (down, rate
limited, a bot challenge, a changed shape) is read from ``/api/daily_papers`` instead, every
page of it; a day neither gives papers for is a failed day, fetched again later. Days read
close together are stored in one transaction, each reported once committed: a failing day is
recorded as failed and the others still land. Each saved search runs once per poll however
many readers saved it, JSON API first and the search page as the fallback, and is stored
apart: a failing search never touches the days.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from yarl import URL

from paperwatch.config import Config
from paperwatch.errors import FetchError, ParseError, StoreError
from paperwatch.fetch import Fetcher, api_url, day_url, paper_api_url, search_api_url, search_page_url
from paperwatch.models import DayFetch, DayPage, DayState, PageSource, Paper, SearchFetch, Validators
from paperwatch.parse import (
    parse_daily_api_page,
    parse_daily_page,
    parse_paper_api,
    parse_search_api,
    parse_search_page,
)
from paperwatch.store import Store, merge

log = logging.getLogger(__name__)

API_PAGE_SIZE = 100
API_MAX_PAGES = 10
# A day's list keeps growing for a day or two after it; only then is a fetch of it final.
SETTLE_DAYS = 2
PARSE_TIMEOUT = 20.0  # seconds; a real page takes milliseconds
# Days read together are stored together (see _DayWriter): up to BATCH_DAYS in a transaction,
# the first of them waiting at most BATCH_WAIT seconds for the others.
BATCH_DAYS = 32
BATCH_WAIT = 0.5
_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True, slots=True)
class DayReport:
    """What happened to one day, for the one-line summary users see."""

    day: dt.date
    url: str
    outcome: str  # "ok" | "empty" | "not_modified" | "failed" | "skipped"
    papers: int = 0
    new: int = 0
    source: PageSource | None = None
    detail: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    def line(self) -> str:
        if self.outcome == "ok":
            via = f" (read from the {self.source.value})" if self.source in (PageSource.CARDS, PageSource.API) else ""
            return f"{self.day}: {self.papers} paper{'' if self.papers == 1 else 's'}, {self.new} new{via}"
        if self.outcome == "empty":
            return f"{self.day}: no papers ({self.detail})"
        if self.outcome == "not_modified":
            return f"{self.day}: unchanged since the last fetch"
        if self.outcome == "skipped":
            return f"{self.day}: skipped ({self.detail})"
        return f"{self.day}: failed: {self.detail}"


_SOURCES = {PageSource.JSON: "the page's JSON", PageSource.CARDS: "the page's cards (no JSON on it)",
            PageSource.API: "the API (the page could not be read)"}


def today_utc() -> dt.date:
    """The site buckets days in UTC, and its API refuses dates after today's UTC date."""
    return dt.datetime.now(dt.UTC).date()


def recent_days(lookback_days: int, today: dt.date | None = None) -> list[dt.date]:
    """The days a poll re-fetches: today (UTC) and the ``lookback_days - 1`` before it."""
    end = today or today_utc()
    return [end - dt.timedelta(days=n) for n in range(lookback_days)]


def day_range(since: dt.date, until: dt.date) -> list[dt.date]:
    return [since + dt.timedelta(days=n) for n in range((until - since).days + 1)]


def is_settled(state: DayState | None) -> bool:
    """True when the day was read cleanly at a time it could no longer grow."""
    if state is None or state.ok_at is None or state.outcome not in ("ok", "empty"):
        return False
    return state.ok_at.date() >= state.day + dt.timedelta(days=SETTLE_DAYS)


async def fetch_days(fetcher: Fetcher, store: Store, base_url: str, days: Iterable[dt.date],
                     *, on_day: Callable[[DayReport], None] | None = None) -> list[DayReport]:
    """Fetch and store every day; the fetcher's limits decide how many run at once. A day is
    reported once it is committed."""
    days = list(days)
    writer = _DayWriter(store, len(days))
    known = await store.validators_of(day_url(base_url, day) for day in days)

    async def one(day: dt.date) -> DayReport:
        report = await _fetch_day(fetcher, writer, base_url, day, known.get(day_url(base_url, day)))
        if on_day is not None:
            on_day(report)
        return report

    return list(await asyncio.gather(*(one(day) for day in days)))


async def _fetch_day(fetcher: Fetcher, writer: _DayWriter, base_url: str, day: dt.date,
                     validators: Validators | None) -> DayReport:
    """Fetch one day's page (the API if the page can't be read), store it, report it."""
    url = day_url(base_url, day)
    if day > today_utc():
        writer.skip()
        return DayReport(day, url, "skipped", detail="not published yet: after today's UTC date")
    try:
        fetched = await _read_day(fetcher, base_url, day, validators)
    except BaseException:
        writer.skip()
        raise
    new = await writer.store(fetched)
    if fetched.error is not None:
        # The caller reports it to the user (a summary line, or the daemon's log): say it once.
        log.info("%s", fetched.error)
        return DayReport(day, url, "failed", detail=fetched.error)
    if fetched.not_modified or fetched.page is None:
        return DayReport(day, url, "not_modified")
    page = fetched.page
    log.info("%s: read from %s", day, _SOURCES.get(page.source, page.source.value))
    if page.empty_reason is not None:
        return DayReport(day, url, "empty", source=page.source, detail=page.empty_reason)
    return DayReport(day, url, "ok", papers=len(page.papers), new=new, source=page.source)


class _DayWriter:
    """Stores the days one ``fetch_days`` reads, several to a transaction when they come quickly.

    A commit costs about as much for one day as for thirty: the full-text index writes a
    segment per commit and merges them later, and every table's last pages are written
    again. A backfill at full pace reads dozens of days a second, so the first day of a group
    waits until BATCH_DAYS are read, or no other day is still being read, or BATCH_WAIT has
    passed, and then stores the group in one transaction. Each day is reported only once it
    is committed: a crash loses no day reported as stored, only days the next run fetches again.
    """

    def __init__(self, store: Store, days: int) -> None:
        self._store = store
        self._reading = days  # the days neither handed over nor skipped yet
        self._group: list[tuple[DayFetch, asyncio.Future[int]]] = []
        self._full = asyncio.Event()

    def skip(self) -> None:
        """One of the days has nothing to store."""
        self._reading -= 1
        self._close_if_ready()

    async def store(self, fetched: DayFetch) -> int:
        """Store the day with its group; how many of its papers were new."""
        stored: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        group, full = self._group, self._full
        group.append((fetched, stored))
        self._reading -= 1
        self._close_if_ready()
        if len(group) == 1:  # the group's first day writes it
            try:
                if not full.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(full.wait(), BATCH_WAIT)
                    self._close(group)
                await self._write(group)
            except BaseException as exc:  # cancelled, or the store failed as a whole: so do the others
                self._close(group)
                for _, other in group[1:]:
                    if not other.done():
                        other.cancel() if isinstance(exc, asyncio.CancelledError) else other.set_exception(exc)
                raise
        return await stored

    def _close_if_ready(self) -> None:
        if self._group and (len(self._group) >= BATCH_DAYS or self._reading == 0):
            self._close(self._group)

    def _close(self, group: list[tuple[DayFetch, asyncio.Future[int]]]) -> None:
        """Let ``group`` be written; the days read from now on make another."""
        if self._group is group:
            self._full.set()
            self._group, self._full = [], asyncio.Event()

    async def _write(self, group: list[tuple[DayFetch, asyncio.Future[int]]]) -> None:
        results = await self._store.record_days([fetched for fetched, _ in group])
        for (_, stored), result in zip(group, results, strict=True):
            if stored.done():
                continue
            if isinstance(result, StoreError):
                stored.set_exception(result)
            else:
                stored.set_result(result)


async def _read_day(fetcher: Fetcher, base_url: str, day: dt.date, validators: Validators | None) -> DayFetch:
    url = day_url(base_url, day)
    try:
        response = await fetcher.get(url, validators=validators)
    except FetchError as exc:
        if not _api_may_help(exc):
            return DayFetch(day, url, exc.status, error=str(exc))
        log.warning("%s; trying the API instead", exc)
        return await _read_api(fetcher, base_url, day, url, exc.status, page_error=exc)
    if response.not_modified:
        return DayFetch(day, url, response.status, not_modified=True)
    final = URL(response.final_url)
    if final.path.rstrip("/") != URL(url).path:
        page = DayPage(day, (), PageSource.JSON, empty_reason=f"the site redirected to {final.path}")
        return DayFetch(day, url, response.status, page=page)
    try:
        page = await _parse(parse_daily_page, response.body, day=day, url=url)
    except ParseError as exc:
        log.warning("%s; trying the API instead", exc)
        return await _read_api(fetcher, base_url, day, url, response.status, page_error=exc)
    return DayFetch(day, url, response.status, page=page, validators=response.validators)


def _api_may_help(exc: FetchError) -> bool:
    """Whether the page failed the way the API may not: the site down, slow, cut off, rate
    limiting or checking for bots (not a 404 or a refused redirect)."""
    return exc.status is None or exc.status >= 500 or exc.status in (403, 429)


async def _read_api(fetcher: Fetcher, base_url: str, day: dt.date, url: str, status: int | None,
                    *, page_error: FetchError | ParseError) -> DayFetch:
    """The day from ``/api/daily_papers``; an empty answer is a failed day, never "no papers":
    it may as well be the API's own trouble, and the day must be read again."""
    try:
        papers = await _api_papers(fetcher, base_url, day)
    except (FetchError, ParseError) as exc:
        return DayFetch(day, url, status, error=f"{page_error}; the API fallback failed too: {exc}")
    if not papers:
        return DayFetch(day, url, status, error=f"{page_error}; the API lists no papers for {day} either")
    return DayFetch(day, url, status, page=DayPage(day, papers, PageSource.API))


async def _api_papers(fetcher: Fetcher, base_url: str, day: dt.date) -> tuple[Paper, ...]:
    """Every page of the day's API listing: ``limit=100``, then the ``Link: rel="next"`` target
    or the next ``p``, until a page lists fewer than it could."""
    papers: list[Paper] = []
    page_url = api_url(base_url, day, 0)
    for number in range(1, API_MAX_PAGES + 1):
        response = await fetcher.get(page_url)
        batch, listed = await _parse(parse_daily_api_page, response.body, day=day, url=page_url)
        papers += batch.papers
        if listed == 0 or (listed < API_PAGE_SIZE and response.next_url is None):
            break
        page_url = response.next_url or api_url(base_url, day, number)
    return _unique(papers)


@dataclass(frozen=True, slots=True)
class SearchReport:
    """What happened to one saved search's query at one poll."""

    query: str
    url: str
    results: int = 0
    new: int = 0
    source: str | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def line(self) -> str:
        if self.error is not None:
            return f"search {self.query!r}: failed: {self.error}"
        via = " (read from the search page)" if self.source == "page" else ""
        return f"search {self.query!r}: {self.results} result{'' if self.results == 1 else 's'}, {self.new} new{via}"


def saved_searches(config: Config) -> list[tuple[str, str]]:
    """Every (reader, query) the config saves."""
    return [(reader.name, search.query) for reader in config.readers for search in reader.searches]


def saved_queries(config: Config) -> list[str]:
    """The distinct queries to run: each once per poll, however many readers saved it."""
    return sorted({query for _reader, query in saved_searches(config)})


async def fetch_searches(fetcher: Fetcher, store: Store, base_url: str, queries: Iterable[str]) -> list[SearchReport]:
    """Run each distinct query once and store its results; the fetcher's limits pace them."""

    # This poll's /api/papers/{id} answers, shared by every query: each paper is asked once.
    details: dict[str, asyncio.Task[Paper | None]] = {}

    async def one(query: str) -> SearchReport:
        fetched = await _complete(fetcher, store, base_url, await _read_search(fetcher, base_url, query), details)
        new = await store.record_search(fetched)
        if fetched.error is not None:
            log.info("%s", fetched.error)
        return SearchReport(query, fetched.url, len(fetched.papers), new, fetched.source, fetched.error)

    return list(await asyncio.gather(*(one(query) for query in sorted(set(queries)))))


async def _read_search(fetcher: Fetcher, base_url: str, query: str) -> SearchFetch:
    """The API's results; the search page's when the API fails or answers in a shape we don't know."""
    url = search_api_url(base_url, query)
    try:
        response = await fetcher.get(url)
        papers = await _parse(parse_search_api, response.body, url=url)
        return SearchFetch(query, url, response.status, papers, source="api")
    except (FetchError, ParseError) as exc:
        log.warning("%s; trying the search page instead", exc)
        api_error = exc
    page = search_page_url(base_url, query)
    try:
        response = await fetcher.get(page)
        papers = await _parse(parse_search_page, response.body, url=page)
        return SearchFetch(query, page, response.status, papers, source="page")
    except (FetchError, ParseError) as exc:
        return SearchFetch(query, page, getattr(exc, "status", None),
                           error=f"{exc}; the API failed too: {api_error}")


async def _complete(fetcher: Fetcher, store: Store, base_url: str, fetched: SearchFetch,
                    details: dict[str, asyncio.Task[Paper | None]]) -> SearchFetch:
    """Results that came flat (id and title) with their details from ``/api/papers/{id}``,
    unless a complete record is stored already. A paper whose details can't be had keeps its
    title and link, and is stored so."""
    flat = [p.id for p in fetched.papers if not p.complete]
    if not flat:
        return fetched
    stored = {p.id for p in await store.papers_by_id(flat) if p.complete and p.summary}
    wanted = [paper_id for paper_id in flat if paper_id not in stored]
    for paper_id in wanted:
        if paper_id not in details:
            details[paper_id] = asyncio.ensure_future(_paper_details(fetcher, base_url, paper_id))
    found = dict(zip(wanted, await asyncio.gather(*(details[i] for i in wanted)), strict=True))
    papers = tuple(merge(p, detail) if (detail := found.get(p.id)) is not None else p for p in fetched.papers)
    return replace(fetched, papers=papers)


async def _paper_details(fetcher: Fetcher, base_url: str, paper_id: str) -> Paper | None:
    url = paper_api_url(base_url, paper_id)
    try:
        response = await fetcher.get(url)
        paper = await _parse(parse_paper_api, response.body, url=url)
    except (FetchError, ParseError) as exc:
        log.warning("%s; keeping the search result's title and link", exc)
        return None
    if paper.id != paper_id:
        log.warning("%s: describes %s instead; keeping the search result's title and link", url, paper.id)
        return None
    return paper


async def _parse(parse: Callable[..., _Parsed], body: bytes, **where: Any) -> _Parsed:
    """``parse(body, **where)`` off the event loop, within PARSE_TIMEOUT.

    A real page parses in milliseconds; the parser refuses markup nested deep enough to take
    it long (see ``check_nesting``). Should another shape still take it long, the day fails
    at the timeout, and the parse runs on in its daemon thread, which is dropped from the
    reusable ones: it never holds up a later parse, nor the process's exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_Parsed] = loop.create_future()

    def work() -> None:
        try:
            result = parse(body, **where)
        except BaseException as exc:
            _settle(loop, done, None, exc)
        else:
            _settle(loop, done, result, None)

    worker = _ParseThread.take()
    worker.run(work)
    try:
        return await asyncio.wait_for(done, PARSE_TIMEOUT)
    except TimeoutError:
        worker.abandon()
        raise ParseError(where["url"], f"page has changed shape: reading it took over {PARSE_TIMEOUT:g} s") from None


class _ParseThread:
    """A daemon thread that runs one parse at a time and then waits for the next, so a backfill
    of 600 days no longer starts 600 threads. A thread whose parse overran is abandoned: it
    finishes (or not) on its own and is never handed another page."""

    KEEP = 4  # idle threads kept; more pages at once than that start threads of their own
    _idle: ClassVar[list[_ParseThread]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._abandoned = False
        threading.Thread(target=self._loop, name="paperwatch-parse", daemon=True).start()

    @classmethod
    def take(cls) -> _ParseThread:
        with cls._lock:
            if cls._idle:
                return cls._idle.pop()
        return cls()

    def run(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def abandon(self) -> None:
        with self._lock:
            if self not in self._idle:  # it finished meanwhile, and may serve again
                self._abandoned = True

    def _loop(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                if self._abandoned or len(self._idle) >= self.KEEP:
                    return
                self._idle.append(self)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[_Parsed], result: _Parsed | None,
            error: BaseException | None) -> None:
    """Hand a parse's outcome to the loop, if anyone still waits for it."""

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with an error

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(settle)


def _unique(papers: Sequence[Paper]) -> tuple[Paper, ...]:
    return tuple({p.id: p for p in papers}.values())
