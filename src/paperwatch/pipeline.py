"""The job bodies: fetch → parse → store for a set of days, and for the readers' saved searches.

``fetch``, ``backfill``, ``run --once`` and the daemon's poll all come through here, so a day
is read and recorded the same way whoever asked. Each day is stored in its own transaction
as soon as it is read: a failing day is recorded as failed and the others still land. Each
saved search runs once per poll however many readers saved it, JSON API first and the search
page as the fallback, and is stored apart: a failing search never touches the days.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from yarl import URL

from paperwatch.config import Config
from paperwatch.errors import FetchError, ParseError
from paperwatch.fetch import Fetcher, api_url, day_url, search_api_url, search_page_url
from paperwatch.models import DayPage, PageSource, Paper, Validators
from paperwatch.parse import parse_daily_api, parse_daily_page, parse_search_api, parse_search_page
from paperwatch.store import DayFetch, DayState, SearchFetch, Store

log = logging.getLogger(__name__)

API_PAGE_SIZE = 100
API_MAX_PAGES = 10
# A day's list keeps growing for a day or two after it; only then is a fetch of it final.
SETTLE_DAYS = 2
PARSE_TIMEOUT = 20.0  # seconds; a real page takes milliseconds
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
    """Fetch and store every day; the fetcher's limits decide how many run at once."""

    async def one(day: dt.date) -> DayReport:
        report = await fetch_day(fetcher, store, base_url, day)
        if on_day is not None:
            on_day(report)
        return report

    return list(await asyncio.gather(*(one(day) for day in days)))


async def fetch_day(fetcher: Fetcher, store: Store, base_url: str, day: dt.date) -> DayReport:
    """Fetch one day's page (the API if the page can't be read), store it, report it."""
    url = day_url(base_url, day)
    if day > today_utc():
        return DayReport(day, url, "skipped", detail="not published yet: after today's UTC date")
    fetched = await _read_day(fetcher, base_url, day, await store.validators(url))
    new = await store.record_day(fetched)
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


async def _read_day(fetcher: Fetcher, base_url: str, day: dt.date, validators: Validators | None) -> DayFetch:
    url = day_url(base_url, day)
    try:
        response = await fetcher.get(url, validators=validators)
    except FetchError as exc:
        return DayFetch(day, url, exc.status, error=str(exc))
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


async def _read_api(fetcher: Fetcher, base_url: str, day: dt.date, url: str, status: int,
                    *, page_error: ParseError) -> DayFetch:
    papers: list[Paper] = []
    try:
        for number in range(API_MAX_PAGES):
            response = await fetcher.get(api_url(base_url, day, number))
            batch = (await _parse(parse_daily_api, response.body, day=day, url=response.url)).papers
            papers += batch
            if len(batch) < API_PAGE_SIZE:
                break
    except (FetchError, ParseError) as exc:
        return DayFetch(day, url, status, error=f"{page_error}; the API fallback failed too: {exc}")
    reason = None if papers else "the page could not be read and the API lists none"
    return DayFetch(day, url, status, page=DayPage(day, _unique(papers), PageSource.API, empty_reason=reason))


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

    async def one(query: str) -> SearchReport:
        fetched = await _read_search(fetcher, base_url, query)
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


async def _parse(parse: Callable[..., _Parsed], body: bytes, **where: Any) -> _Parsed:
    """``parse(body, **where)`` off the event loop, within PARSE_TIMEOUT.

    A real page parses in milliseconds, but markup nested tens of thousands deep takes the
    HTML parser minutes: the daemon must go on answering its watchdog and sending digests,
    and the day fails instead (the thread finishes in the background)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(parse, body, **where), PARSE_TIMEOUT)
    except TimeoutError:
        raise ParseError(where["url"], f"page has changed shape: reading it took over {PARSE_TIMEOUT:g} s") from None


def _unique(papers: Sequence[Paper]) -> tuple[Paper, ...]:
    return tuple({p.id: p for p in papers}.values())
