"""The filters the templates use, against what they stand in for."""

from __future__ import annotations

import re
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import Environment
from markupsafe import Markup, escape

from paperwatch.filters import HIGHLIGHT_STYLE, mark_html, register, shorten

ENV = Environment()
register(ENV, html=False)
WRAP = ENV.from_string("{{ s | wordwrap(w, break_on_hyphens=False) }}")
# Words as abstracts have them, some longer than a line, and the spacing textwrap treats apart.
WORD = st.text(st.sampled_from("abcdeé·—$\\()[]-"), min_size=1, max_size=12)
LINE = st.lists(WORD, min_size=1, max_size=30).map(" ".join)
TEXT = st.lists(st.one_of(LINE, LINE.map(lambda line: line.replace(" ", "  ", 1)), LINE.map(lambda s: s + " ")),
                min_size=1, max_size=3).map("\n".join)


@settings(max_examples=500, deadline=None)
@given(text=TEXT, width=st.sampled_from([4, 8, 12, 40, 69, 74]))
def test_wordwrap_is_textwraps_line_by_line(text: str, width: int) -> None:
    """Jinja's wordwrap without breaking on hyphens: each line wrapped as textwrap wraps it."""
    expected = "\n".join("\n".join(textwrap.wrap(line, width=width, expand_tabs=False, replace_whitespace=False,
                                                 break_on_hyphens=False)) for line in text.splitlines())
    assert WRAP.render(s=text, w=width) == expected

@settings(max_examples=300, deadline=None)
@given(text=TEXT | TEXT.map(lambda s: s + "\n\n"), width=st.sampled_from([0, 2, 7, "> "]),
       first=st.booleans(), blank=st.booleans(), markup=st.booleans())
def test_indent_is_jinjas(text: str, width: int | str, first: bool, blank: bool, markup: bool) -> None:
    """Remembered, it gives what Jinja's own gives, for Markup too (in HTML it stays Markup)."""
    source = "{{ s | indent(w, first=f, blank=b) }}"
    args = {"s": Markup(text) if markup else text, "w": width, "f": first, "b": blank}
    for html in (False, True):
        ours, theirs = Environment(autoescape=html), Environment(autoescape=html)
        register(ours, html=html)
        assert ours.from_string(source).render(args) == theirs.from_string(source).render(args)


# Text with everything HTML escapes, words that are marks or hold one, and one mark changing length when lowered.
MARKED = st.lists(st.sampled_from(["grok", "Grokking", "a&b", "<i>", "'", '"', ">", " ", "İx", "x", "&amp;"]),
                  max_size=20).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=MARKED, marks=st.lists(st.sampled_from(["grok", "Grokking", "a&b", "<i>", "İx", "x"]), max_size=3))
def test_highlight_is_each_mark_spanned_and_everything_escaped(text: str, marks: list[str]) -> None:
    """The highlighted text is what markupsafe makes of it: the text escaped piece by piece, each
    mark (longest first, never inside a longer word) in a highlighted span."""
    words = sorted(set(marks), key=len, reverse=True)
    pattern = re.compile("|".join((r"(?<!\w)" if re.match(r"\w", w) else "") + re.escape(w)
                                  + (r"(?!\w)" if re.search(r"\w$", w) else "") for w in words), re.IGNORECASE)
    span = Markup(f'<span class="hl" style="{HIGHLIGHT_STYLE}">%s</span>')
    expected, last = Markup(""), 0
    for found in pattern.finditer(text) if words else ():
        expected += escape(text[last:found.start()]) + span % found.group()
        last = found.end()
    assert mark_html(text, marks) == expected + escape(text[last:])


FILLER = st.lists(st.sampled_from(["a", "curve", "loss-free", "x_loss", "grokked", "slow"]), min_size=6, max_size=10)


@settings(max_examples=200, deadline=None)
@given(fillers=st.lists(FILLER, min_size=12, max_size=24), spots=st.lists(st.tuples(st.integers(0, 23),
       st.sampled_from(["grok", "grokking", "loss", "Loss", "İ"])), min_size=1, max_size=4))
def test_shortened_abstract_keeps_the_sentence_of_the_first_mark(fillers: list[list[str]],
                                                                 spots: list[tuple[int, str]]) -> None:
    """Marks put in sentences far apart: the first of them, whichever mark it is, stays in view."""
    for index, mark in spots:
        fillers[index % len(fillers)].insert(1, mark)
    sentences = [" ".join(words).capitalize() + "." for words in fillers]
    marks = sorted({mark.lower() for _, mark in spots}, key=len, reverse=True)
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(m)}(?!\w)" for m in marks), re.IGNORECASE)
    first = next(s for s in sentences if pattern.search(s))
    assert first in shorten(" ".join(sentences), marks, 200)
