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
