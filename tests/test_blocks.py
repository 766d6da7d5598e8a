"""Template blocks rendered once per run for what they read: which blocks qualify, and that a
digest made from the memo is the digest made without it, byte for byte."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from jinja2 import Environment
from markupsafe import Markup

from paperwatch.blocks import BlockMemo, memoizable_blocks
from paperwatch.digest import DigestInfo, DigestItem, Highlight, Templates
from paperwatch.errors import TemplateError
from paperwatch.models import Paper
from support import packaged_templates

DAY = dt.date(2025, 3, 5)
ENV = Environment(autoescape=True)


def blocks(source: str) -> dict[str, tuple[tuple[str, ...], ...]]:
    return memoizable_blocks(ENV, source, skip=frozenset({"card"}))


def test_a_block_that_reads_only_values_is_memoizable_with_the_paths_it_reads() -> None:
    source = ("{% for e in entries %}{% block card scoped %}{% set p = e.paper %}"
              "{% block head scoped %}{{ p.title | upper }}{% for k in e.keywords %}{{ loop.index }}{{ k }}"
              "{% endfor %}{% set n = e.marks.title | length %}{{ n }}{{ loop.first }}{% endblock %}"
              "{% endblock %}{% endfor %}")
    assert blocks(source) == {"head": (("e", "keywords"), ("e", "marks", "title"), ("loop", "first"), ("p", "title"))}


@pytest.mark.parametrize("body", [
    "{{ range(3) | join }}",                  # a call
    "{{ e.paper.method() }}",                 # a method call
    "{{ e.keywords | random }}",              # chance
    "{{ e.keywords | map('random') | join }}",
    "{% include 'other.j2' %}",
    "{% block inner %}x{% endblock %}",        # an override of it may read anything
    "{% set ns.total = 1 %}",                 # writes outside itself
])
def test_a_block_whose_output_may_depend_on_more_than_values_is_not(body: str) -> None:
    source = f"{{% set ns = namespace(total=0) %}}{{% block head %}}{body}{{% endblock %}}"
    assert "head" not in blocks(source)


def paper(number: int, **fields: object) -> Paper:
    values: dict[str, object] = {
        "title": f"Paper {number} on grokking", "summary": "We study grokking. It is sudden. Loss curves fall.",
        "authors": ("Ada Lovelace", "Alan Turing"), "daily_date": DAY, "upvotes": number,
        "ai_keywords": ("grokking", "loss curves"), "github_repo": "https://github.com/example/grokking"}
    return Paper(id=f"2503.{number:05d}", **{**values, **fields})  # type: ignore[arg-type]


def digest(reader: str, marks: tuple[Highlight, ...], rules: tuple[str, ...]) -> tuple[DigestInfo, list[DigestItem]]:
    info = DigestInfo(reader=reader, email=f"{reader}@example.org", days=(DAY,), papers_seen=30,
                      period_start=DAY, period_end=DAY)
    return info, [DigestItem(paper(n), rules, marks, (f"{rules[0]}: “grokking” in the abstract",)) for n in range(1, 6)]


READERS = [
    digest("alice", (Highlight("abstract", "grokking"),), ("grokking",)),
    digest("bob", (Highlight("abstract", "grokking"), Highlight("title", "grokking")), ("titles",)),
    digest("carol", (Highlight("authors", "Ada Lovelace"),), ("people",)),
    digest("dan", (Highlight("abstract", "grokking"),), ("grokking",)),  # as alice: all but the name alike
]


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(None)


def test_digests_made_from_the_memo_are_those_made_without_it_byte_for_byte(templates: Templates) -> None:
    memo = BlockMemo()
    for info, items in READERS:
        assert templates.render(info, items, memo=memo) == templates.render(info, items)


def test_a_block_is_rendered_once_for_the_same_values_and_again_for_others(tmp_path: Path) -> None:
    calls: list[str] = []
    templates = Templates.load(_counting_templates(tmp_path))
    # The templates call Jinja's own "count" there (a filter must exist when they compile);
    # from here on it notes each call.
    templates._html.environment.filters["count"] = templates._text.environment.filters["count"] = (
        lambda value: calls.append(str(value)) or value)
    memo = BlockMemo()
    for info, items in READERS:
        templates.render(info, items, memo=memo)
    # Five papers: alice, dan and carol see their card heads alike (no title or author marks,
    # so the same values), bob's highlighted titles are his own; carol's highlighted
    # authors her own. Each text part once per paper and set of values too.
    assert sorted(calls).count("Paper 1 on grokking") == 2 * 3


def _counting_templates(folder: Path) -> Path:
    """The packaged templates, with a filter in each card head that notes every render of it."""
    for name, text in packaged_templates().items():
        text = text.replace("{% block card_head %}\n", "{% block card_head %}\n{{ e.paper.title | count }}\n")
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_markup_and_text_alike_in_characters_are_different_values() -> None:
    env = Environment(autoescape=True)
    template = env.from_string("{% block head scoped %}{{ v }}{% endblock %}")
    found = memoizable_blocks(env, "{% block head scoped %}{{ v }}{% endblock %}")
    memo = BlockMemo()
    out = []
    for value in ("<b>", Markup("<b>")):
        context = template.new_context({"v": value})
        memo.install(env, found, context)
        out.append("".join(template.root_render_func(context)))
    assert out == ["&lt;b&gt;", "<b>"]


def test_a_block_reading_an_unhashable_value_is_rendered_as_written_each_time() -> None:
    env = Environment(autoescape=True)
    source = "{% block head scoped %}{{ v | join(',') }}{% endblock %}"
    template, found = env.from_string(source), memoizable_blocks(env, source)
    memo, value = BlockMemo(), ["a"]
    out = []
    for _ in range(2):
        context = template.new_context({"v": value})
        memo.install(env, found, context)
        out.append("".join(template.root_render_func(context)))
        value.append("b")  # a list read again is read as it is now
    assert found == {"head": (("v",),)} and out == ["a", "a,b"]


def test_a_mistake_in_a_memoized_block_still_names_its_file_and_line(tmp_path: Path) -> None:
    for name, text in packaged_templates().items():
        if name == "digest.txt.j2":
            text = text.replace("{% block card_foot %}\n", "{% block card_foot %}\n{{ e.paper.no_such_field }}\n")
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError, match=r"digest\.txt\.j2:\d+: UndefinedError"):
        Templates.load(tmp_path)
