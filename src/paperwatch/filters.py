"""What the digest templates' filters do to the site's text: highlight the matched terms
(escaped first, so markup in a title stays inert), shorten an abstract around its first mark,
name authors, wrap lines and write dates; and the cleaning every shown text goes through
(control characters out, whitespace folded, LaTeX text commands reduced to their text).

``register`` installs them in a template environment: ``highlight(text, marks)``,
``shorten(text, marks, limit)``, ``authors(names, marks)``, ``day(date)``, and ``wordwrap`` and
``indent`` that remember. The same titles, names and abstracts come in many readers' digests,
so the costly ones remember their recent answers.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache, partial

from jinja2 import Environment, pass_environment
from jinja2.filters import do_indent
from markupsafe import Markup, escape

from paperwatch.message import one_line


def register(environment: Environment, *, html: bool) -> None:
    """Install the filters; ``highlight`` marks up only in HTML."""
    mark = mark_html if html else mark_text
    environment.filters.update(highlight=mark, shorten=shorten, day=day_label, wordwrap=_wordwrap, indent=_indent,
                               authors=partial(_authors, mark=mark, glue=Markup("") if html else ""))


HIGHLIGHT_STYLE = "background-color:#fff1a8;color:inherit"  # dark mode overrides .hl in the template's CSS


ABSTRACT_LIMIT = 600


# English month names whatever the process locale, which %b would follow.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$\\(\[\"'])")


_HIGHLIGHT_OPEN, _HIGHLIGHT_CLOSE = f'<span class="hl" style="{HIGHLIGHT_STYLE}">', "</span>"


@pass_environment
def _wordwrap(environment: Environment, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    """Jinja's ``wordwrap``, remembered: the same titles and abstracts are wrapped for many readers,
    and textwrap is slow."""
    return _wrapped(str(s), int(width), bool(break_long_words), wrapstring or environment.newline_sequence,
                    bool(break_on_hyphens))


@lru_cache(maxsize=1024)
def _wrapped(text: str, width: int, break_long_words: bool, wrapstring: str, break_on_hyphens: bool) -> str:
    lines = []
    for line in text.splitlines():
        words = line.split(" ")
        if break_on_hyphens or "\t" in line or "" in words or max(map(len, words)) > width:
            lines.append(wrapstring.join(textwrap.wrap(line, width=width, expand_tabs=False, replace_whitespace=False,
                                                       break_long_words=break_long_words,
                                                       break_on_hyphens=break_on_hyphens)))
            continue
        # Words one space apart, none too long: textwrap's result, greedily, as the longest run of
        # at most ``width`` characters that ends where a word does, again and again.
        lines.append(wrapstring.join(_greedy(width).findall(line)))
    return wrapstring.join(lines)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    """Jinja's ``indent``, remembered for plain text: it follows ``wordwrap`` on the same texts."""
    if type(s) is not str:  # Markup: Jinja's own, as it is
        return do_indent(s, width, first, blank)
    return _indented(s, width, first, blank)


_indented = lru_cache(maxsize=1024)(do_indent)


@lru_cache(maxsize=16)
def _greedy(width: int) -> re.Pattern[str]:
    return re.compile(rf"(.{{1,{width}}})(?: |$)")


def day_label(day: dt.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


@lru_cache(maxsize=8192)  # the same titles, names and keywords come in every reader's digest
def clean(text: str) -> str:
    """One line of visible text: control and invisible characters gone, whitespace folded."""
    return fold(text)


def fold(text: str) -> str:
    """``clean`` without its cache, for abstracts: thousands of them would stay in memory."""
    return one_line(text)


_folded = lru_cache(maxsize=512)(fold)  # the abstract shortened for each reader with other marks


# LaTeX that abstracts use for emphasis in running text: reduced to its text. Math ($...$,
# \(...\), \[...\]) stays as written: readers of these papers read it as it is.
_MATH = re.compile(r"((?<!\\)\$\$.+?(?<!\\)\$\$|(?<!\\)\$.+?(?<!\\)\$|\\\(.+?\\\)|\\\[.+?\\\])", re.DOTALL)


_TEXT_COMMAND = re.compile(r"\\(?:text(?:bf|it|tt|rm|sf|sc|up|md|normal)?|emph|mathrm|mathbf|mathit|mathsf|"
                           r"mathtt|underline|uline)\s*\{([^{}]*)\}")


_OLD_FONT = re.compile(r"\{\\(?:bf|it|em|tt|rm|sf|sc)\s+([^{}]*)\}")


_ESCAPED = re.compile(r"\\([%&#_$])")


def latex_text(text: str) -> str:
    """``text`` with LaTeX text commands (``\\textbf{x}``, ``\\emph{x}``, ``{\\bf x}``, ``\\%``) reduced
    to their text outside math, and math left as written."""
    if "\\" not in text:
        return text
    pieces = _MATH.split(text)
    for index in range(0, len(pieces), 2):  # the even pieces are outside math
        piece, before = pieces[index], None
        while piece != before:  # nested: \textbf{\emph{x}}
            before = piece
            piece = _OLD_FONT.sub(r"\1", _TEXT_COMMAND.sub(r"\1", piece))
        pieces[index] = _ESCAPED.sub(r"\1", piece)
    return "".join(pieces)


class _Found:
    """Where a mark was found: what ``re.Match`` would say of it."""

    __slots__ = ("_end", "_start", "_text")

    def __init__(self, text: str, start: int, end: int) -> None:
        self._text, self._start, self._end = text, start, end

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self) -> str:
        return self._text[self._start:self._end]


class _Finder:
    """Any of some marks, longest first at a place, case-insensitive, not inside a longer word:
    found as the regular expression of them would, by plain searches in the lowered text (a
    regular expression for every reader's set of marks cost more to compile than to use)."""

    __slots__ = ("_regex", "_words")

    def __init__(self, words: Sequence[str]) -> None:
        self._words = [(w.lower(), _is_word(w[0]), _is_word(w[-1])) for w in words]
        self._regex: re.Pattern[str] | None = None
        if any(len(lowered) != len(w) for (lowered, _b, _a), w in zip(self._words, words, strict=True)):
            self._regex = re.compile("|".join(map(_bounded, words)), re.IGNORECASE)

    def finditer(self, text: str) -> Iterator[_Found | re.Match[str]]:
        low = _lowered(text)
        if self._regex is not None or len(low) != len(text):  # lowering moved the indexes
            yield from (self._regex or re.compile("|".join(_bounded(w) for w, _b, _a in self._words),
                                                  re.IGNORECASE)).finditer(text)
            return
        spans = []
        for word, before, after in self._words:
            at = low.find(word)
            while at >= 0:
                end = at + len(word)
                if _alone(text, at, end, before, after):
                    spans.append((at, -len(word), end))
                at = low.find(word, at + 1)
        last = 0
        for start, _longest, end in sorted(spans):
            if start >= last:
                yield _Found(text, start, end)
                last = end

    def search(self, text: str) -> _Found | re.Match[str] | None:
        """The first of ``finditer``: each mark's first place, the earliest (the longest there) taken."""
        low = _lowered(text)
        if self._regex is not None or len(low) != len(text):
            return next(self.finditer(text), None)
        first: tuple[int, int] | None = None
        for word, before, after in self._words:  # longest first: at a tie the longer stays
            at = low.find(word, 0, None if first is None else first[0] + len(word))
            while at >= 0 and (first is None or at < first[0]):
                end = at + len(word)
                if _alone(text, at, end, before, after):
                    first = at, end
                    break
                at = low.find(word, at + 1)
        return None if first is None else _Found(text, *first)


# An abstract is searched for each reader's marks, shortened and then highlighted: lowered once.
_lowered = lru_cache(maxsize=256)(str.lower)


def _alone(text: str, at: int, end: int, before: bool, after: bool) -> bool:
    """Whether ``text[at:end]`` is not inside a longer word; ``before``, ``after``: the mark begins,
    ends with a word character (else it may touch one there: "C++" in "C++17")."""
    return not (before and at and _is_word(text[at - 1])) and not (after and end < len(text) and _is_word(text[end]))


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"  # what \w is to a str pattern


@lru_cache(maxsize=1024)
def _pattern(marks: tuple[str, ...]) -> _Finder | None:
    """Any of ``marks``, longest first, case-insensitive, not inside a longer word."""
    words = sorted({m for m in marks if m}, key=len, reverse=True)
    return _Finder(words) if words else None


def _bounded(word: str) -> str:
    # Word boundaries only where the term itself starts or ends with a word character: "C++" has none at its end.
    before = r"(?<!\w)" if re.match(r"\w", word) else ""
    after = r"(?!\w)" if re.search(r"\w$", word) else ""
    return before + re.escape(word) + after


def mark_html(text: str, marks: Sequence[str]) -> Markup:
    return _marked(str(text), tuple(marks))


@lru_cache(maxsize=512)  # the same paper comes in many readers' digests; small, as it holds abstracts
def _marked(text: str, marks: tuple[str, ...]) -> Markup:
    """``text`` escaped, with each matched term in a highlighted span: escaping first keeps markup
    in text inert. The span carries its own style, which Outlook keeps (it drops <mark>), and which
    the CSS inlined into the template cannot reach (the span is made here, after inlining)."""
    text, pattern = str(text), _pattern(tuple(marks))
    if pattern is None:
        return escape(text)
    out, last = [], 0
    for found in pattern.finditer(text):
        out += [_escaped(text[last:found.start()]), _HIGHLIGHT_OPEN, _escaped(found.group()), _HIGHLIGHT_CLOSE]
        last = found.end()
    out.append(_escaped(text[last:]))
    return Markup("".join(out))  # every piece escaped already: Markup's own join would escape each again


def _escaped(text: str) -> str:
    """``markupsafe.escape(text)`` as a plain string: a piece of a highlighted text is joined at
    once, and a Markup made for each piece cost more than escaping it."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;").replace('"', "&#34;")


def mark_text(text: str, marks: Sequence[str]) -> str:
    return str(text)


def shorten(text: str | None, marks: Sequence[str] = (), limit: int = ABSTRACT_LIMIT) -> str:
    """Whole sentences up to about ``limit`` characters, keeping the first one with a mark visible."""
    return _shortened(str(text or ""), tuple(marks), int(limit))


@lru_cache(maxsize=512)  # the same paper comes in many readers' digests; small, as it holds abstracts
def _shortened(text: str, marks: tuple[str, ...], limit: int) -> str:
    text = _folded(text)
    if len(text) <= limit:
        return text
    sentences, starts = _split(text)
    pattern = _pattern(tuple(marks))
    found = pattern.search(text) if pattern else None
    # The sentence the first mark is in (sentences part at spaces, which no mark spans).
    hit = bisect.bisect_right(starts, found.start()) - 1 if found else 0
    if hit == 0 or sum(len(s) + 1 for s in sentences[:hit + 1]) <= limit:
        return _sentences(sentences, limit, pattern)
    # The first sentence usually says what the paper is about: keep it too when there is room.
    lead = sentences[0] if len(sentences[0]) + len(sentences[hit]) + 5 <= limit else ""
    body = _sentences(sentences[hit:], limit - len(lead) - 3, pattern)
    if lead:
        return f"{lead} … {body}"
    return body if body.startswith("…") else f"… {body}"


@lru_cache(maxsize=512)
def _split(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The text's sentences and where each starts."""
    starts = (0, *(gap.end() for gap in _SENTENCE_END.finditer(text)))
    ends = (*(gap.start() for gap in _SENTENCE_END.finditer(text)), len(text))
    return tuple(text[a:b] for a, b in zip(starts, ends, strict=True)), starts


def _sentences(sentences: Sequence[str], limit: int, pattern: _Finder | None) -> str:
    """The leading sentences that fit; the first one clipped at a word when even it is too long."""
    taken: list[str] = []
    for sentence in sentences:
        if sum(len(s) + 1 for s in taken) + len(sentence) > limit - 2:
            break
        taken.append(sentence)
    if not taken:
        return _clip(sentences[0], limit, pattern)
    return " ".join(taken) + (" …" if len(taken) < len(sentences) else "")


def _clip(text: str, limit: int, pattern: _Finder | None) -> str:
    """At most ``limit`` characters cut at spaces, around the first mark when it lies past the cut."""
    found = pattern.search(text) if pattern else None
    start = 0
    if found and found.end() > limit - 2:
        start = text.find(" ", max(0, found.start() - limit // 3)) + 1
    window = text[start:start + limit - 4]
    cut = window.rfind(" ") if start + len(window) < len(text) else -1
    body = window[:cut] if cut > 0 else window
    return ("… " if start else "") + body + (" …" if start + len(body) < len(text) else "")


def _authors(names: Sequence[str], marks: Sequence[str], *, mark: Callable[[str, Sequence[str]], str],
             glue: str, first: int = 3) -> str:
    """``A, B, C, … and 37 more``, always naming the matched authors."""
    pattern = _pattern(tuple(marks))
    if len(names) <= first + 3:
        kept = list(range(len(names)))
    else:
        kept = [i for i, n in enumerate(names) if i < first or (pattern and pattern.search(n))]
    pieces: list[str] = []
    for position, index in enumerate(kept):
        if position:
            pieces.append(", " if index == kept[position - 1] + 1 else ", …, ")
        pieces.append(mark(names[index], marks))
    if len(kept) < len(names):
        pieces.append(f"{', … ' if kept[-1] != len(names) - 1 else ' '}and {len(names) - len(kept)} more")
    return glue.join(pieces)
