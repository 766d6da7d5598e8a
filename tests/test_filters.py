"""The filters the templates use, against what they stand in for."""

from __future__ import annotations

import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import Environment

from paperwatch.filters import register

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
