"""Hostile input: no bytes make the parser raise anything but ParseError or return malformed or
wrong papers, and no redirect takes the fetcher off the site.

Property-based (hypothesis), on arbitrary bytes, on generated hydration data and on the real
sample pages mangled every way a broken server, proxy or redesign could. Bounded for CI: each
property runs a moderate number of fresh random examples, so the file takes seconds; a failure
prints its smallest example, and the next run replays it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import itertools
import json
import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st
from yarl import URL as Url

from conftest import write_config
from fakehf import FakeHF, Fault
from paperwatch.config import load_config
from paperwatch.errors import FetchError, ParseError
from paperwatch.fetch import MAX_REDIRECTS, Fetcher, day_url
from paperwatch.models import DayPage, PageSource, Paper
from paperwatch.parse import parse_daily_api, parse_daily_page, parse_search_api, parse_search_page

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parent / "data" / "samples"
URL = "https://huggingface.co/papers/date/2025-03-05"
DAY = dt.date(2025, 3, 5)

# Fresh randomness on every run, in numbers that keep the whole file to seconds (about 1,000
# examples in all); REAL is for the properties run on each real page, parsed whole every time.
BOUNDED = settings(max_examples=60, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REAL = settings(parent=BOUNDED, max_examples=40)

Parse = Callable[..., DayPage]
# Search results carry each its own featured day: checked as a DayPage of this day.
SEARCH = dt.date.min


def search_page(body: bytes, *, day: dt.date, url: str) -> DayPage:
    return DayPage(day=day, papers=parse_search_page(body, url=url), source=PageSource.JSON)


def search_api(body: bytes, *, day: dt.date, url: str) -> DayPage:
    return DayPage(day=day, papers=parse_search_api(body, url=url), source=PageSource.API)


# --------------------------------------------------------------------------------------------
# What "well-formed" means
# --------------------------------------------------------------------------------------------

# An id is a URL path segment (or two, for old-style arXiv ids): no space, no dot segments.
PAPER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?")
# Embeddings, overrides and isolates reorder the text around them, in a digest line too.
BIDI_SCOPED = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_COUNT = 2**53 - 1  # exact in every JSON reader, and fits SQLite's INTEGER


# Whitespace but the space; Cc (exactly U+0000-001F and U+007F-009F); the bidi controls above;
# Cs, the lone surrogates, which no UTF-8 encoder (SQLite's, the mail's) accepts.
UNFIT = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def check_text(value: object, what: str) -> None:
    """A text field as interface.md stores it: whitespace runs collapsed, ends trimmed, and
    nothing that cannot be printed, stored or shown on one line."""
    assert isinstance(value, str) and value, f"{what} is empty: {value!r}"
    assert value == value.strip() and "  " not in value, f"{what} not collapsed: {value!r:.300}"
    bad = UNFIT.search(value)
    assert bad is None, f"{what} holds {bad.group()!r}: {value!r:.300}"


def test_the_unfit_characters_are_what_their_comment_says() -> None:
    for code in range(0x2100):
        char = chr(code)
        expected = (char.isspace() and char != " ") or char in BIDI_SCOPED or unicodedata.category(char) == "Cc"
        assert bool(UNFIT.match(char)) == expected, hex(code)
    assert all(UNFIT.match(chr(code)) for code in range(0xD800, 0xE000))


def check_count(value: object, what: str) -> None:
    if value is not None:
        assert type(value) is int and 0 <= value <= MAX_COUNT, f"{what} = {value!r}"


def check_paper(paper: Paper, page: DayPage) -> None:
    assert type(paper) is Paper
    assert isinstance(paper.id, str) and len(paper.id) <= 64 and PAPER_ID.fullmatch(paper.id), paper.id
    check_text(paper.title, "title")
    for name in ("summary", "organization", "github_repo", "project_page", "published_at"):
        if getattr(paper, name) is not None:
            check_text(getattr(paper, name), name)
    if paper.published_at is not None:
        dt.datetime.fromisoformat(paper.published_at)  # ISO 8601, as interface.md promises
    for name in ("authors", "ai_keywords"):
        values = getattr(paper, name)
        assert isinstance(values, tuple), name
        for value in values:
            check_text(value, name)
    for name in ("upvotes", "comments", "github_stars"):
        check_count(getattr(paper, name), name)
    if page.day is SEARCH:
        assert paper.daily_date is None or type(paper.daily_date) is dt.date
    else:
        assert paper.daily_date == page.day
    assert paper.complete is (page.source is not PageSource.CARDS)
    json.dumps(paper.as_json(), ensure_ascii=False).encode("utf-8")  # storable and printable


def check_page(page: DayPage, day: dt.date) -> None:
    assert type(page) is DayPage and page.day == day and isinstance(page.source, PageSource)
    assert isinstance(page.papers, tuple)
    ids = [p.id for p in page.papers]
    assert len(ids) == len(set(ids)), "a paper listed twice"
    if page.empty_reason is not None:
        check_text(page.empty_reason, "empty_reason")
        assert len(page.empty_reason) <= 120 and page.papers == ()
    for paper in page.papers:
        check_paper(paper, page)


def attempt(parse: Parse, body: bytes, day: dt.date = DAY) -> DayPage | None:
    """Parse ``body``: a well-formed page, or None for a ParseError naming the URL on one line.
    Any other exception fails the test."""
    try:
        page = parse(body, day=day, url=URL)
    except ParseError as exc:
        message = str(exc)
        assert message.startswith(URL + ": ") and len(message) < 400, message
        check_text(message, "ParseError message")
        tally("ParseError")
        return None
    check_page(page, day)
    tally(f"{page.source.value}: " + ("no papers" if not page.papers else "papers"))
    return page


def tally(outcome: str) -> None:
    """Count outcomes for --hypothesis-show-statistics: a property only ever met by ParseErrors
    would prove little."""
    if currently_in_test_context():
        event(outcome)


# --------------------------------------------------------------------------------------------
# The samples
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    day: dt.date  # the day it is asked for
    parse: Parse
    papers_key: str | None = "dailyPapers"  # where the hydration data lists them; None: a JSON array

    @cached_property
    def body(self) -> bytes:
        return (SAMPLES / self.name).read_bytes()

    @cached_property
    def reference(self) -> DayPage:
        return self.parse(self.body, day=self.day, url=URL)

    @cached_property
    def props_span(self) -> tuple[int, int] | None:
        """Where the data-props value sits in the page, if it has one."""
        found = re.search(rb'data-props="([^"]*)"', self.body)
        return found.span(1) if found else None

    @cached_property
    def data(self) -> Any:
        """The decoded hydration props (pages) or the JSON array (API)."""
        if self.props_span is None:
            return json.loads(self.body)
        start, end = self.props_span
        return json.loads(html.unescape(self.body[start:end].decode()))

    @cached_property
    def ampersands(self) -> list[int]:
        return [m.start() for m in re.finditer(rb"&", self.body)]

    def encode(self, data: Any) -> bytes:
        """``data`` serialised the way the site does it, in place of the sample's own."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        text = RAW.sub(lambda m: RAW_JSON[int(m.group(1))], text)
        if self.props_span is None:
            return text.encode("utf-8", "surrogatepass")
        start, end = self.props_span
        escaped = html.escape(text, quote=True).encode("utf-8", "surrogatepass")
        return self.body[:start] + escaped + self.body[end:]


DAILY = Sample("papers-date-2025-03-05.html", DAY, parse_daily_page)
CARDS = Sample("papers-date-2025-03-06-cards-only.html", dt.date(2025, 3, 6), parse_daily_page)
WEEKEND = Sample("papers-date-2025-03-08-weekend.html", dt.date(2025, 3, 8), parse_daily_page)
API = Sample("api-daily_papers-2025-03-05.json", DAY, parse_daily_api, None)
SEARCH_PAGE = Sample("papers-search-q-deep-networks.html", SEARCH, search_page, "searchResults")
SEARCH_API = Sample("api-papers-search-q-deep-networks.json", SEARCH, search_api, None)
SAMPLE_SET = (DAILY, CARDS, WEEKEND, API)


def test_the_samples_parse_as_expected() -> None:
    """The references the properties compare against are what the samples say."""
    assert len(DAILY.reference.papers) == 26 and DAILY.reference.source is PageSource.JSON
    assert len(CARDS.reference.papers) == 26 and CARDS.reference.source is PageSource.CARDS
    assert WEEKEND.reference.papers == () and WEEKEND.reference.empty_reason
    assert len(API.reference.papers) == 26
    assert SEARCH_PAGE.reference.papers == SEARCH_API.reference.papers != ()
    for sample in (*SAMPLE_SET, SEARCH_PAGE, SEARCH_API):
        check_page(sample.reference, sample.day)


# --------------------------------------------------------------------------------------------
# Strategies: hostile values
# --------------------------------------------------------------------------------------------

NASTY_TEXT = (
    "<script>alert(1)</script>", "</div><div data-target=\"DailyPapers\">", "a\r\nb", "\r", "\n  ",
    "nul\x00byte", "line\u2028sep\u2029end", "\u202eevil.exe\u202c", "\u2066isolated", "\u200b",
    "\ufeffbom", "\ud800", "x\udfffy", "c1\x85\x9f\x80control\x7f", "\x1b[31mred", "", " ", " \t\n ",
    "&quot;&amp;&#x27;", "\"}]},{", "2025-03-05", "2025-03-08", "-1", "1e999", "\u00a0nbsp\u3000",
    "2503.00001\n", "../../settings", "2503.00001/../x", "a b", "https://evil.example/\r\nX-Injected: 1",
    "javascript:alert(1)", "2024-07-18T05:15:24.000Z", "2024-13-45T99:99:99Z",
)
# Raw JSON spliced in where a value was: what json.dumps cannot write but a server can.
RAW_JSON = (
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    "9" * 5_000, "-" + "9" * 30, "1e999", "-1e999", "NaN", "Infinity", "-0", "1.5e-400",
    '"\\ud800"', '"\\udc00\\ud800"', '"\\u0000"', '"\\u202e"',
)
RAW = re.compile(r'"@@raw(\d+)@@"')

short_texts = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=40),
    st.text(st.characters(exclude_categories=()), max_size=40),  # surrogates and unassigned too
)
texts = st.one_of(short_texts, st.sampled_from(["word \n" * 5_000, "x" * 100_000]))  # and huge
scalars = st.one_of(
    st.none(), st.booleans(), texts,
    st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 2**31, 2**53, 2**53 - 1, 2**63, 2**64]),
    st.floats(), st.integers(0, len(RAW_JSON) - 1).map(lambda n: f"@@raw{n}@@"),
)
hostile = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=5,
)


def value_or_hostile(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, hostile)


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` three times in four, else a hostile value: deep enough to reach every field."""
    return st.sampled_from((True, True, True, False)).flatmap(lambda plain: strategy if plain else hostile)


plain_ids = st.from_regex(r"\A[0-9]{4}\.[0-9]{4,5}\Z")
paper_ids = st.one_of(plain_ids, plain_ids, st.sampled_from(NASTY_TEXT), st.text(max_size=70))
papers = st.fixed_dictionaries(
    {"id": mostly(plain_ids | paper_ids), "title": mostly(texts)},
    optional={
        "summary": value_or_hostile(texts),
        "authors": mostly(st.lists(mostly(st.fixed_dictionaries({"name": value_or_hostile(texts)})), max_size=4)),
        "upvotes": value_or_hostile(st.integers(0, 500)), "githubStars": value_or_hostile(st.integers(0, 10**6)),
        "githubRepo": value_or_hostile(texts), "projectPage": value_or_hostile(texts),
        "publishedAt": value_or_hostile(st.datetimes().map(lambda d: d.isoformat() + "Z") | texts),
        "submittedOnDailyAt": value_or_hostile(st.datetimes().map(lambda d: d.isoformat() + "Z") | texts),
        "organization": mostly(st.fixed_dictionaries({}, optional={"name": hostile, "fullname": hostile})),
        "ai_keywords": mostly(st.lists(value_or_hostile(texts), max_size=4)),
    },
)
items = st.fixed_dictionaries(
    {"paper": mostly(papers)},
    optional={"title": hostile, "summary": hostile, "numComments": value_or_hostile(st.integers(0, 50)),
              "organization": hostile, "publishedAt": hostile},
)
item_lists = st.lists(mostly(items), max_size=3)


def props_for(day: dt.date) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"dailyPapers": mostly(item_lists), "dateString": mostly(st.just(day.isoformat()))},
        optional={"periodType": mostly(st.just("day")), "query": hostile},
    )


def card_markup(paper_id: str, title: str, upvotes: str, comments: str, authors: list[str]) -> str:
    names = "".join(f'<li title="{html.escape(a)}"></li>' for a in authors)
    return (f'<article><label><div class="leading-none">{upvotes}</div></label>'
            f'<h3><a href="/papers/{html.escape(paper_id)}">{html.escape(title)}</a></h3><ul>{names}</ul>'
            f'<a href="/papers/{html.escape(paper_id)}#community">{comments}</a></article>')


cards = st.builds(card_markup, paper_ids, short_texts,
                  st.from_regex(r"\A[0-9][0-9,]{0,30}\Z") | st.text(max_size=8),
                  st.from_regex(r"\A[0-9]{1,30}\Z") | st.text(max_size=8), st.lists(short_texts, max_size=3))
cards_pages = st.builds(
    lambda shows, body, end: (f'<html><body><time datetime="{shows}">x</time>{body}' + end).encode(
        "utf-8", "surrogatepass"),
    mostly(st.just(DAY.isoformat())).map(str), st.lists(cards, max_size=4).map("".join),
    st.sampled_from(["</body></html>", "</html>\n", "", "</body>"]),
)


def data_div(payload: bytes) -> bytes:
    return b'<html><body><div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="' + \
        payload + b'"></div></body></html>'


def serialise(data: Any, *, escape: bool) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    text = RAW.sub(lambda m: RAW_JSON[int(m.group(1))], text)
    return (html.escape(text, quote=True) if escape else text).encode("utf-8", "surrogatepass")


# Pieces of the real markup, so that random pages reach the card reader and the data div.
HTML_PIECES = (
    "<article>", "</article>", "<h3>", "</h3>", '<a href="/papers/', "2503.00001", "2503.00001\n", '">',
    '#community">', "</a>", '<time datetime="2025-03-05">', '<time datetime="', "<label>", "</label>",
    '<div class="leading-none">', '<div class="shadow-alternate">', "</div>", "Upvote ", "1,234", "9" * 40,
    '<ul><li title="', '"></li></ul>', '<div data-target="DailyPapers" data-props="', "&quot;", "&#x",
    "&amp;", "<", ">", '"', "\x00", "\n", " ", "\u202e", "\ud800", "\x85", "</html>",
)
html_soup = st.lists(st.sampled_from(HTML_PIECES) | st.text(max_size=6), max_size=60).map(
    lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))

arbitrary_pages = st.one_of(
    st.binary(max_size=3_000),
    html_soup,
    st.binary(max_size=1_000).map(data_div),
    hostile.map(lambda data: data_div(serialise(data, escape=True))),
)
hydration_pages = st.builds(
    lambda props, escape: data_div(serialise(props, escape=escape)),
    props_for(DAY), st.sampled_from((True, True, True, False)),  # unescaped quotes once in four
)
search_pages = st.builds(
    lambda results, escape: data_div(serialise({"dailyPapers": [], "searchResults": results, "query": {"q": "x"}},
                                               escape=escape)),
    mostly(item_lists), st.sampled_from((True, True, True, False)),
)
arbitrary_api = st.one_of(
    st.binary(max_size=3_000),
    hostile.map(lambda data: serialise(data, escape=False)),
    item_lists.map(lambda data: serialise(data, escape=False)),
    item_lists.map(lambda data: serialise(data, escape=False)),
)


# --------------------------------------------------------------------------------------------
# Arbitrary input: ParseError or well-formed papers, nothing else
# --------------------------------------------------------------------------------------------


@BOUNDED
@given(body=arbitrary_pages)
def test_any_bytes_as_a_page_give_well_formed_papers_or_a_parse_error(body: bytes) -> None:
    """Noise, markup soup, and anything at all in the data element's attribute."""
    attempt(parse_daily_page, body)


@BOUNDED
@given(body=hydration_pages)
def test_any_hydration_data_gives_well_formed_papers_or_a_parse_error(body: bytes) -> None:
    """Hydration data of the real shape with a hostile value in any field, escaped or not."""
    attempt(parse_daily_page, body)


@BOUNDED
@given(body=cards_pages)
def test_any_cards_give_well_formed_papers_or_a_parse_error(body: bytes) -> None:
    """Card pages (the fallback) with hostile ids, titles, counts and authors."""
    attempt(parse_daily_page, body)


@BOUNDED
@given(body=arbitrary_api)
def test_any_bytes_as_an_api_answer_give_well_formed_papers_or_a_parse_error(body: bytes) -> None:
    """Noise, any JSON, and lists of items with hostile fields."""
    attempt(parse_daily_api, body)


@BOUNDED
@given(body=st.one_of(arbitrary_pages, search_pages), api=arbitrary_api)
def test_any_bytes_as_a_search_page_or_answer_give_well_formed_papers_or_a_parse_error(body: bytes,
                                                                                       api: bytes) -> None:
    """The search readers: the same hostile input, results each with its own featured day."""
    attempt(search_page, body, SEARCH)
    attempt(search_api, api, SEARCH)


# --------------------------------------------------------------------------------------------
# Mangled real pages
# --------------------------------------------------------------------------------------------

BROKEN_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80",
               b"\xf8\x88\x80\x80\x80", b"\x80", b"\x00")
BROKEN_ENTITIES = (b'"', b"&quot", b"&amp;quot;", b"&qu", b"&#34", b"&#x22", b"&#0;", b"&#xD800;",
                   b"&#x110000;", b"&#99999999999;", b"&", b"&;", b"&lt;", b"&#x27")
NOT_JSON = (b"", b"{", b"null", b"[]", b"{}", b"&quot;", b"{&quot;dailyPapers&quot;:5}", b"undefined",
            b"{&quot;dailyPapers&quot;:[], &quot;dateString&quot;:&quot;2025-03-05&quot;}", b"\xff\xfe",
            b"{'dailyPapers': []}", b"&lt;script&gt;")


def mangle_bytes(draw: st.DrawFn, sample: Sample, body: bytes) -> bytes:
    """One random damage to ``body``, as a broken server, proxy or template would do it."""
    size = len(body)
    position = draw(st.integers(0, size))
    kind = draw(st.sampled_from(("truncate", "flip", "overwrite", "insert", "delete", "duplicate",
                                 "utf8", "entity", "not_json")))
    note(f"{kind} at {position}")
    if kind == "truncate":
        return body[:position]
    if kind in ("flip", "overwrite") and position < size:
        new = body[position] ^ (1 << draw(st.integers(0, 7))) if kind == "flip" else draw(st.integers(0, 255))
        return body[:position] + bytes([new]) + body[position + 1:]
    if kind == "insert":
        return body[:position] + draw(st.binary(min_size=1, max_size=12)) + body[position:]
    if kind in ("delete", "duplicate"):
        length = draw(st.integers(1, 64) | st.integers(1, max(1, size - position)))
        chunk = body[position:position + length]
        return body[:position] + (chunk * 2 if kind == "duplicate" else b"") + body[position + length:]
    if kind == "utf8":
        return body[:position] + draw(st.sampled_from(BROKEN_UTF8)) + body[position:]
    if kind == "entity" and sample.ampersands:
        at = draw(st.sampled_from(sample.ampersands))
        end = body.find(b";", at, at + 10)
        if end != -1:
            return body[:at] + draw(st.sampled_from(BROKEN_ENTITIES)) + body[end + 1:]
    if kind == "not_json" and sample.props_span is not None:
        start, end = sample.props_span
        return body[:start] + draw(st.sampled_from(NOT_JSON) | st.binary(max_size=40)) + body[end:]
    return body


@st.composite
def mangled(draw: st.DrawFn, sample: Sample) -> bytes:
    body = sample.body
    for _ in range(draw(st.integers(1, 3))):
        body = mangle_bytes(draw, sample, body)
    return body


def check_never_another_days_papers(sample: Sample, body: bytes, page: DayPage | None) -> None:
    """A page showing another day stays "no papers" however it is damaged, unless the damage
    wrote the asked-for date into it."""
    if sample is WEEKEND and page is not None and page.papers:
        assert sample.day.isoformat().encode() in body, "another day's papers taken for the asked day"


@pytest.mark.parametrize("sample", (*SAMPLE_SET, SEARCH_PAGE, SEARCH_API), ids=lambda s: s.name)
@REAL
@given(data=st.data())
def test_mangled_real_pages_give_well_formed_papers_or_a_parse_error(sample: Sample, data: st.DataObject) -> None:
    """Up to three damages: cuts, flipped, inserted, deleted or doubled bytes, broken UTF-8 and
    entities, a data attribute that is not JSON; and a weekend page never gives papers."""
    body = data.draw(mangled(sample))
    page = attempt(sample.parse, body, sample.day)
    check_never_another_days_papers(sample, body, page)


def real_papers_only(sample: Sample, page: DayPage | None) -> None:
    """A damaged page may lose papers, never change them: each one it gives is the real one."""
    if page is None:
        return
    real = {p.id: p for p in sample.reference.papers}
    assert page.empty_reason == sample.reference.empty_reason
    for paper in page.papers:
        assert paper == real.get(paper.id), f"{paper.id} differs from the real page"


@pytest.mark.parametrize("sample", SAMPLE_SET, ids=lambda s: s.name)
@REAL
@given(data=st.data())
def test_a_truncated_real_page_is_an_error_or_a_subset_of_the_real_papers(sample: Sample,
                                                                          data: st.DataObject) -> None:
    """A page cut anywhere loses papers or fails, never gives a wrong value."""
    body = sample.body[:data.draw(st.integers(0, len(sample.body)))]
    real_papers_only(sample, attempt(sample.parse, body, sample.day))


@pytest.mark.parametrize("sample", (DAILY, CARDS, WEEKEND), ids=lambda s: s.name)
def test_a_real_page_cut_at_a_tag_boundary_is_an_error_or_a_subset_of_the_real_papers(sample: Sample) -> None:
    """Cuts just before or after a tag, where a cut page looks most whole: sixty of them,
    spread over the page."""
    body = sample.body
    cuts = sorted({m.start() for m in re.finditer(rb"<", body)} | {m.end() for m in re.finditer(rb">", body)})
    for cut in cuts[::max(1, len(cuts) // 60)]:
        real_papers_only(sample, attempt(sample.parse, body[:cut], sample.day))


# --------------------------------------------------------------------------------------------
# Mangled hydration data: wrong types and hostile values anywhere in the real JSON
# --------------------------------------------------------------------------------------------

JSON_SAMPLES = (DAILY, WEEKEND, API, SEARCH_PAGE)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()  # as a value: remove the key


@st.composite
def json_path(draw: st.DrawFn, root: Any, papers_key: str | None) -> list[Any]:
    """A path from ``root`` to one of its values, mostly inside the list of papers, often deep
    in one paper (its title, an author's name)."""
    path: list[Any] = []
    node = root
    if papers_key is not None and draw(st.integers(0, 9)):
        path, node = [papers_key], node[papers_key]
    while isinstance(node, (dict, list)) and node:
        key = draw(st.sampled_from(sorted(node)) if isinstance(node, dict) else st.integers(0, len(node) - 1))
        path.append(key)
        node = node[key]
        if not draw(st.sampled_from((True, True, False))):
            break
    return path


def replaced(root: Any, path: list[Any], value: Any) -> Any:
    """A copy of ``root`` with the value at ``path`` replaced (or removed, for MISSING)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(root) if isinstance(root, dict) else list(root)
    if rest:
        copy[head] = replaced(root[head], rest, value)
    elif value is MISSING:
        del copy[head]
    else:
        copy[head] = value
    return copy


def at_path(root: Any, path: list[Any]) -> Any:
    for key in path:
        root = root[key]
    return root


def paper_id_of(item: object) -> object:
    paper = item.get("paper") if isinstance(item, dict) else None
    return paper.get("id") if isinstance(paper, dict) else None


@pytest.mark.parametrize("sample", JSON_SAMPLES, ids=lambda s: s.name)
@REAL
@given(data=st.data())
def test_hostile_values_in_the_real_json_never_crash_or_change_other_papers(sample: Sample,
                                                                            data: st.DataObject) -> None:
    """One value anywhere in the real data replaced by a hostile one (or removed): the other
    papers come out exactly as before."""
    root = sample.data
    path = data.draw(json_path(root, sample.papers_key))
    value = data.draw(hostile | st.just(MISSING)) if path else data.draw(hostile)
    note(f"{path} = {value!r:.200}")
    mangled_root = replaced(root, path, value)
    body = sample.encode(mangled_root)
    page = attempt(sample.parse, body, sample.day)
    check_never_another_days_papers(sample, body, page)
    if page is None or page.empty_reason is not None:
        return
    # The papers the change did not touch are exactly as before.
    to_list = [sample.papers_key] if sample.papers_key else []
    if path[:len(to_list)] != to_list or len(path) <= len(to_list):
        return  # the list itself or the page around it changed
    index = path[len(to_list)]
    before, after = at_path(root, to_list), at_path(mangled_root, to_list)
    touched = [paper_id_of(before[index]), paper_id_of(after[index]) if index < len(after) else None]
    real = {p.id: p for p in sample.reference.papers}
    for paper in page.papers:
        if paper.id not in touched:
            assert paper == real[paper.id], f"{paper.id} changed though only {path} was"


@pytest.mark.parametrize("sample", (DAILY, WEEKEND), ids=lambda s: s.name)
@REAL
@given(data=st.data())
def test_a_page_not_showing_the_asked_day_never_gives_papers(sample: Sample, data: st.DataObject) -> None:
    """A changed, missing or wrongly typed dateString or periodType is no papers, or an error."""
    asked = sample.day.isoformat()
    key = data.draw(st.sampled_from(("dateString", "periodType")))
    wrong = hostile.filter(lambda v: v != asked) if key == "dateString" else hostile.filter(lambda v: v != "day")
    other_dates = st.dates().map(dt.date.isoformat).filter(lambda v: v != asked)
    odd = st.sampled_from([MISSING, asked + " ", asked + "\n", asked.replace("-", "/")])
    periods = st.sampled_from(["week", "month", "Day", " day"])
    value = data.draw(wrong | other_dates | odd if key == "dateString" else wrong | periods)
    note(f"{key} = {value!r:.200}")
    props = replaced(sample.data, [key], value)
    page = attempt(sample.parse, sample.encode(props), sample.day)
    assert page is None or (page.papers == () and page.empty_reason), page


# --------------------------------------------------------------------------------------------
# The fetcher and redirects
# --------------------------------------------------------------------------------------------


class Listener:
    """A TCP port that only counts who connects: proof that a redirect target was never contacted."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@dataclass
class Elsewhere:
    """Ports beside the fake site: another port on its address, another loopback address, IPv6."""

    other_port: Listener
    other_host: Listener | None
    v6: Listener | None

    @property
    def listeners(self) -> list[Listener]:
        return [x for x in (self.other_port, self.other_host, self.v6) if x is not None]

    def fill(self, template: str, site: FakeHF) -> str:
        # Port 1 where a listener is missing: nothing answers there either.
        return template.format(port=Url(site.base_url).port, other=self.other_port.port,
                               lo2=self.other_host.port if self.other_host else 1,
                               v6=self.v6.port if self.v6 else 1)


async def open_elsewhere(stack: contextlib.AsyncExitStack) -> Elsewhere:
    other_port = await stack.enter_async_context(Listener("127.0.0.1"))
    optional: list[Listener | None] = []
    for host in ("127.0.0.2", "::1"):  # not every machine routes all of 127/8, or has IPv6
        try:
            optional.append(await stack.enter_async_context(Listener(host)))
        except OSError:
            optional.append(None)
    return Elsewhere(other_port, *optional)


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    async with contextlib.AsyncExitStack() as stack:
        yield await open_elsewhere(stack)


REFUSED_TARGETS = [
    "http://localhost:{port}/papers/date/2025-03-05",            # the same server under another name
    "http://127.0.0.1:{other}/papers/date/2025-03-05",            # another port
    "http://127.0.0.2:{lo2}/papers/date/2025-03-05",              # another host
    "https://127.0.0.1:{port}/papers/date/2025-03-05",            # another scheme
    "http://10.0.0.1/papers/date/2025-03-05",                     # private addresses
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",                   # cloud metadata
    "http://[::1]:{v6}/papers/date/2025-03-05",
    "http://[::ffff:127.0.0.1]:{port}/papers/date/2025-03-05",
    "file:///etc/passwd",
    "ftp://127.0.0.1:{port}/papers/date/2025-03-05",
    "data:text/html,<h1>papers</h1>",
    "javascript:alert(1)",
    "//evil.example/x",                                           # scheme-relative
    "//127.0.0.2:{lo2}/papers/date/2025-03-05",
    "http://127.0.0.1:{port}@evil.example/",                      # userinfo tricks
    "http://127.0.0.1:{port}@127.0.0.2:{lo2}/",
    "http://evil.example\\@127.0.0.1:{port}/papers/date/2025-03-05",
    "http://user:secret@127.0.0.1:{port}/papers/date/2025-03-05",  # credentials, even to the site
    "http://evil.example",
    "  //evil.example/x",
    "http://127.0.0.1:99999/",
    "http://[::1",
]


@pytest.mark.parametrize("target", REFUSED_TARGETS)
async def test_a_redirect_off_the_site_is_refused_and_its_target_never_contacted(
        fake_hf: FakeHF, elsewhere: Elsewhere, tmp_path: Path, target: str) -> None:
    """Another origin, a private address, another scheme or credentials: refused, naming the URL."""
    location = elsewhere.fill(target, fake_hf)
    fake_hf.days[DAY] = [FakeHF.make_item(DAY, n) for n in range(3)]
    url = day_url(fake_hf.base_url, dt.date(2025, 3, 8))
    fake_hf.fail("/papers/date/2025-03-08", Fault.redirect(location))
    async with Fetcher(load_config(write_config(tmp_path / "c.toml", fake_hf.base_url)).source) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.get(url)
    message = str(caught.value)
    assert message.startswith(f"{url}: refused redirect to "), message
    check_text(message, "FetchError message")
    assert [r.path for r in fake_hf.requests] == ["/papers/date/2025-03-08"]
    assert all(x.connections == 0 for x in elsewhere.listeners)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_every_redirect_code_is_held_to_the_site(fake_hf: FakeHF, elsewhere: Elsewhere, tmp_path: Path,
                                                       code: int) -> None:
    """301, 302, 303, 307 and 308 alike."""
    url = day_url(fake_hf.base_url, DAY)
    fake_hf.fail(f"/papers/date/{DAY}", Fault.redirect(f"http://127.0.0.1:{elsewhere.other_port.port}/", code))
    async with Fetcher(load_config(write_config(tmp_path / "c.toml", fake_hf.base_url)).source) as fetcher:
        with pytest.raises(FetchError, match="refused redirect"):
            await fetcher.get(url)
    assert elsewhere.other_port.connections == 0


@pytest.mark.parametrize(
    "loop",
    [
        ["/papers/date/2025-03-08"],                                  # to itself
        ["/papers/date/2025-03-09", "/papers/date/2025-03-08"],       # A -> B -> A
        [f"/papers/date/2025-03-{d:02d}" for d in range(9, 20)],      # a chain longer than the limit
    ],
)
async def test_redirect_loops_end_in_an_error_naming_the_url(fake_hf: FakeHF, tmp_path: Path,
                                                             loop: list[str]) -> None:
    """A loop, or a chain too long, ends within the redirect limit."""
    hops = ["/papers/date/2025-03-08", *loop]
    for here, there in itertools.pairwise(hops):
        fake_hf.fail(here, *[Fault.redirect(there)] * 10)
    url = day_url(fake_hf.base_url, dt.date(2025, 3, 8))
    async with Fetcher(load_config(write_config(tmp_path / "c.toml", fake_hf.base_url)).source) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.get(url)
    assert str(caught.value).startswith(f"{url}: ") and "redirect" in str(caught.value)
    assert len(fake_hf.requests) <= MAX_REDIRECTS + 1


@pytest.mark.parametrize(
    "target",
    [
        "/papers/date/2025-03-05",
        "http://127.0.0.1:{port}/papers/date/2025-03-05",
        "HTTP://127.0.0.1:{port}/papers/date/2025-03-05",
        "//127.0.0.1:{port}/papers/date/2025-03-05",
        "../date/2025-03-05",
        "2025-03-05",
    ],
)
async def test_same_origin_redirects_are_followed_on_a_loopback_base_url(
        fake_hf: FakeHF, elsewhere: Elsewhere, tmp_path: Path, target: str) -> None:
    """The site itself may sit on 127.0.0.1 (a test, a mirror): its own redirects are fine."""
    fake_hf.days[DAY] = [FakeHF.make_item(DAY, n) for n in range(3)]
    fake_hf.fail("/papers/date/2025-03-08", Fault.redirect(elsewhere.fill(target, fake_hf)))
    async with Fetcher(load_config(write_config(tmp_path / "c.toml", fake_hf.base_url)).source) as fetcher:
        response = await fetcher.get(day_url(fake_hf.base_url, dt.date(2025, 3, 8)))
    assert response.status == 200 and response.final_url == day_url(fake_hf.base_url, DAY)
    assert [r.path for r in fake_hf.requests] == ["/papers/date/2025-03-08", "/papers/date/2025-03-05"]


# Locations assembled from the pieces URL parsers disagree on.
location_parts = st.tuples(
    st.sampled_from(["", " ", "\t", "http", "https", "HTTP", "file", "ftp", "data", "javascript", "hTTp"]),
    st.sampled_from(["", "://", ":", ":/", ":///", "//", "/", "\\\\", ":\\\\", ":\\/"]),
    st.sampled_from(["", "user@", "user:pw@", "127.0.0.1:{port}@", "evil.example\\@", "@", ":@", "%40@"]),
    st.sampled_from(["127.0.0.1", "localhost", "127.0.0.2", "[::1]", "10.0.0.1", "169.254.169.254", "evil.example",
                     "127.1", "0x7f000001", "2130706433", "", "127.0.0.1.", "[::ffff:127.0.0.1]", "127.0.0.1%2f"]),
    st.sampled_from(["", ":{port}", ":{other}", ":{lo2}", ":{v6}", ":0", ":99999", ":80", ":", ":{port}:{port}"]),
    st.sampled_from(["", "/", "/papers/date/2025-03-05", "/x?y#z", "\\x", "/%2e%2e/", "/..", "#@evil.example",
                     "?@evil.example/", "/\u00e9", "/%00"]),
).map("".join)
locations = st.one_of(
    location_parts,
    # The fake site (aiohttp) refuses to send control characters in a header, as it should.
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=40).map(
        lambda s: s.replace("{", "{{").replace("}", "}}")),
)


@settings(parent=BOUNDED, max_examples=50)
@given(location=locations)
def test_no_location_at_all_takes_the_fetcher_off_the_site(tmp_path_factory: pytest.TempPathFactory,
                                                           location: str) -> None:
    """Whatever the Location, the fetcher ends on the site or refuses, and contacts no one else."""
    asyncio.run(_follow_one(tmp_path_factory.mktemp("cfg"), location))


async def _follow_one(folder: Path, template: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        site = await stack.enter_async_context(FakeHF())
        where = await open_elsewhere(stack)
        location = where.fill(template, site)
        note(f"Location: {location!r}")
        site.days[DAY] = [FakeHF.make_item(DAY, 0)]
        site.fail("/papers/date/2025-03-08", Fault.redirect(location))
        url = day_url(site.base_url, dt.date(2025, 3, 8))
        source = load_config(write_config(folder / "c.toml", site.base_url, retries=0)).source
        async with Fetcher(source) as fetcher:
            try:
                response = await fetcher.get(url)
            except FetchError as exc:
                message = str(exc)
                assert message.startswith(f"{url}: "), message
                check_text(message, "FetchError message")
                # Refused before any contact: a connection error means someone else was tried.
                reason = message.removeprefix(f"{url}: ")
                assert not reason.startswith(("connection", "timed out")), message
            else:
                final = Url(response.final_url)
                assert (final.scheme, final.host, final.port) == (Url(site.base_url).scheme, "127.0.0.1",
                                                                  Url(site.base_url).port)
                assert final.user is None and final.password is None
        assert all(x.connections == 0 for x in where.listeners), location

