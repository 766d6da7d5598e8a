"""Digest composition: one reader's matched papers → subject, plain text, HTML and the message.

Pure: the templates are read once, by :meth:`Templates.load` at start-up, and nothing else
touches the disk or the network. Everything from the site is untrusted text: the HTML
template autoescapes (switched on explicitly, whatever the file is called), links pass
:func:`safe_url`, header values lose control characters and line breaks and are cut to
length, and templates from a directory run in Jinja's immutable sandbox, so someone's own
template cannot reach Python internals. Any failure inside a template becomes a :class:`TemplateError`
naming the template and line; the caller then leaves that reader's papers pending.

What a template sees (the packaged ones in ``templates/`` are the reference):

    info        DigestInfo (reader, address) headline   "Hugging Face Daily Papers, 3–5 Mar 2025: ..."
    count       papers in this mail          omitted    papers the size budget left for the next
    matched     count + omitted              more_links (label, url, papers) of each day left out
    groups      Group(rule, entries) shown   more_url   one page listing the papers left out
    rules       the shown papers' best rules empty_reason  why nothing matched, or None

Each Entry has paper, title, abstract, authors, keywords, organization, rules, also, why,
marks (the matched texts per field), url (its Hugging Face page) and links (label, url).
Filters: ``highlight(text, marks)`` (HTML: escape, then <span class="hl"> styled inline),
``shorten(text, marks, limit)``, ``authors(names, marks)`` and ``day(date)``. The HTML
template's ``{% block card scoped %}`` (one paper, ``e``) is rendered once per paper shown,
and its CSS inlined once, at load.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import importlib.resources
import re
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from paperwatch.blocks import AttributePath, BlockMemo, memoizable_blocks
from paperwatch.errors import TemplateError
from paperwatch.filters import MONTHS, clean, day_label, fold, latex_text, register
from paperwatch.inlining import inline_html, preinline
from paperwatch.message import SUBJECT_LIMIT, QpLines, encoded_size, header_text
from paperwatch.models import HF_SITE, Paper

HTML_TEMPLATE, TEXT_TEMPLATE, SUBJECT_TEMPLATE = "digest.html.j2", "digest.txt.j2", "subject.txt.j2"
# Gmail clips an HTML part past ~102 KB and hides the rest behind "View entire message".
# Measured on the HTML part as sent (quoted-printable), which is what Gmail counts.
HTML_BUDGET = 100_000
# What a rule's heading adds to the page, generously, before its name: the page is checked whole after.
HEADING_ALLOWANCE = 300
MORE_LINKS = 7  # links to the pages of the papers left out, at most (by day, then week, then month)
URL_LIMIT = 2000
KEYWORDS_SHOWN = 8
FIELDS = ("title", "abstract", "authors", "ai_keywords", "organization")

_URL_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f\"'<>\\`]")


@dataclass(frozen=True, slots=True)
class Highlight:
    """A matched word, phrase or author as it appears in the paper, and the field it is in."""

    field: str
    text: str


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One matched paper: its rules (best first), what to highlight and why it matched."""

    paper: Paper
    rules: tuple[str, ...]
    highlights: tuple[Highlight, ...] = ()
    why: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DigestInfo:
    """What a digest covers: the days seen, how many papers they held, the schedule period."""

    reader: str
    email: str
    days: tuple[dt.date, ...]
    papers_seen: int
    period_start: dt.date | None
    period_end: dt.date | None
    more_url: str | None = None  # None: the Hugging Face page listing the days of the papers left out

    @property
    def address(self) -> str:
        """The bare address of ``email`` (which may be ``Name <user@host>``)."""
        return email.utils.parseaddr(self.email)[1] or self.email


@dataclass(frozen=True, slots=True)
class Rendered:
    """A composed digest; ``omitted`` papers were cut by the size budget."""

    subject: str
    text: str
    html: str
    omitted: int


@dataclass(frozen=True, slots=True)
class Marks:
    """The matched texts to highlight, per field."""

    title: tuple[str, ...] = ()
    abstract: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    ai_keywords: tuple[str, ...] = ()
    organization: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """One paper as the templates see it: text cleaned of control characters, links vetted."""

    paper: Paper
    title: str
    abstract: str
    authors: tuple[str, ...]
    keywords: tuple[str, ...]
    organization: str | None
    rules: tuple[str, ...]
    why: tuple[str, ...]
    marks: Marks
    url: str
    links: tuple[tuple[str, str], ...]

    @property
    def also(self) -> tuple[str, ...]:
        return self.rules[1:]


@dataclass(frozen=True, slots=True)
class Group:
    """The papers whose best rule is ``rule``."""

    rule: str
    entries: tuple[Entry, ...]


class Templates:
    """The three digest templates, compiled once and checked at start-up."""

    __slots__ = ("_files", "_html", "_html_blocks", "_original", "_subject", "_text", "_text_blocks")

    def __init__(self, html: Template, text: Template, subject: Template, files: Collection[str],
                 original: Callable[[], Template] | None = None) -> None:
        # ``original``: the HTML template as written, when ``html`` is it with its CSS inlined.
        self._html, self._text, self._subject, self._files = html, text, subject, files
        self._original = original
        # The blocks a run may render once for many digests (see blocks.py), by name.
        self._html_blocks: dict[str, tuple[AttributePath, ...]] = {}
        self._text_blocks: dict[str, tuple[AttributePath, ...]] = {}

    @classmethod
    def load(cls, directory: Path | None) -> Templates:
        """The packaged templates (None) or those in ``directory``; TemplateError if any is missing or broken."""
        sources = _packaged_sources() if directory is None else _directory_sources(directory)
        files = {filename for _source, filename in sources.values()}
        loader = _MemoryLoader(sources)
        html_env = _environment(loader, html=True, trusted=directory is None)
        text_env = _environment(loader, html=False, trusted=directory is None)
        try:
            text, subject = text_env.get_template(TEXT_TEMPLATE), text_env.get_template(SUBJECT_TEMPLATE)
            templates = (cls._packaged(html_env, text, subject, files) if directory is None
                         else cls._written(html_env, text, subject, sources, files))
            templates._text_blocks = memoizable_blocks(text_env, sources[TEXT_TEMPLATE][0])
        except Exception as exc:
            raise _template_error(exc, files, str(directory or "templates")) from exc
        # A trial run on a sample digest (and an empty one) finds an unknown variable, filter or
        # attribute now too; only what depends on the real papers can still fail later.
        templates.render(*_SAMPLE)
        templates.render(*_SAMPLE, memo=BlockMemo())
        templates.render(_SAMPLE[0], ())
        return templates

    @classmethod
    def _packaged(cls, html_env: Environment, text: Template, subject: Template, files: Collection[str]) -> Templates:
        """Ours, whose HTML template had its CSS inlined when it was written (``inlined_template``):
        starting needs neither the CSS inliner (2.5 MB resident) nor a second compile. The
        template as written is compiled only to name a line when a digest fails."""
        inlined = _packaged_inlined()
        templates = cls(html_env.from_string(inlined), text, subject, files,
                        original=cache(lambda: html_env.get_template(HTML_TEMPLATE)))
        templates._html_blocks = memoizable_blocks(html_env, inlined, skip=frozenset({"card"}))
        return templates

    @classmethod
    def _written(cls, html_env: Environment, text: Template, subject: Template,
                 sources: Mapping[str, tuple[str, str]], files: Collection[str]) -> Templates:
        """A template directory's, with the HTML template's CSS inlined now."""
        for name in sources:  # includes too, so a typo in one fails now, not at 8 am
            html_env.get_template(name)
        original = html_env.get_template(HTML_TEMPLATE)
        templates = cls(original, text, subject, files)
        # Without a card block each digest is rendered whole and inlined, as written.
        inlined = preinline(sources[HTML_TEMPLATE][0]) if "card" in original.blocks else None
        if inlined is not None:
            templates._html, templates._original = html_env.from_string(inlined), lambda: original
            templates._html_blocks = memoizable_blocks(html_env, inlined, skip=frozenset({"card"}))
        return templates

    def render(self, info: DigestInfo, items: Sequence[DigestItem], *, memo: BlockMemo | None = None,
               lines: QpLines | None = None) -> Rendered:
        """Compose the digest, cutting papers from the end of ``items`` while the HTML part, as
        sent, is over budget. ``memo``: the blocks already rendered for other digests of this run;
        ``lines``: the lines they encoded."""
        merged = _merged(items)
        if self._original is not None:
            shown, html, entries = self._fit_cards(info, merged, memo, lines or QpLines())
        else:
            entries = [_entry(item) for item in merged]
            shown, html = self._fit(info, merged, entries)
            entries = entries[:shown]
        context = _context(info, merged, entries)
        subject = header_text(self._run(self._subject, context), SUBJECT_LIMIT)
        return Rendered(subject, self._text_part(context, memo), html, len(merged) - shown)

    def _text_part(self, context: Mapping[str, Any], memo: BlockMemo | None) -> str:
        if memo is None or not self._text_blocks:
            return self._run(self._text, context)
        full = self._text.new_context(dict(context))
        memo.install(self._text.environment, self._text_blocks, full)
        return self._generate(self._text, full, self._text.root_render_func)

    def _fit_cards(self, info: DigestInfo, merged: Sequence[DigestItem], memo: BlockMemo | None,
                   lines: QpLines) -> tuple[int, str, list[Entry]]:
        """Each paper's card rendered once, in order, while the cards so far, their rule headings
        and the page around them (with every paper left out: the longest "and N more") fit the
        budget as encoded for sending; then the page around the cards that fit, checked whole.
        A card is whole lines of the page, so its lines encoded are what it adds to the page."""
        around = _context(info, merged, [])
        base = lines.size(self._page(around, {}, lines))
        entries: list[Entry] = []
        cards: dict[int, tuple[str, bytes]] = {}
        total, rule = base, None
        # One context for every card: a card sees what is around it and its own ``e``.
        context = self._html.new_context(dict(around))
        if memo is not None:
            memo.install(self._html.environment, self._html_blocks, context)
        for item in merged:
            entry = _entry(item)
            context.vars["e"] = entry
            card = self._card(context)
            code = lines.lines(card)
            heading = 0 if entry.rules[0] == rule else HEADING_ALLOWANCE + 3 * len(entry.rules[0].encode())
            if entries and total + heading + len(code) > HTML_BUDGET:
                break
            total, rule = total + heading + len(code), entry.rules[0]
            entries.append(entry)
            cards[id(entry)] = card, code
        while True:  # the allowances are generous: this runs once but for a rule name of odd characters
            html = self._page(_context(info, merged, entries), cards, lines)
            if len(entries) <= 1 or len(lines.encode(html)) <= HTML_BUDGET:
                return len(entries), html, entries
            entries.pop()

    def _card(self, context: Any) -> str:
        return self._generate(self._html, context, self._html.blocks["card"])

    def _page(self, around: Mapping[str, Any], cards: Mapping[int, tuple[str, bytes]], lines: QpLines) -> str:
        """The page around the cards of ``around``'s entries, rendered and encoded already. Each
        card goes in as a mark, and the page is put together from the text between them and the
        cards: when all of these are whole lines, its encoding is theirs, and is remembered."""
        context = self._html.new_context(dict(around))
        slots: list[tuple[str, bytes]] = []

        def card(block: Any) -> Iterator[str]:
            slots.append(cards[id(block["e"])])
            return iter((_SLOT,))

        context.blocks["card"] = [card]
        parts = self._generate(self._html, context, self._html.root_render_func).split(_SLOT)
        if len(parts) != len(slots) + 1:  # the page's own text held the mark: rendered again, as it is
            context = self._html.new_context(dict(around))
            context.blocks["card"] = [lambda block: iter((cards[id(block["e"])][0],))]
            return self._generate(self._html, context, self._html.root_render_func)
        pieces = [parts[0]]
        for (text, _), part in zip(slots, parts[1:], strict=True):
            pieces += (text, part)
        html = "".join(pieces)
        if slots and all(text.endswith("\n") for text, _ in slots) and all(
                not part or part.endswith("\n") for part in parts[:-1]):
            codes = [lines.lines(parts[0])]
            for (_, code), part in zip(slots, parts[1:], strict=True):
                codes += (code, lines.lines(part))
            lines.remember(html, b"".join(codes))
        return html

    def _generate(self, template: Template, context: Any, function: Callable[[Any], Iterable[str]]) -> str:
        try:
            return "".join(function(context))
        except Exception as exc:
            # The inlined template's lines are not the file's: the template as written names the line.
            if template is self._html and self._original is not None:
                self._run(self._original(), dict(context.get_all()))
            raise _template_error(exc, self._files, template.name or HTML_TEMPLATE) from exc

    def _fit(self, info: DigestInfo, merged: Sequence[DigestItem], entries: Sequence[Entry]) -> tuple[int, str]:
        """For a template without a card block, whose CSS is inlined per digest: the most papers
        whose HTML fits the budget, and at least one. Each render costs, so the search
        interpolates between the sizes it has seen instead of halving blindly."""
        sizes: dict[int, int] = {}
        done: dict[int, str] = {}

        def size(shown: int) -> int:
            if shown not in done:
                done[shown] = self._inline(self._run(self._html, _context(info, merged, entries[:shown])))
                sizes[shown] = encoded_size(done[shown])
            return sizes[shown]

        # One paper is always shown, however long: else a paper bigger than the budget would
        # hold back every digest after it.
        low, high = min(1, len(entries)), len(entries)
        if size(high) <= HTML_BUDGET:
            return high, done[high]
        size(low)
        while high - low > 1:  # low fits (or is the least shown), high does not
            per_paper = (sizes[high] - sizes[low]) / (high - low)
            guess = low + int((HTML_BUDGET - sizes[low]) / per_paper) if per_paper > 0 else low + 1
            guess = min(high - 1, max(low + 1, guess))
            low, high = (guess, high) if size(guess) <= HTML_BUDGET else (low, guess)
        return low, done[low]

    def _run(self, template: Template, context: Mapping[str, Any]) -> str:
        try:
            return template.render(context)
        except Exception as exc:  # whatever a template does wrong fails this digest only
            raise _template_error(exc, self._files, template.name or "template") from exc

    def _inline(self, html: str) -> str:
        return inline_html(html, HTML_TEMPLATE)


_SLOT = "\x00"  # where a card goes in the page: no text shown holds it (``clean``)


_SAMPLE_PAPER = Paper(
    id="2503.00001", title="A sample paper on grokking", summary="We study grokking. It is sudden.",
    authors=("Ada Lovelace", "Alan Turing"), daily_date=dt.date(2025, 3, 5), published_at="2025-03-04T00:00:00Z",
    upvotes=3, comments=1, github_repo="https://github.com/example/grokking", github_stars=10,
    project_page="https://example.org/grokking", organization="Example Lab", ai_keywords=("grokking",))
_SAMPLE: tuple[DigestInfo, tuple[DigestItem, ...]] = (
    DigestInfo(reader="example", email="reader@example.org", days=(dt.date(2025, 3, 5),), papers_seen=20,
               period_start=dt.date(2025, 3, 4), period_end=dt.date(2025, 3, 5)),
    (DigestItem(_SAMPLE_PAPER, ("grokking", "sudden"), (Highlight("title", "grokking"), Highlight("abstract", "grokking"),
                                                      Highlight("authors", "Ada Lovelace")),
                ("grokking: “grokking” in the title",)),),
)


class _MemoryLoader(BaseLoader):
    """Serves the sources read at start-up, so rendering never touches the disk."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]) -> None:
        self._sources = sources

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        if template not in self._sources:
            raise TemplateNotFound(template)
        source, filename = self._sources[template]
        return source, filename, lambda: True


def _packaged_sources() -> dict[str, tuple[str, str]]:
    folder = importlib.resources.files("paperwatch") / "templates"
    return {item.name: (item.read_text(encoding="utf-8"), item.name)
            for item in folder.iterdir() if item.name.endswith(".j2")}


def _directory_sources(directory: Path) -> dict[str, tuple[str, str]]:
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(".j2") and p.is_file())
        sources = {p.name: (p.read_text(encoding="utf-8"), str(p)) for p in paths}
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{directory}: cannot read the digest templates: {exc}") from exc
    missing = [n for n in (HTML_TEMPLATE, TEXT_TEMPLATE, SUBJECT_TEMPLATE) if n not in sources]
    if missing:
        raise TemplateError(f"{directory}: missing {', '.join(missing)}; a template directory needs "
                            f"{HTML_TEMPLATE}, {TEXT_TEMPLATE} and {SUBJECT_TEMPLATE}")
    return sources


def _environment(loader: BaseLoader, *, html: bool, trusted: bool) -> Environment:
    # Templates from a directory run sandboxed; our own need no sandbox, whose checks on every
    # attribute access doubled the cost of rendering a digest.
    kind = Environment if trusted else ImmutableSandboxedEnvironment
    env = kind(loader=loader, autoescape=html, undefined=StrictUndefined,
               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    register(env, html=html)
    return env


def _template_error(exc: Exception, files: Collection[str], fallback: str) -> TemplateError:
    """A TemplateError naming the template file and line, read from Jinja's rewritten traceback."""
    if isinstance(exc, TemplateSyntaxError):
        return TemplateError(f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else fallback
    return TemplateError(f"{where}: {type(exc).__name__}: {exc}")


INLINED_FOLDER = "inlined"  # beside the packaged templates: the HTML one with its CSS inlined


def inlined_template() -> str:
    """The packaged HTML template with its CSS inlined, as shipped in ``templates/inlined/``. A
    test checks the shipped file is this; after editing the template, write it again with
    ``python -c "from paperwatch.digest import write_inlined_template; write_inlined_template()"``."""
    inlined = preinline(_packaged_sources()[HTML_TEMPLATE][0])
    assert inlined is not None, "the packaged HTML template can be inlined"
    return inlined


def write_inlined_template() -> None:
    folder = Path(str(importlib.resources.files("paperwatch") / "templates" / INLINED_FOLDER))
    folder.mkdir(exist_ok=True)
    (folder / HTML_TEMPLATE).write_text(inlined_template(), encoding="utf-8")


def _packaged_inlined() -> str:
    return (importlib.resources.files("paperwatch") / "templates" / INLINED_FOLDER / HTML_TEMPLATE).read_text(
        encoding="utf-8")


def _context(info: DigestInfo, merged: Sequence[DigestItem], entries: Sequence[Entry]) -> dict[str, Any]:
    """What the templates see when ``entries`` (the first of ``merged``) are in this mail."""
    left = merged[len(entries):]
    return {
        "info": info,
        "headline": _headline(info, len(merged)),
        "count": len(entries),
        "matched": len(merged),
        "groups": _groups(entries),
        "rules": _unique(entry.rules[0] for entry in entries),
        "omitted": len(left),
        "more_url": safe_url(info.more_url) or listing_url(item.paper.daily_date for item in left),
        "more_links": more_links(item.paper.daily_date for item in left) if left else (),
        "empty_reason": None if merged else empty_reason(info),
    }


def more_links(days: Iterable[dt.date | None]) -> tuple[tuple[str, str, int], ...]:
    """(label, Hugging Face page, papers) for each day the papers left out come from; by ISO week
    past a week of days and by month past seven weeks, so the list stays short."""
    counts = Counter(days)
    dated = sorted(day for day in counts if day is not None)
    pages: dict[tuple[str, str], int] = {}
    for day in dated:
        if len(dated) <= MORE_LINKS:
            label, url = day_label(day), f"{HF_SITE}/papers/date/{day.isoformat()}"
        elif len({d.isocalendar()[:2] for d in dated}) <= MORE_LINKS:
            year, week, _ = day.isocalendar()
            monday = day - dt.timedelta(days=day.weekday())
            label, url = f"week of {day_label(monday)}", f"{HF_SITE}/papers/week/{year}-W{week:02d}"
        else:
            label, url = f"{MONTHS[day.month - 1]} {day.year}", f"{HF_SITE}/papers/month/{day.year}-{day.month:02d}"
        pages[label, url] = pages.get((label, url), 0) + counts[day]
    links = [(label, url, n) for (label, url), n in pages.items()]
    if None in counts:  # saved-search results the site gave no day for
        links.append(("undated", f"{HF_SITE}/papers", counts[None]))
    return tuple(links)


def listing_url(days: Iterable[dt.date | None]) -> str:
    """The Hugging Face page that lists all of ``days``: one day's, an ISO week's or a month's."""
    known = sorted({day for day in days if day is not None})
    if not known:
        return f"{HF_SITE}/papers"
    first, last = known[0], known[-1]
    if first == last:
        return f"{HF_SITE}/papers/date/{first.isoformat()}"
    year, week, _ = first.isocalendar()
    if (year, week) == last.isocalendar()[:2]:
        return f"{HF_SITE}/papers/week/{year}-W{week:02d}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{HF_SITE}/papers/month/{first.year}-{first.month:02d}"
    return f"{HF_SITE}/papers/date/{last.isoformat()}"  # no page spans them: the newest day's


def _groups(entries: Iterable[Entry]) -> tuple[Group, ...]:
    by_rule: dict[str, list[Entry]] = {}
    for entry in entries:
        by_rule.setdefault(entry.rules[0], []).append(entry)
    return tuple(Group(rule, tuple(members)) for rule, members in by_rule.items())


def _merged(items: Sequence[DigestItem]) -> list[DigestItem]:
    """One item per paper, in the order given; a paper given twice keeps both sets of rules."""
    merged: dict[str, DigestItem] = {}
    for item in items:
        seen = merged.get(item.paper.id)
        merged[item.paper.id] = item if seen is None else DigestItem(
            seen.paper, _unique(seen.rules + item.rules),
            _unique(seen.highlights + item.highlights), _unique(seen.why + item.why))
    return list(merged.values())


def _entry(item: DigestItem) -> Entry:
    paper, title, abstract, authors, keywords, organization, url, links = _paper_text(item.paper)
    return Entry(paper, title, abstract, authors, keywords, organization, tuple(map(clean, item.rules)) or ("other",),
                 tuple(map(clean, item.why)), _marks(item.highlights), url, links)


def _marks(highlights: Iterable[Highlight]) -> Marks:
    found: dict[str, dict[str, None]] = {}
    for mark in highlights:
        if mark.field in _MARKED_FIELDS and (text := clean(mark.text)):
            found.setdefault(mark.field, {})[text] = None
    return Marks(**{name: tuple(texts) for name, texts in found.items()})


_MARKED_FIELDS = frozenset(FIELDS)


_PaperText = tuple[Paper, str, str, tuple[str, ...], tuple[str, ...], str | None, str, tuple[tuple[str, str], ...]]


@lru_cache(maxsize=512)  # a fresh paper comes in many readers' digests
def _paper_text(paper: Paper) -> _PaperText:
    """What every reader sees of the paper: it, its title, abstract, authors, keywords,
    organization, page and links."""
    key = quote(paper.id, safe="")
    return (paper, clean(latex_text(paper.title)), fold(latex_text(paper.summary or "")),
            tuple(clean(a) for a in paper.authors), tuple(clean(k) for k in paper.ai_keywords[:KEYWORDS_SHOWN]),
            clean(paper.organization) if paper.organization else None, f"{HF_SITE}/papers/{key}", _links(paper, key))


def _links(paper: Paper, key: str) -> tuple[tuple[str, str], ...]:
    """arXiv abstract and PDF, then whichever of GitHub and project page are http(s) links."""
    links = [("arXiv", f"https://arxiv.org/abs/{key}"), ("PDF", f"https://arxiv.org/pdf/{key}")]
    for label, url in (("GitHub", paper.github_repo), ("Project page", paper.project_page)):
        if (vetted := safe_url(url)) is not None:
            links.append((label, vetted))
    return tuple(links)


_T = TypeVar("_T")


def _unique(values: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(values))


def _headline(info: DigestInfo, matched: int) -> str:
    days, covered = len(info.days), _covered(info)
    span = f", {_span(*covered)}" if covered else ""
    return (f"Hugging Face Daily Papers{span}: {days} day{'s' * (days != 1)} with papers, "
            f"{info.papers_seen} paper{'s' * (info.papers_seen != 1)} seen, {matched} matched")


def empty_reason(info: DigestInfo) -> str:
    """Why a digest holds nothing: nothing was published, or nothing published matched."""
    covered = _covered(info)
    when = "" if covered is None else (f" on {day_label(covered[0])}" if covered[0] == covered[1]
                                       else f" from {_span(*covered, sep=' to ')}")
    if info.papers_seen == 0:
        return f"no papers were published{when or ' in this period'}"
    if info.papers_seen == 1:
        return f"the one paper published{when} did not match your rules"
    return f"none of the {info.papers_seen} papers published{when} matched your rules"


def _covered(info: DigestInfo) -> tuple[dt.date, dt.date] | None:
    if info.period_start and info.period_end:
        return info.period_start, info.period_end
    return (min(info.days), max(info.days)) if info.days else None


def _span(first: dt.date, last: dt.date, sep: str = "–") -> str:
    """``5 Mar 2025``, ``3–5 Mar 2025``, ``28 Feb–3 Mar 2025``, ``30 Dec 2024–2 Jan 2025``."""
    if first == last:
        return day_label(first)
    if (first.year, first.month) == (last.year, last.month):
        start = str(first.day)
    elif first.year == last.year:
        start = f"{first.day} {MONTHS[first.month - 1]}"
    else:
        start = day_label(first)
    return f"{start}{sep}{day_label(last)}"


def safe_url(url: str | None) -> str | None:
    """``url`` if it is http(s) with a host and nothing a mail client could misread, else None."""
    url = (url or "").strip()
    if not url or len(url) > URL_LIMIT or _URL_UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return url
