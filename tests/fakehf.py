"""A fake huggingface.co on 127.0.0.1 for the tests, so they never reach the internet.

It serves the three things paperwatch reads, in the shapes described in
the site's real shapes and reproducing ``tests/data/samples/`` byte for byte:

* ``GET /papers/date/YYYY-MM-DD``: the daily page (hydration JSON and ``<article>`` cards),
  with ETag/Last-Modified and 304s, per-day broken renderings (``page_mode``) and the several
  things the real site has done for dates without papers (``latest_policy``);
* ``GET /api/daily_papers?date=...&limit=...&p=...``: the JSON API with ``Link`` pagination
  and the real 400s (future or malformed date);
* ``GET /papers``: a redirect to the latest day; ``GET /papers?q=...``: the search page (the
  same data div with ``query`` and ``searchResults``), and ``GET /api/papers/search?q=...``:
  the same results as a JSON array, both from ``searches`` (``search_page_mode`` breaks the page).

and what the real site also served (see ``tests/data/samples/real/``): the 2024 page shape
(``page_style``), real pages byte for byte (``raw_pages``), a bot challenge instead of the page
(``page_mode`` "challenge", answered with ``challenge_status``), ``GET /api/papers/{id}``
(``papers``, else the days' items), flat search results (put them in ``searches`` as they are),
API pages with or without ``Link`` (``api_link``), and raw header bytes (``raw_headers``).

It misbehaves on demand (``fail``, ``fail_first`` with ``Fault``: 429/5xx, hangs, resets
mid-body, redirects, truncated bodies) and records every request and the peak concurrency it
saw, so tests can check the fetcher's manners.

Usage::

    async with FakeHF() as hf:
        hf.days[day] = [FakeHF.make_item(day, n) for n in range(6)]
        hf.fail(f"/papers/date/{day}", Fault.status(503), Fault.reset())
        ...  # fetch from hf.base_url
        assert hf.max_in_flight <= 2
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import hashlib
import html
import json
import random
import re
import textwrap
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

# The site's shapes, kept with the tests (real captures under real/).
SAMPLES: Final = Path(__file__).resolve().parent / "data" / "samples"
REAL: Final = SAMPLES / "real"

LATEST_POLICIES: Final = frozenset({"latest", "redirect", "redirect_date", "empty"})
PAGE_MODES: Final = frozenset({"json", "cards", "changed", "broken_json", "truncated", "challenge"})
# "2025": props say ``dateString`` (and ``periodType``); "2024": they say ``date``, an ISO
# timestamp, and the cards name claimed authors by their HF username, as the real 2024 page did.
PAGE_STYLES: Final = frozenset({"2025", "2024"})
# What a bot check (AWS WAF, in front of the real site) answers instead of the page.
CHALLENGE_PAGE: Final = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title></title><script>'
    b'window.awsWafCookieDomainList = [];window.gokuProps = {"key":"AQIDAHjcYu/GjX+QlghicBgQ/7bFaQZ+m5FKCMDnO",'
    b'"iv":"CgAFJTFGAAAAAdTR","context":"Xy2kD1wR0c+fJmN1"};</script>'
    b'<script src="https://0e4a2b1c9d3f.edge.sdk.awswaf.com/0e4a2b1c9d3f/challenge.js"></script></head>'
    b'<body><div id="challenge-container"></div><script>AwsWafIntegration.checkForceRefresh().then(() => '
    b'ChallengeScript.renderChallenge("#challenge-container"));</script><noscript><h1>JavaScript is disabled'
    b"</h1>In order to continue, we need to verify that you're not a robot. This requires JavaScript. "
    b"Enable JavaScript and then reload the page.</noscript></body></html>"
)
SEARCH_PAGE_MODES: Final = frozenset({"json", "no_results", "changed"})

API_DEFAULT_LIMIT: Final = 50
API_MAX_LIMIT: Final = 100

_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _Missing:
    """Type of MISSING: ``make_item(day, n, githubRepo=MISSING)`` drops the key."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# --------------------------------------------------------------------------------------------
# Faults and the request log
# --------------------------------------------------------------------------------------------

FaultKind = Literal["status", "hang", "reset", "redirect", "truncate"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One misbehaviour, consumed by one request. Build it with the class methods."""

    kind: FaultKind
    code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    seconds: float = 0.0
    location: str = ""

    @classmethod
    def status(cls, code: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> Fault:
        """Answer ``code`` with these headers and body instead of the real response."""
        return cls("status", code=code, headers=tuple((headers or {}).items()), body=body)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Sleep ``seconds``, then answer normally: for client timeouts and concurrency."""
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Send the headers (with the full Content-Length) and half the body, then abort."""
        return cls("reset")

    @classmethod
    def redirect(cls, location: str, code: int = 302) -> Fault:
        """Redirect to ``location``, sent verbatim (another host, ``file:``, a relative path)."""
        return cls("redirect", code=code, location=location)

    @classmethod
    def truncate(cls) -> Fault:
        """A 200 whose body is the first half of the real one, Content-Length matching it."""
        return cls("truncate")


@dataclass(slots=True)
class Req:
    """One request as the server saw it."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: CIMultiDict[str]
    started: float  # time.monotonic() when handling began
    ended: float | None = None  # when handling ended, also when the client gave up first
    status: int | None = None  # status line sent; None if nothing was sent
    fault: str | None = None  # kind of the Fault applied, if any: helps read a failing test


# --------------------------------------------------------------------------------------------
# HTML rendering, in the exact shape of tests/data/samples/papers-date-*.html
# --------------------------------------------------------------------------------------------

_HEAD: Final = (
    '<!doctype html><html class=""><head><meta charset="utf-8"><title>Daily Papers - Hugging Face</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1.0, user-scalable=no">'
    '<link rel="stylesheet" href="/front/build/kube-1/style.css"></head>'
    '<body class="flex flex-col min-h-dvh bg-white dark:bg-gray-950 text-black DailyPapersPage">'
    '<div class="flex min-h-dvh flex-col"><header class="border-b border-gray-100"><nav>'
    '<a href="/models">Models</a><a href="/datasets">Datasets</a><a href="/spaces">Spaces</a>'
    '<a href="/papers">Daily Papers</a></nav></header><main class="flex flex-1 flex-col">'
)
_TAIL: Final = (
    '</div></main><footer><a href="/terms-of-service">TOS</a></footer></div>'
    '<script>window.hubConfig = {"features":{}}</script></body></html>'
)
_CARD: Final = (
    '<article class="relative flex flex-col overflow-hidden rounded-xl border">'
    '<a href="/papers/{id}" class="block"><img src="{thumbnail}" alt=""></a>'
    '<div class="from-gray-50-to-white -mt-2 flex bg-gradient-to-b px-6 pb-6 pt-8">'
    '<label class="flex cursor-pointer select-none"><input type="checkbox" class="peer hidden">'
    '<div class="leading-none">{upvotes}</div></label><div class="w-full">'
    '<h3 class="mb-1 text-lg font-semibold leading-[1.2] hover:underline">'
    '<a href="/papers/{id}" class="line-clamp-3 cursor-pointer text-balance">{title}</a></h3>'
    '<div class="flex items-center"><ul class="flex items-center">{authors}</ul>'
    '<div class="text-gray-500">· {n_authors} authors</div>'
    '<a href="/papers/{id}#community" class="ml-2">{comments}</a></div></div></div></article>'
)
# A redesign: the same papers in markup the parser has never seen (no data div, no <article>).
_CHANGED_CARD: Final = (
    '<div class="paper-row" data-paper="{id}"><span class="votes">{upvotes}</span>'
    '<h2 class="paper-title"><a href="/papers/{id}">{title}</a></h2></div>'
)


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _paper(item: Mapping[str, Any]) -> Mapping[str, Any]:
    # Tests may serve deliberately malformed items: render what is there instead of crashing.
    paper = item.get("paper")
    return paper if isinstance(paper, dict) else {}


def _upvotes(item: Mapping[str, Any]) -> int:
    value = _paper(item).get("upvotes")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _card(item: Mapping[str, Any], template: str = _CARD, *, usernames: bool = False) -> str:
    paper = _paper(item)
    paper_id = paper.get("id", "")
    authors = [a for a in paper.get("authors") or [] if isinstance(a, dict)]
    if usernames:  # the 2024 cards: a claimed author shows as the account's username
        authors = [{**a, "name": a["user"].get("user")} if isinstance(a.get("user"), dict) else a for a in authors]
    return template.format(
        id=_esc(paper_id),
        thumbnail=_esc(item.get("thumbnail") or _thumbnail(str(paper_id))),
        upvotes=_upvotes(item),
        title=_esc(item.get("title") or paper.get("title")),
        # the real cards name only the first five authors, then give the total
        authors="".join(f'<li title="{_esc(a.get("name"))}"></li>' for a in authors[:5]),
        n_authors=len(authors),
        comments=_esc(item.get("numComments", 0)),
    )


def render_page(date_string: str, items: Iterable[Mapping[str, Any]], *, prev_date: str | None,
                mode: str = "json", style: str = "2025") -> bytes:
    """One ``/papers/date/...`` page showing ``items``, in that order, under ``date_string``.

    ``mode`` is one of PAGE_MODES, ``style`` one of PAGE_STYLES. Public so a test can render a
    page without a server.
    """
    if mode not in PAGE_MODES:
        raise ValueError(f"unknown page mode {mode!r}; expected one of {sorted(PAGE_MODES)}")
    if style not in PAGE_STYLES:
        raise ValueError(f"unknown page style {style!r}; expected one of {sorted(PAGE_STYLES)}")
    if mode == "challenge":
        return CHALLENGE_PAGE
    if style == "2024":
        return _render_2024(date_string, list(items), prev_date=prev_date, mode=mode)
    items = list(items)
    day = dt.date.fromisoformat(date_string)
    heading = (
        '<section class="container"><h1>Daily Papers</h1><p>by AK and the research community</p>'
        f'<time datetime="{date_string}">{_MONTHS[day.month - 1]} {day.day}</time>'
    )
    if mode == "changed":
        rows = "".join(_card(item, _CHANGED_CARD) for item in items)
        body = f'<div class="contents">{heading}<div class="papers-list">{rows}</div></section>'
        return (_HEAD + body + _TAIL).encode()
    cards = "".join(_card(item) for item in items)
    section = f'{heading}<div class="relative grid grid-cols-1 gap-14 lg:grid-cols-2">{cards}</div></section>'
    if mode == "cards":
        return (_HEAD + '<div class="contents">' + section + _TAIL).encode()
    props = {
        "authLight": {},
        "canSubmit": False,
        "dateString": date_string,
        "dailyPapers": [{**item, "upvoted": False} for item in items],
        "prevDate": prev_date,
        "publisher": None,
        "periodType": "day",
        "query": {},
        "isTrending": False,
    }
    # Compact, non-ASCII left as is: that is what the samples hold, byte for byte.
    data = json.dumps(props, separators=(",", ":"), ensure_ascii=False)
    if mode == "broken_json":
        data = data[: len(data) // 2]
    div = f'<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{_esc(data)}">'
    page = (_HEAD + div + section + _TAIL).encode()
    return page[: len(page) // 2] if mode == "truncated" else page


def _render_2024(date_string: str, items: list[Mapping[str, Any]], *, prev_date: str | None, mode: str) -> bytes:
    """The page as served in 2024 (see real/papers-date-2024-08-01.html): props with ``date``,
    no ``dateString`` nor ``periodType``; cards with usernames for claimed authors."""
    day = dt.date.fromisoformat(date_string)
    heading = ('<section class="container"><h1>Daily Papers</h1><p>by AK and the research community</p>'
               f'<time datetime="{date_string}">{_MONTHS[day.month - 1]} {day.day}</time>')
    cards = "".join(_card(item, usernames=True) for item in items)
    section = f'{heading}<div class="relative grid grid-cols-1 gap-14 lg:grid-cols-2">{cards}</div></section>'
    if mode in ("cards", "changed"):
        return (_HEAD + '<div class="contents">' + section + _TAIL).encode()
    props = {"canSubmit": False, "dailyPapers": [{**item, "upvoted": False} for item in items],
             "date": f"{date_string}T00:00:00.000Z", "nextDate": None, "prevDate": prev_date, "publisher": None}
    data = json.dumps(props, separators=(",", ":"), ensure_ascii=False)
    if mode == "broken_json":
        data = data[: len(data) // 2]
    div = f'<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{_esc(data)}">'
    page = (_HEAD + div + section + _TAIL).encode()
    return page[: len(page) // 2] if mode == "truncated" else page


def render_search_page(query: str, items: Iterable[Mapping[str, Any]], *, today: dt.date,
                       mode: str = "json") -> bytes:
    """``/papers?q=QUERY``: the data div with ``query.q`` and ``searchResults``, in the shape of
    tests/data/samples/papers-search-q-*.html. ``mode`` "no_results" drops the ``searchResults`` key
    (the page changed under us), "changed" drops the data div altogether."""
    if mode not in SEARCH_PAGE_MODES:
        raise ValueError(f"unknown search page mode {mode!r}; expected one of {sorted(SEARCH_PAGE_MODES)}")
    items = list(items)
    cards = "".join(_card(item) for item in items)
    section = f'<section class="container"><h1>Daily Papers</h1>{cards}</section>'
    head = ('<!doctype html><html><head><meta charset="utf-8"><title>Daily Papers - Hugging Face</title>'
            '</head><body><main class="flex flex-1 flex-col">')
    if mode == "changed":
        return (head + '<div class="contents">' + section + "</div></main></body></html>").encode()
    props: dict[str, Any] = {"authLight": {}, "canSubmit": False, "dateString": today.isoformat(), "dailyPapers": []}
    if mode == "json":
        props["searchResults"] = items
    props |= {"prevDate": (today - dt.timedelta(days=1)).isoformat(), "publisher": None, "periodType": "day",
              "query": {"q": query}, "isTrending": False}
    data = json.dumps(props, separators=(",", ":"), ensure_ascii=False)
    div = f'<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{_esc(data)}">'
    return (head + div + section + "</div></main></body></html>").encode()


# --------------------------------------------------------------------------------------------
# Synthetic items
# --------------------------------------------------------------------------------------------

_FIRST: Final = ("Yoshua", "Wei", "Anna", "Kyunghyun", "Jürgen", "Søren", "Tomáš", "Léon", "Zoë",
                 "Łukasz", "Nadia", "Pieter", "Mohammad", "Xin", "Ursula", "Chen", "Hao", "Quoc",
                 "Fei", "Ilya", "Jia", "Shakir", "Zoubin", "Aditi")
_LAST: Final = ("Bengio", "Zhang", "O'Brien", "García", "Schmidhuber", "Vapnik", "Le", "Xu", "Peng",
                "Mohamed", "Arora", "von Luxburg", "Ghahramani", "Sutskever", "Cho", "Liu", "Wang",
                "Kowalski", "Nakamura", "Müller", "Deng", "Abbeel", "Hauberg", "Okafor")
_TOPICS: Final = ("Long-Context Language Models", "Diffusion Transformers", "Vision-Language Agents",
                  "Sparse Mixture-of-Experts", "Retrieval-Augmented Generation", "Speech Tokenizers",
                  "3D Gaussian Splatting", "Reward Models", "Linear Attention", "Video Generation",
                  "Code LLMs", "Multilingual Reasoning")
_VERBS: Final = ("Scaling", "Rethinking", "Distilling", "Benchmarking", "Aligning", "Compressing",
                 "Steering", "Evaluating")
_NAMES: Final = ("Orca", "Lumen", "Tessera", "Quill", "Halcyon", "Marmot", "Vireo", "Kestrel", "Basalt")
_SENTENCES: Final = (
    "Large language models (LLMs) have shown remarkable abilities across a wide range of tasks, yet "
    "their behaviour on {topic} remains poorly understood.",
    "Existing approaches either rely on expensive human annotation or fail to generalise beyond the "
    "distribution they were trained on.",
    "In this work, we introduce {name}, a simple and scalable framework for {topic_l} that requires no "
    "additional supervision.",
    "Our key insight is that the intermediate representations already encode most of the signal "
    "needed, so a lightweight probe suffices.",
    "We train models from 125M to 7B parameters on 1.2T tokens and evaluate them on twelve public "
    "benchmarks.",
    "{name} improves accuracy by 4.7 points on average while reducing inference cost by 38%, and it "
    "matches much larger baselines on out-of-domain data.",
    "Ablations show that both the curriculum and the auxiliary loss are necessary, and that gains "
    "persist at scale.",
    "We further analyse failure cases and find that most errors stem from ambiguous instructions "
    "rather than missing knowledge.",
    "Code, data and model weights are publicly available to facilitate future research.",
)
# Untrusted text as the real site carries it: markup-like characters, entities, quotes, LaTeX.
_HOSTILE_TITLE: Final = "Sub-$\\mathcal{{O}}(n^2)$ {topic} <in> Q&A & R&D: \"Closing\" the Gap"
_HOSTILE_SENTENCE: Final = ("On <50% of inputs the bound $\\|W\\|_2 < 1$ holds & fails otherwise; we "
                            "call this the \"A&B\" regime (<script>alert(1)</script> is plain text).")
_SUBMITTERS: Final = (("AK", "akhaliq", True), ("Niels Rogge", "nielsr", True),
                      ("Yanxin Lu", "amber1120", False))
_ORGS: Final = (("meta-llama", "Meta Llama"), ("google", "Google"), ("deepseek-ai", "DeepSeek"),
                ("allenai", "Ai2"), ("Qwen", "Qwen"))
_OUTER_ONLY: Final = frozenset({"thumbnail", "numComments", "submittedBy", "isAuthorParticipating", "upvoted"})
_BOTH: Final = frozenset({"title", "summary", "publishedAt", "organization", "mediaUrls"})


def _hex(*parts: object) -> str:
    """A deterministic 24-hex-digit id in the Mongo style the site uses."""
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:24]


def _thumbnail(paper_id: str) -> str:
    return f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{paper_id}.png"


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _user(fullname: str, name: str, pro: bool) -> dict[str, Any]:
    return {"_id": _hex("user", name), "avatarUrl": f"/avatars/{_hex('avatar', name)}.svg",
            "isPro": pro, "fullname": fullname, "user": name, "type": "user", "name": name}


def _authors(rng: random.Random, paper_id: str, count: int) -> list[dict[str, Any]]:
    authors: list[dict[str, Any]] = []
    for k in range(count):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        author: dict[str, Any] = {"_id": _hex(paper_id, "author", k), "name": name, "hidden": False}
        if rng.random() < 0.3:  # linked accounts carry user/status, like the real data
            handle = re.sub(r"[^a-z]", "", name.split()[-1].lower()) or "user"
            author["user"] = _user(name, f"{handle}{k}", False)
            author["status"] = "claimed_verified"
            author["statusLastChangedAt"] = "2024-07-22T10:12:44.059Z"
        authors.append(author)
    return authors


def _make_item(day: dt.date, n: int, **overrides: Any) -> dict[str, Any]:
    if not 0 <= n < 300:
        raise ValueError("n must be in 0..299 so that ids stay unique per day")
    # A str seed is hashed with SHA-512: stable across runs and PYTHONHASHSEED.
    rng = random.Random(f"fakehf:{day.isoformat()}:{n}")
    paper_id = overrides.pop("id", f"{day:%y%m}.0{day.day * 300 + n:04d}")
    topic, name = rng.choice(_TOPICS), rng.choice(_NAMES)
    if n % 7 == 4:
        title = _HOSTILE_TITLE.format(topic=topic)
    elif n % 6 == 5:  # arXiv titles keep their line continuation
        title = f"{rng.choice(_VERBS)} {topic}:\n  {name}, a Study of What Transfers"
    else:
        title = f"{name}: {rng.choice(_VERBS)} {topic} with {rng.choice(_TOPICS)}"
    picked = sorted(rng.sample(range(len(_SENTENCES)), rng.randint(4, 7)))
    sentences = [_SENTENCES[i].format(topic=topic, topic_l=topic.lower(), name=name) for i in picked]
    if n % 7 == 4:
        sentences.insert(2, _HOSTILE_SENTENCE)
    # arXiv abstracts arrive with hard line breaks near 80 columns
    summary = textwrap.fill(" ".join(sentences), width=80, break_long_words=False, break_on_hyphens=False)
    arxiv = dt.datetime.combine(day - dt.timedelta(days=rng.randint(1, 3)), dt.time(), dt.UTC)
    if n % 2:  # some arXiv dates carry a time, others are midnight-truncated
        arxiv += dt.timedelta(seconds=rng.randint(0, 86_399))
    featured = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(
        seconds=rng.randint(3_600, 11 * 3_600), milliseconds=rng.randint(0, 999))
    submitter = _user(*_SUBMITTERS[n % len(_SUBMITTERS)])
    upvotes = int(rng.paretovariate(1.2) * 3) - 3 + rng.randint(0, 4)  # mostly few, now and then many

    paper: dict[str, Any] = {
        "id": paper_id,
        "authors": _authors(rng, paper_id, 1 + rng.randrange(12)),
        "publishedAt": _stamp(arxiv),
        "submittedOnDailyAt": _stamp(featured),
        "title": title,
        "submittedOnDailyBy": submitter,
        "summary": summary,
        "upvotes": max(0, min(upvotes, 400)),
        "discussionId": _hex(paper_id, "discussion"),
    }
    if n % 3 == 0:
        paper["githubRepo"] = f"https://github.com/{name.lower()}-lab/{paper_id.replace('.', '-')}"
        paper["githubRepoAddedBy"] = "user" if n % 2 else "author"
        paper["githubStars"] = rng.randint(0, 5000)
    if n % 4 == 1:
        paper["projectPage"] = f"https://{name.lower()}-lab.github.io/{paper_id}"
    if n % 5 != 4:  # ai_* is absent on fresh papers
        paper["ai_summary"] = f"{name} improves {topic.lower()} without additional supervision."
        paper["ai_keywords"] = sorted({w.lower() for w in topic.split()} | {name.lower()})
        paper["ai_summary_model"] = "Qwen/Qwen2.5-Coder-32B-Instruct"
    organization = None
    if n % 3 != 2:
        handle, fullname = _ORGS[n % len(_ORGS)]
        organization = {"_id": _hex("org", handle), "name": handle, "fullname": fullname,
                        "avatar": f"https://cdn-avatars.huggingface.co/v1/production/uploads/{_hex(handle)}.png"}
        paper["organization"] = organization
    media = None
    if n % 6 == 3:
        media = [f"https://cdn-uploads.huggingface.co/production/uploads/{_hex(paper_id, 'media')}/fig1.png"]
        paper["mediaUrls"] = media

    item: dict[str, Any] = {
        "paper": paper,
        "publishedAt": _stamp(arxiv + dt.timedelta(hours=20)),
        "title": title,
        "summary": summary,
        "thumbnail": _thumbnail(paper_id),
        "numComments": rng.randint(0, 6),
        "submittedBy": submitter,
        "isAuthorParticipating": n % 5 == 1,
    }
    if organization is not None:
        item["organization"] = organization
    if media is not None:
        item["mediaUrls"] = media

    for key, value in overrides.items():
        if key == "authors" and isinstance(value, int):
            value = _authors(rng, paper_id, value)  # a count: generate that many
        targets = [item] if key in _OUTER_ONLY else [item, paper] if key in _BOTH else [paper]
        for target in targets:
            if value is MISSING:
                target.pop(key, None)
            else:
                target[key] = value
    return item


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeHF:
    """aiohttp.web app on 127.0.0.1, random port. See the module docstring."""

    def __init__(self) -> None:
        self.base_url = ""
        self.days: dict[dt.date, list[dict[str, Any]]] = {}
        # Search results by query text, in the order the site ranks them.
        self.searches: dict[str, list[dict[str, Any]]] = {}
        self.search_page_mode = "json"
        self._latest_policy = "latest"
        self.page_mode: dict[dt.date, str] = {}
        self.etag = True
        # Which year's page shape each day is rendered in (PAGE_STYLES); "2025" if absent.
        self.page_style: dict[dt.date, str] = {}
        # The status a "challenge" page answers with: the real bot check says 202, or 403, or 200.
        self.challenge_status = 202
        # Pages served as these exact bytes (a real capture), whatever ``days`` holds.
        self.raw_pages: dict[dt.date, bytes] = {}
        # /api/papers/{id}: these paper objects; else the ``paper`` of an item in ``days``; else 404.
        self.papers: dict[str, dict[str, Any]] = {}
        # Whether an API page that has a next one says so in ``Link: rel="next"`` (else only ``p``).
        self.api_link = True
        # Header lines, as raw bytes, added to every answer for a path (+ "?" + query) with this
        # prefix, replacing headers of the same name: validators no client could send back...
        self.raw_headers: dict[str, list[tuple[bytes, bytes]]] = {}
        # The UTC date the API takes for today (400 for later dates); None means the real one.
        self.today: dt.date | None = None
        self.requests: list[Req] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: dict[str, deque[Fault]] = {}
        self._first_n = 0
        self._first_choices: tuple[Fault, ...] = ()
        self._seen: defaultdict[str, int] = defaultdict(int)
        # ETag -> Last-Modified: when each distinct body was first served.
        self._modified: dict[str, dt.datetime] = {}
        self._last_modified = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._closing.clear()
        app = web.Application()
        # One catch-all handler, so that faults and the log cover every path, 404s included.
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up on a hang cancels its handler, so the
        # in-flight count drops right then and close() does not wait out the sleep.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving. Close clients first: a request still open ends its hang early."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            self._closing.set()  # pending hangs answer now instead of holding up the shutdown
            await runner.cleanup()

    async def __aenter__(self) -> FakeHF:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- what it serves -------------------------------------------------------------------------

    @property
    def latest_policy(self) -> str:
        """What a date without papers serves: "latest", "redirect", "redirect_date" or "empty"."""
        return self._latest_policy

    @latest_policy.setter
    def latest_policy(self, value: str) -> None:
        if value not in LATEST_POLICIES:
            raise ValueError(f"unknown latest_policy {value!r}; expected one of {sorted(LATEST_POLICIES)}")
        self._latest_policy = value

    def items(self, day: dt.date) -> list[dict[str, Any]]:
        """The items served for ``day`` now, sorted like the API (upvotes desc, ties in list order).

        The dicts are those in ``days``: changing one changes what is served.
        """
        return sorted(self.days.get(day) or [], key=_upvotes, reverse=True)

    @staticmethod
    def make_item(day: dt.date, n: int, **overrides: Any) -> dict[str, Any]:
        """A realistic synthetic item for ``day``, number ``n`` (0..299); deterministic.

        Ids are ``YYMM.0NNNN`` from the day and n, so unique per day and n. Titles and abstracts
        read like real ones (abstracts hard-wrapped at 80 columns; n%6==5 titles hold an arXiv
        ``\\n  ``; n%7==4 titles and abstracts carry ``<``, ``&``, quotes and LaTeX); 1-12
        authors; optional keys present or absent by n (githubRepo/Stars n%3==0, projectPage
        n%4==1, ai_* absent when n%5==4, organization unless n%3==2, mediaUrls n%6==3).

        ``overrides`` set keys where they live: upvotes, id, authors, githubRepo... on
        ``paper``; numComments, thumbnail, submittedBy, isAuthorParticipating on the outer
        item; title, summary, publishedAt, organization, mediaUrls on both. ``authors=N``
        generates N authors; the value ``MISSING`` removes the key.
        """
        return _make_item(day, n, **overrides)

    @staticmethod
    def sample_items(name: str = "api-daily_papers-2025-03-05.json") -> list[dict[str, Any]]:
        """Items from a file in tests/data/samples: an API JSON array, or a page's dailyPapers
        (without the page-only ``upvoted`` key)."""
        text = (SAMPLES / name).read_text(encoding="utf-8")
        if not name.endswith(".html"):
            items: list[dict[str, Any]] = json.loads(text)
            return items
        found = re.search(r'data-target="DailyPapers" data-props="([^"]*)"', text)
        if found is None:
            raise ValueError(f"{name} has no hydration JSON")
        props = json.loads(html.unescape(found.group(1)))
        return [{k: v for k, v in item.items() if k != "upvoted"} for item in props["dailyPapers"]]

    def _latest_day(self) -> dt.date | None:
        published = [day for day, items in self.days.items() if items]
        return max(published) if published else None

    def _prev_date(self, day: dt.date) -> str:
        earlier = [d for d, items in self.days.items() if items and d < day]
        return (max(earlier) if earlier else day - dt.timedelta(days=1)).isoformat()

    def _today(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()

    # -- misbehaviour ---------------------------------------------------------------------------

    def fail(self, path_prefix: str, *responses: Fault) -> None:
        """Queue faults for requests whose path (+ "?" + query, if any) starts with
        ``path_prefix``: each matching request consumes the next one, then service resumes.
        When several prefixes match, the longest one with faults left wins."""
        self._faults.setdefault(path_prefix, deque()).extend(responses)

    def fail_first(self, n: int, *choices: Fault) -> None:
        """For every distinct URL (path + query), the first ``n`` requests from now get a
        fault, cycling through ``choices``; later ones are served normally. A queued
        ``fail()`` fault takes precedence but still counts as one of the n."""
        if n and not choices:
            raise ValueError("fail_first needs at least one Fault")
        self._first_n, self._first_choices = n, choices
        self._seen.clear()

    def _take_fault(self, url: str) -> Fault | None:
        count = self._seen[url]
        self._seen[url] = count + 1
        queued = [prefix for prefix, queue in self._faults.items() if queue and url.startswith(prefix)]
        if queued:
            return self._faults[max(queued, key=len)].popleft()
        if count < self._first_n:
            return self._first_choices[count % len(self._first_choices)]
        return None

    # -- request handling -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        url = f"{request.path}?{request.query_string}" if request.query_string else request.path
        req = Req(request.method, request.path, dict(request.query), CIMultiDict(request.headers),
                  time.monotonic())
        self.requests.append(req)
        # Counted from the very start, hangs included; released in finally, also when the
        # client gives up and the handler is cancelled.
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            fault = self._take_fault(url)
            req.fault = fault.kind if fault else None
            raw = next((v for k, v in self.raw_headers.items() if url.startswith(k)), None)
            if fault is None and raw is not None:
                return await self._raw(request, req, self._serve(request), raw)
            if fault is None:
                response = self._serve(request)
            elif fault.kind == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), fault.seconds)
                response = self._serve(request)
            elif fault.kind == "status":
                response = web.Response(status=fault.code, headers=CIMultiDict(fault.headers), body=fault.body)
            elif fault.kind == "redirect":
                response = web.Response(status=fault.code, headers={"Location": fault.location})
            elif fault.kind == "truncate":
                full = self._serve(request, conditional=False)
                body = _body(full)
                response = web.Response(status=200, body=body[: len(body) // 2], headers=_plain_headers(full))
            else:
                return await self._reset(request, req)
            # Returned unsent: aiohttp writes it after the finally below, so the in-flight
            # count is down before the client can read the answer and send its next request.
            req.status = response.status
            return response
        finally:
            req.ended = time.monotonic()
            self._in_flight -= 1

    async def _reset(self, request: web.Request, req: Req) -> web.StreamResponse:
        full = self._serve(request, conditional=False)
        body = _body(full)
        response = web.StreamResponse(status=200, headers=_plain_headers(full))
        response.content_length = len(body)  # promise the whole body...
        await response.prepare(request)
        req.status = 200
        await response.write(body[: len(body) // 2])  # ...send half...
        assert request.transport is not None
        request.transport.abort()  # ...and drop the connection
        # connection_lost now cancels this handler (handler_cancellation); wait for that
        # rather than let aiohttp try to finish a response on a dead transport.
        await asyncio.sleep(10)
        return response  # not reached

    async def _raw(self, request: web.Request, req: Req, response: web.Response,
                   extra: list[tuple[bytes, bytes]]) -> web.StreamResponse:
        """``response`` written byte by byte with the ``extra`` header lines, which aiohttp's
        own writer would refuse or re-encode; then the connection closes."""
        body = b"" if request.method == "HEAD" or response.status == 304 else _body(response)
        replaced = {name.decode("latin-1").lower() for name, _ in extra}
        lines = [f"HTTP/1.1 {response.status} {response.reason}".encode()]
        lines += [f"{k}: {v}".encode() for k, v in response.headers.items()
                  if k.lower() not in replaced | {"content-length", "connection"}]
        lines += [name + b": " + value for name, value in extra]
        lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
        assert request.transport is not None
        request.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        req.status = response.status
        request.transport.close()
        # connection_lost cancels this handler (handler_cancellation), as for a reset.
        await asyncio.sleep(10)
        return response  # not reached

    def _serve(self, request: web.Request, *, conditional: bool = True) -> web.Response:
        """The normal answer, as the real site would give it."""
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        path = request.path
        if path.startswith("/papers/date/"):
            return self._day_page(request, path.removeprefix("/papers/date/"), conditional)
        if path in ("/papers", "/papers/") and "q" in request.query:
            found = self.searches.get(request.query["q"], [])
            page = render_search_page(request.query["q"], found, today=self._today(), mode=self.search_page_mode)
            return web.Response(body=page, headers={"Content-Type": "text/html; charset=utf-8"})
        if path == "/api/papers/search":
            return _json_response(self.searches.get(request.query.get("q", ""), []))
        if path.startswith("/api/papers/"):
            return self._paper_api(path.removeprefix("/api/papers/"))
        if path in ("/papers", "/papers/"):
            latest = self._latest_day()
            if latest is None:  # nothing published at all: today's empty page, not a redirect loop
                return self._page(request, self._today(), [], conditional)
            return _redirect(f"/papers/date/{latest}")
        if path == "/api/daily_papers":
            return self._api(request)
        return _json_response({"error": "Not Found"}, status=404)

    def _paper_api(self, paper_id: str) -> web.Response:
        if paper_id in self.papers:
            return _json_response(self.papers[paper_id])
        for items in self.days.values():
            for item in items:
                paper = _paper(item)
                if paper.get("id") == paper_id:
                    return _json_response(paper)
        return _json_response({"error": "Paper not found"}, status=404)

    def _day_page(self, request: web.Request, text: str, conditional: bool) -> web.Response:
        day = _parse_date(text)
        if day is None:
            return web.Response(status=404, text="Not Found", content_type="text/html")
        if self.page_mode.get(day) == "challenge":
            return web.Response(status=self.challenge_status, body=CHALLENGE_PAGE,
                                headers={"Content-Type": "text/html; charset=utf-8"})
        if day in self.raw_pages:
            return web.Response(body=self.raw_pages[day], headers={"Content-Type": "text/html; charset=utf-8"})
        items = self.items(day)
        if items:
            return self._page(request, day, items, conditional)
        latest = self._latest_day()
        policy = self._latest_policy
        if policy == "redirect" or (policy == "redirect_date" and latest is None):
            return _redirect("/papers")
        if policy == "redirect_date":
            return _redirect(f"/papers/date/{latest}")
        if policy == "latest" and latest is not None:
            # 2026 behaviour: the URL stays, the content (and dateString) is another day's
            return self._page(request, latest, self.items(latest), conditional)
        return self._page(request, day, [], conditional)

    def _page(self, request: web.Request, day: dt.date, items: list[dict[str, Any]],
              conditional: bool) -> web.Response:
        body = render_page(day.isoformat(), items, prev_date=self._prev_date(day),
                           mode=self.page_mode.get(day, "json"), style=self.page_style.get(day, "2025"))
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if not self.etag:
            return web.Response(body=body, headers=headers)
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
        modified = self._modified.get(etag)
        if modified is None:
            # Strictly later than any earlier version, so a day that changes within the same
            # second still gets a newer HTTP-date: If-Modified-Since alone cannot hide a change.
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            modified = self._modified[etag] = max(now, self._last_modified + dt.timedelta(seconds=1))
            self._last_modified = modified
        headers["ETag"] = etag
        headers["Last-Modified"] = email.utils.format_datetime(modified, usegmt=True)
        if conditional and _not_modified(request, etag, modified):
            return web.Response(status=304, headers={k: headers[k] for k in ("ETag", "Last-Modified")})
        return web.Response(body=body, headers=headers)

    def _api(self, request: web.Request) -> web.Response:
        query = request.query
        if "date" in query:
            day = _parse_date(query["date"])
            if day is None:
                return _json_response({"error": f"Invalid date: {query['date']}"}, status=400)
            if day > self._today():
                return _json_response({"error": "Date cannot be in the future"}, status=400)
        else:
            day = self._latest_day()  # no date: the latest published day
        try:
            limit = int(query.get("limit", API_DEFAULT_LIMIT))
            page = int(query.get("p", 0))
        except ValueError:
            return _json_response({"error": "limit and p must be integers"}, status=400)
        if limit < 1 or page < 0:
            return _json_response({"error": "limit must be positive and p not negative"}, status=400)
        limit = min(limit, API_MAX_LIMIT)
        items = self.items(day) if day is not None else []
        response = _json_response(items[page * limit:(page + 1) * limit])
        if (page + 1) * limit < len(items) and self.api_link:
            following = URL(self.base_url + request.path).with_query(
                {**query, "limit": str(limit), "p": str(page + 1)})
            response.headers["Link"] = f'<{following}>; rel="next"'
        return response


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _parse_date(text: str) -> dt.date | None:
    if not _DATE.match(text):  # fromisoformat alone would also take "20250305"
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _redirect(location: str) -> web.Response:
    # Not web.HTTPFound: returning (rather than raising) an HTTPException is deprecated.
    return web.Response(status=302, headers={"Location": location})


def _json_response(data: object, status: int = 200) -> web.Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(status=status, body=body, content_type="application/json", charset="utf-8")


def _body(response: web.Response) -> bytes:
    body = response.body
    return bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else b""


def _plain_headers(response: web.Response) -> CIMultiDict[str]:
    # A damaged body must not carry the validators of the intact one.
    headers = CIMultiDict(response.headers)
    for name in ("ETag", "Last-Modified", "Content-Length"):
        headers.popall(name, None)
    return headers


def _not_modified(request: web.Request, etag: str, modified: dt.datetime) -> bool:
    """RFC 9110 13.1: If-None-Match (weak comparison) decides when sent, else If-Modified-Since."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        weak = etag.removeprefix("W/")
        return any(tag.strip().removeprefix("W/") == weak for tag in inm.split(","))
    ims = request.headers.get("If-Modified-Since")
    if ims is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return modified <= since
