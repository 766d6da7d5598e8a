"""Pure functions from the bytes the site served to papers.

A daily page embeds its data as entity-escaped JSON in the ``data-props`` attribute of the
element whose ``data-target`` is ``DailyPapers``; that is read first. When the element is
missing the visible ``<article>`` cards are read instead (fewer fields, logged). A 200 page
with neither is a changed page, an error, never "no papers". A page that shows another day
than the one asked for (weekends, holidays) means that day has no papers; a page that does not
say which day it shows is an error, never papers of the day asked for.

Everything on the page is untrusted: whatever the bytes, the result is a ParseError or papers
whose texts are one clean line each (see ``clean_text``) and whose counts are sane integers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from paperwatch.errors import ParseError
from paperwatch.models import DayPage, PageSource, Paper

log = logging.getLogger(__name__)

DATA_TARGET = "DailyPapers"
CHALLENGE = "the site answered with a challenge page"
# The largest count kept: exact in every JSON reader and within SQLite's INTEGER.
MAX_COUNT = 2**53 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: the whole of Unicode's Cc
# Embeddings, overrides and isolates reorder the text after them, beyond the field itself (a
# digest line, a log line), and are invisible: dropped. Marks (LRM, RLM) act on nothing else.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # from JSON's "\ud800"; no UTF-8 encoder takes them
# One path segment, or two for old-style arXiv ids ("hep-th/9901001"); never "." or "..".
_PAPER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_PAPER_ID_MAX = 64
_DIGITS = re.compile(r"[0-9][0-9,]*")
_DIGITS_MAX = 15  # more is nonsense, and int() refuses past 4300 digits
_HREF_ID = re.compile(r"/papers/([^/?#]+)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CHALLENGE_MARK = re.compile(r"challenge|captcha|gokuProps|awswaf|cf-chl|just a moment|verify you are human",
                             re.IGNORECASE)
_PLAIN = re.compile(r"[\w.:+-]{1,40}", re.ASCII)


def clean_text(value: object) -> str | None:
    """Collapse runs of whitespace and control characters to one space and trim; non-text is None.

    Bidi embeddings, overrides and isolates are dropped and lone surrogates become U+FFFD, so
    the result is one line that prints, encodes and stores as it reads.
    """
    if value.__class__ is not str:
        return None if value is None else _clean_other(value)
    # Fast path for the common shapes (a clean name; an abstract with arXiv's hard line breaks):
    # a few C-level scans instead of splitting a long text into words.
    text = value.replace("\n", " ") if "\n" in value else value
    if "  " not in text and text[:1] != " " and text[-1:] != " " and _printable(text):
        return text or None
    return _clean_slow(text)


_ASCII_PRINTABLE = bytes(range(0x20, 0x7F))


def _printable(text: str) -> bool:
    """``text.isprintable()``: for ASCII text, most of what the site sends, from one byte pass
    in C rather than a lookup in the Unicode database per character (half the time)."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _ASCII_PRINTABLE)
    return text.isprintable()


def _clean_other(value: object) -> str | None:
    return _clean_slow(value) if isinstance(value, str) else None


def _clean_slow(text: str) -> str | None:
    # str.split() handles every Unicode space in C; the regexes are for the rare other characters.
    text = " ".join(text.split())
    if not text.isprintable():
        text = _SURROGATE.sub("\ufffd", _BIDI.sub("", _CONTROL.sub(" ", text)))
        text = " ".join(text.split())
    return text or None


def parse_daily_page(body: bytes, *, day: dt.date, url: str) -> DayPage:
    """Read one ``/papers/date/DAY`` page; raise ParseError when its shape is unknown."""
    check_nesting(body, url)
    tree = LexborHTMLParser(body)
    node = tree.css_first(f'[data-target="{DATA_TARGET}"]')
    if node is not None:
        return _from_props(_props(node, url), day=day, url=url)
    cards = tree.css("article")
    if cards:
        # The day's line says "read from the cards" already: this is the detail for -vv.
        log.debug("%s: no hydration JSON on the page, reading its %d cards instead", url, len(cards))
        return _from_cards(body, tree, cards, day=day, url=url)
    if is_challenge(tree):
        raise ParseError(url, CHALLENGE)
    raise ParseError(url, "page has changed shape: neither the DailyPapers data nor paper cards found")


def is_challenge(page: bytes | LexborHTMLParser) -> bool:
    """Whether a page is a bot check rather than the site's papers: no data, no cards, no link to
    a paper (a redesign still links its papers), and the marks of a challenge (AWS WAF's,
    Cloudflare's, a captcha) instead."""
    tree = LexborHTMLParser(page) if isinstance(page, bytes) else page
    if tree.css_first(f'[data-target="{DATA_TARGET}"]') is not None or tree.css_first("article") is not None:
        return False
    if any(_HREF_ID.match(node.attributes.get("href") or "") for node in tree.css("a[href]")):
        return False
    return _CHALLENGE_MARK.search(tree.html or "") is not None


def parse_daily_api(body: bytes, *, day: dt.date, url: str) -> DayPage:
    """Read one page of ``/api/daily_papers?date=DAY``: a JSON array of items."""
    return parse_daily_api_page(body, day=day, url=url)[0]


def parse_daily_api_page(body: bytes, *, day: dt.date, url: str) -> tuple[DayPage, int]:
    """One page of the API and how many items it listed (kept or not), to know if it was full."""
    items = _json(body, url)
    if not isinstance(items, list):
        raise ParseError(url, f"expected a JSON array of papers, got {type(items).__name__}")
    return DayPage(day=day, papers=_papers(items, day=day, url=url), source=PageSource.API), len(items)


def _props(node: LexborNode, url: str) -> Mapping[str, Any]:
    raw = node.attributes.get("data-props")
    if not raw:
        raise ParseError(url, "the DailyPapers element has no data-props")
    props = _json(raw, url)
    if not isinstance(props, dict):
        raise ParseError(url, "the DailyPapers data is not a JSON object")
    return props


def _json(raw: str | bytes, url: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ParseError(url, f"broken JSON ({exc})") from exc
    except RecursionError:
        raise ParseError(url, "broken JSON (nested too deeply)") from None


def _from_props(props: Mapping[str, Any], *, day: dt.date, url: str) -> DayPage:
    items = props.get("dailyPapers")
    if not isinstance(items, list):
        raise ParseError(url, "the DailyPapers data has no dailyPapers list")
    period = props.get("periodType", "day")  # absent on older day pages
    if period in ("week", "month"):
        return DayPage(day=day, papers=(), source=PageSource.JSON, empty_reason=f"page shows a {period} view")
    if period != "day":
        raise ParseError(url, f"the DailyPapers data has an unknown periodType {_shown(period)}")
    shown = _shown_day(props)
    if shown is None:
        date = f", date {_shown(props['date'])}" if "date" in props else ""
        raise ParseError(url, "the DailyPapers data does not say which day it shows "
                              f"(dateString {_shown(props.get('dateString'))}{date})")
    if shown != day.isoformat():
        return DayPage(day=day, papers=(), source=PageSource.JSON, empty_reason=f"page shows {shown}")
    return DayPage(day=day, papers=_papers(items, day=day, url=url), source=PageSource.JSON)


def _shown_day(props: Mapping[str, Any]) -> str | None:
    """The day a page shows: ``dateString`` (2025 on), else ``date``, an ISO timestamp (2024)
    whose UTC date is the day."""
    shown = props.get("dateString")
    if isinstance(shown, str) and _DATE.fullmatch(shown):
        return shown
    stamp = props.get("date")
    if not isinstance(stamp, str) or not _DATE.match(stamp):
        return None
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.date().isoformat()


def _shown(value: object) -> str:
    """A value from the page, fit for a one-line message: as is when plain, else quoted and cut short."""
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) else " ".join(json.dumps(value[:40]).split())
    if isinstance(value, (list, dict)):
        return f"<{type(value).__name__}>"
    return " ".join(json.dumps(value).split())[:40]


def parse_search_api(body: bytes, *, url: str) -> tuple[Paper, ...]:
    """Read ``/api/papers/search?q=...``: a JSON array of items, ranked, each paper with its own
    featured day. An item is either wrapped like a day's (``{"paper": {...}, ...}``) or flat
    (``{"id", "title", "thumbnailUrl", "source"}``, as the site served it in 2024): a flat one
    becomes an incomplete paper, to be completed from ``/api/papers/{id}``."""
    items = _json(body, url)
    if not isinstance(items, list):
        raise ParseError(url, f"expected a JSON array of papers, got {type(items).__name__}")
    return _papers([_wrapped(item) for item in items], day=None, url=url)


def parse_paper_api(body: bytes, *, url: str) -> Paper:
    """Read ``/api/papers/{id}``: one paper object, the ``paper`` of a day's item."""
    data = _json(body, url)
    if not isinstance(data, dict):
        raise ParseError(url, f"expected a JSON object, got {type(data).__name__}")
    item = {"paper": data}
    paper = _paper(item, _featured(item))
    if paper is None:
        raise ParseError(url, "the paper has no id or no title")
    return paper


def _wrapped(item: object) -> object:
    """A flat search result in the shape of a day's item, marked incomplete: it has no abstract
    and often no authors, and must not replace what a day's page stored."""
    if not isinstance(item, dict) or isinstance(item.get("paper"), dict) or "id" not in item:
        return item
    return {"paper": item, "_flat": True}


def parse_search_page(body: bytes, *, url: str) -> tuple[Paper, ...]:
    """Read ``/papers?q=...``: the same data element as a day's page, its ``searchResults`` list."""
    check_nesting(body, url)
    node = LexborHTMLParser(body).css_first(f'[data-target="{DATA_TARGET}"]')
    if node is None:
        raise ParseError(url, "page has changed shape: no DailyPapers data on the search page")
    items = _props(node, url).get("searchResults")
    if not isinstance(items, list):
        raise ParseError(url, "page has changed shape: the search page carries no searchResults list")
    return _papers([_wrapped(item) for item in items], day=None, url=url)


def _papers(items: Iterable[Any], *, day: dt.date | None, url: str) -> tuple[Paper, ...]:
    papers: dict[str, Paper] = {}
    skipped = 0
    for item in items:
        paper = _paper(item, day or _featured(item)) if isinstance(item, dict) else None
        if paper is None:
            skipped += 1
        else:
            papers.setdefault(paper.id, paper)
    if skipped:
        if not papers:
            raise ParseError(url, f"none of the {skipped} papers listed has an id and a title")
        log.warning("%s: skipped %d papers without an id or title", url, skipped)
    return tuple(papers.values())


def _featured(item: Mapping[str, Any]) -> dt.date | None:
    """The day a search result was featured on (``submittedOnDailyAt``), if it says."""
    paper = item.get("paper")
    stamp = paper.get("submittedOnDailyAt") if isinstance(paper, dict) else None
    if not isinstance(stamp, str) or not _DATE.match(stamp):
        return None
    try:
        return dt.date.fromisoformat(stamp[:10])
    except ValueError:
        return None


def _paper(item: Mapping[str, Any], day: dt.date | None) -> Paper | None:
    paper = item.get("paper")
    if not isinstance(paper, dict):
        return None
    paper_id = paper.get("id")
    title = clean_text(item.get("title")) or clean_text(paper.get("title"))
    if not isinstance(paper_id, str) or not _is_paper_id(paper_id) or title is None:
        return None
    return Paper(
        id=paper_id,
        title=title,
        complete=not item.get("_flat"),
        ai_summary=clean_text(paper.get("ai_summary")) or clean_text(item.get("ai_summary")),
        summary=clean_text(paper.get("summary")) or clean_text(item.get("summary")),
        authors=_authors(paper.get("authors")),
        daily_date=day,
        published_at=_timestamp(paper.get("publishedAt")) or _timestamp(item.get("publishedAt")),
        upvotes=_count(paper.get("upvotes")),
        comments=_count(item.get("numComments")),
        github_repo=clean_text(paper.get("githubRepo")),
        github_stars=_count(paper.get("githubStars")),
        project_page=clean_text(paper.get("projectPage")),
        organization=_organization(item.get("organization")) or _organization(paper.get("organization"))
        or _organization(item.get("submitterOrganization")),
        ai_keywords=_strings(paper.get("ai_keywords")),
    )


def _authors(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    # The paper's own author names, never the HF account (``user``) that claimed one.
    names: list[Any] = [a.get("name") for a in value if isinstance(a, dict)]
    if _all_clean(names):
        return tuple(names)
    return tuple(name for name in map(clean_text, names) if name)


def _all_clean(texts: list[Any]) -> bool:
    """Whether every one of ``texts`` is a text ``clean_text`` keeps as it is, and none is
    empty: checked on all of them joined, a few scans in C instead of a call each. A text
    holding the separator may fail the check; it then goes the long way, with the same result."""
    try:
        joined = "|".join(texts)
    except TypeError:  # one that is no text
        return False
    return (_printable(joined) and "  " not in joined and " |" not in joined and "| " not in joined
            and "||" not in joined and joined[:1] not in (" ", "|") and joined[-1:] not in (" ", "|")
            and (bool(joined) or not texts))


def _organization(value: object) -> str | None:
    if not isinstance(value, dict):
        return None
    return clean_text(value.get("fullname")) or clean_text(value.get("name"))


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    if _all_clean(value):
        return tuple(value)
    return tuple(s for s in map(clean_text, value) if s)


def _is_paper_id(value: str) -> bool:
    return len(value) <= _PAPER_ID_MAX and _PAPER_ID.fullmatch(value) is not None


def _timestamp(value: object) -> str | None:
    """An ISO 8601 date or time as the site wrote it; anything else is None."""
    text = clean_text(value)
    if text is None:
        return None
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return text


def _count(value: object) -> int | None:
    # bool is an int subclass, and a count of True is nonsense
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return None


def _from_cards(body: bytes, tree: LexborHTMLParser, cards: list[LexborNode], *, day: dt.date,
                url: str) -> DayPage:
    # The parser closes whatever a cut page left open, so the last card of a cut page looks whole
    # with its title or counts cut short: only a page that ends is read.
    if body.rstrip()[-7:].lower() != b"</html>":
        raise ParseError(url, "page is cut short (no </html> at its end): its cards can't be trusted")
    time = tree.css_first("time[datetime]")
    shown = (time.attributes.get("datetime") or "") if time is not None else ""
    if not _DATE.match(shown):
        raise ParseError(url, f"page has changed shape: its cards do not say which day they show "
                              f"(time {_shown(shown or None)})")
    if shown[:10] != day.isoformat():
        return DayPage(day=day, papers=(), source=PageSource.CARDS, empty_reason=f"page shows {shown[:10]}")
    papers = {p.id: p for p in (_card(card, day) for card in cards) if p is not None}
    if not papers:
        raise ParseError(url, f"page has changed shape: none of its {len(cards)} cards has a paper link")
    return DayPage(day=day, papers=tuple(papers.values()), source=PageSource.CARDS)


def _card(card: LexborNode, day: dt.date) -> Paper | None:
    link = card.css_first("h3 a[href]")
    match = _HREF_ID.fullmatch(link.attributes.get("href") or "") if link is not None else None
    if link is None or match is None:
        return None
    paper_id, title = match.group(1), clean_text(link.text())
    if not _is_paper_id(paper_id) or title is None:
        return None
    comments = card.css_first(f'a[href="/papers/{paper_id}#community"]')
    return Paper(
        id=paper_id,
        title=title,
        authors=tuple(n for n in (clean_text(li.attributes.get("title")) for li in card.css("ul > li[title]")) if n),
        daily_date=day,
        upvotes=_card_upvotes(card),
        comments=_number(comments.text()) if comments is not None else None,
        complete=False,
    )


def _card_upvotes(card: LexborNode) -> int | None:
    for selector in ("label div.leading-none", "div.shadow-alternate div.leading-none"):
        node = card.css_first(selector)
        if node is not None:
            return _number(node.text())
    upvote = re.search(r"Upvote\s+([0-9][0-9,]*)", card.text())
    return _number(upvote.group(1)) if upvote else None


def _number(text: str) -> int | None:
    found = _DIGITS.search(text)
    digits = found.group().replace(",", "") if found else ""
    return _count(int(digits)) if 0 < len(digits) <= _DIGITS_MAX else None


# --- nesting, before the HTML parser sees a page ---------------------------------------------

# The HTML parser's time grows with the square of the nesting: 20,000 elements open at once take
# it seconds, 200,000 minutes, and it cannot be stopped. The site's pages nest about 30 deep.
MAX_NESTING = 1_000
_MARKUP = re.compile(rb"<!--|<(/?)([A-Za-z][A-Za-z0-9-]*)")
_VOID = frozenset(b"area base br col embed hr img input keygen link meta param source track wbr".split())
_RAW_TEXT = {name: re.compile(b"</" + name, re.IGNORECASE)
             for name in (b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes")}
_FOREIGN = frozenset((b"svg", b"math"))
# Tags that end SVG or MathML content: from there on "<x/>" opens an element again.
_BREAKOUT = frozenset(b"b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img "
                      b"li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var"
                      .split())


def check_nesting(body: bytes, url: str) -> None:
    """Raise ParseError when the markup holds more than MAX_NESTING elements open at once.

    A count of start and end tags in one linear pass, erring on the deep side: an end tag
    left out (``<p>``, ``<li>``) counts as still open, and ``<x/>`` closes only inside SVG or
    MathML, as the HTML parser reads it."""
    # Fewer start tags than that, whatever they are: the usual page, checked in C. The count of
    # "<" by replace, which finds them with memchr: bytes.count tests byte by byte, 5x slower.
    starts = len(body) - len(body.replace(b"<", b""))
    if starts <= MAX_NESTING or starts - body.count(b"</") <= MAX_NESTING:
        return
    depth = foreign = 0
    position = 0
    while (found := _MARKUP.search(body, position)) is not None:
        position = found.end()
        if found.group(2) is None:  # a comment: nothing in it is markup
            end = body.find(b"-->", position)
            position = len(body) if end < 0 else end + 3
            continue
        name = found.group(2).lower()
        if found.group(1):
            depth = max(0, depth - 1)
            foreign = max(0, foreign - (name in _FOREIGN))
            continue
        if name in _VOID:
            continue
        if foreign and name in _BREAKOUT:
            foreign = 0
        end = body.find(b">", position)
        if foreign and end > 0 and body[end - 1:end] == b"/":
            continue
        depth += 1
        foreign += name in _FOREIGN
        if depth > MAX_NESTING:
            raise ParseError(url, f"page has changed shape: elements nested over {MAX_NESTING} deep "
                                  "(a real page nests about 30), not read")
        raw = _RAW_TEXT.get(name)
        if raw is not None:  # script and style text is not markup
            closing = raw.search(body, position)
            position = len(body) if closing is None else closing.start()
