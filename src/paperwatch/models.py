"""The plain values passed between stages: fetch → parse → store → match → digest → mail."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum

HF_SITE = "https://huggingface.co"


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper as the site described it on one fetch; ``None`` where the site said nothing.

    ``complete`` is false when the paper came from the visible cards, which lack the
    abstract, links and all but the first few authors: such a record may add to what is
    stored but never replaces it.
    """

    id: str
    title: str
    summary: str | None = None
    authors: tuple[str, ...] = ()
    daily_date: dt.date | None = None
    published_at: str | None = None
    upvotes: int | None = None
    comments: int | None = None
    github_repo: str | None = None
    github_stars: int | None = None
    project_page: str | None = None
    organization: str | None = None
    ai_keywords: tuple[str, ...] = ()
    complete: bool = True
    ai_summary: str | None = None  # the site's own one-sentence summary, machine-written

    @property
    def url(self) -> str:
        return f"{HF_SITE}/papers/{self.id}"

    def as_json(self) -> dict[str, object]:
        """The ``papers --json`` shape of interface.md; missing values are None."""
        return {
            "id": self.id,
            "title": self.title,
            "summary": self.summary,
            "authors": list(self.authors),
            "daily_date": self.daily_date.isoformat() if self.daily_date else None,
            "published_at": self.published_at,
            "upvotes": self.upvotes,
            "comments": self.comments,
            "github_repo": self.github_repo,
            "github_stars": self.github_stars,
            "project_page": self.project_page,
            "organization": self.organization,
            "ai_keywords": list(self.ai_keywords),
            "ai_summary": self.ai_summary,
            "url": self.url,
        }


class PageSource(str, Enum):
    """Where a day's papers were read from."""

    JSON = "json"      # the page's hydration JSON
    CARDS = "cards"    # the page's visible <article> cards (JSON missing)
    API = "api"        # /api/daily_papers, the fallback when the page can't be read


@dataclass(frozen=True, slots=True)
class DayPage:
    """What one day's page (or API answer) said.

    ``empty_reason`` is set when the site answered for another day than the one asked
    for (weekends, holidays, redirects): that day has no papers, whatever the page lists.
    """

    day: dt.date
    papers: tuple[Paper, ...]
    source: PageSource
    empty_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Validators:
    """HTTP cache validators remembered for one URL."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """A finished HTTP exchange: ``not_modified`` means 304 and an empty body."""

    url: str
    final_url: str
    status: int
    body: bytes
    validators: Validators = field(default_factory=Validators)
    next_url: str | None = None  # a ``Link: <...>; rel="next"`` within the site, vetted

    @property
    def not_modified(self) -> bool:
        return self.status == 304


# -- what the stages hand the store, and what it hands back ----------------------------------


@dataclass(frozen=True, slots=True)
class DayFetch:
    """The outcome of fetching one day, as the pipeline hands it over to be recorded.

    Exactly one of ``page`` (read and parsed), ``not_modified`` (304) or ``error`` is set.
    ``validators`` are stored only with a page read from that URL.
    """

    day: dt.date
    url: str
    status: int | None
    page: DayPage | None = None
    not_modified: bool = False
    error: str | None = None
    validators: Validators | None = None


@dataclass(frozen=True, slots=True)
class DayState:
    """What the store knows of one day: its last outcome and when it last fetched cleanly."""

    day: dt.date
    outcome: str
    papers: int
    detail: str | None
    checked_at: dt.datetime
    ok_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One row of the fetch log."""

    at: dt.datetime
    day: dt.date | None
    url: str
    status: int | None
    outcome: str
    source: str | None
    papers_seen: int
    papers_new: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts for ``status``."""

    papers: int
    days_ok: int
    days_empty: int
    days_failed: int
    first_day: dt.date | None
    last_day: dt.date | None
    last_fetch: dt.datetime | None


@dataclass(frozen=True, slots=True)
class QueuedPaper:
    """A paper going into a reader's digest, and the rules that matched it."""

    paper_id: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A rendered digest waiting in (or done with) the outbox."""

    id: int
    reader: str
    recipient: str
    sender: str
    message_id: str
    data: bytes
    papers: int
    status: str
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    done_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ReaderState:
    """When paperwatch first served a reader, and when it last queued them a digest."""

    name: str
    started_at: dt.datetime
    last_digest_at: dt.datetime | None

    def as_of(self, now: dt.datetime) -> ReaderState:
        """The state as read at ``now``: a stamp made while the clock ran ahead counts as now,
        not as that future date."""
        last = self.last_digest_at
        return ReaderState(self.name, min(self.started_at, now), None if last is None else min(last, now))


@dataclass(frozen=True, slots=True)
class SearchFetch:
    """The outcome of running one saved search: its results (ranked), or an error."""

    query: str
    url: str
    status: int | None
    papers: tuple[Paper, ...] = ()
    source: str | None = None  # "api" | "page"
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SearchState:
    """What the store knows of one search query, for ``status``."""

    query: str
    outcome: str
    source: str | None
    results: int
    detail: str | None
    checked_at: dt.datetime
    ok_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A paper a saved search found (at ``found_at``) after the reader saved it."""

    paper: Paper
    query: str
    found_at: dt.datetime


@dataclass(frozen=True, slots=True)
class FeaturedPaper:
    """A paper with when it was first stored and the last day it was featured (ISO text, as stored)."""

    paper: Paper
    first_seen: str
    last_featured: str

    def fresh(self, since: str, day: str) -> bool:
        """Whether ``undelivered`` with ``fresh`` would consider the paper: ``since`` and ``day``
        are ``fresh``'s time and day in ISO format (as the store keeps them)."""
        return self.first_seen > since or self.last_featured >= day
