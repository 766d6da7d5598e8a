"""A digest says the truth about itself: what it holds, where the rest is, what matched, and
it stays under Gmail's clip as sent, with highlights every mail client shows."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import re
import subprocess
import sys
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from paperwatch.config import Config, Reader
from paperwatch.delivery import RunMemo, digest_items
from paperwatch.digest import (
    INLINED_FOLDER,
    DigestInfo,
    DigestItem,
    Highlight,
    Rendered,
    Templates,
    inlined_template,
    more_links,
)
from paperwatch.filters import HIGHLIGHT_STYLE, latex_text
from paperwatch.message import build_message, encoded_size, make_message_id
from paperwatch.models import Paper, SearchHit
from paperwatch.ruleset import compile_rules
from reference import render_reference
from support import packaged_templates

DAY = dt.date(2025, 3, 5)
SENTENCES = " ".join(f"Sentence {i} about grokking and loss curves in deep networks." for i in range(40))


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(None)


def paper(number: int, day: dt.date = DAY, **fields: Any) -> Paper:
    values: dict[str, Any] = {"title": f"Paper {number} on grokking", "summary": SENTENCES,
                              "authors": ("Ada Lovelace",), "daily_date": day, "upvotes": 3}
    return Paper(id=f"2503.{number:05d}", **{**values, **fields})


def info(days: tuple[dt.date, ...] = (DAY,)) -> DigestInfo:
    return DigestInfo(reader="alice", email="alice@example.org", days=days, papers_seen=300,
                      period_start=min(days), period_end=max(days))


def items(papers: list[Paper]) -> list[DigestItem]:
    return [DigestItem(p, ("grokking",), (Highlight("abstract", "grokking"),)) for p in papers]


def sent(rendered: Rendered) -> tuple[bytes, EmailMessage]:
    raw = build_message(rendered, sender="paperwatch <pw@example.org>", to="alice@example.org",
                        message_id=make_message_id("alice", "k"), date=dt.datetime(2025, 3, 5, 8, tzinfo=dt.UTC),
                        list_id="paperwatch digest <alice.digest.example.org>", unsubscribe="op@example.org")
    parsed = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def html_part_as_sent(raw: bytes) -> bytes:
    """The HTML part's body exactly as it travels: between its headers and the next boundary."""
    found = re.search(rb"Content-Type: text/html[^\r]*\r\n(?:[^\r]+\r\n)*\r\n(.*?\r\n)\r\n--", raw, re.S)
    assert found, raw[:500]
    return found.group(1)


def test_subject_counts_the_papers_in_this_mail_when_the_budget_cut_it(
        templates: Templates, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("paperwatch.digest.HTML_BUDGET", 20_000)
    rendered = templates.render(info(), items([paper(n) for n in range(40)]))
    shown = rendered.html.count('class="card"')
    assert 1 < shown < 40 and rendered.omitted == 40 - shown
    assert rendered.subject == f"{shown} new papers, {40 - shown} more next time: grokking"


def test_subject_of_an_uncut_digest_says_nothing_of_next_time(templates: Templates) -> None:
    assert templates.render(info(), items([paper(1), paper(2)])).subject == "2 new papers: grokking"
    assert templates.render(info(), items([paper(1)])).subject == "1 new paper: Paper 1 on grokking"


def test_and_n_more_links_each_day_the_rest_come_from(templates: Templates, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("paperwatch.digest.HTML_BUDGET", 8_000)
    days = [dt.date(2025, 3, 3), dt.date(2025, 3, 4), dt.date(2025, 3, 5)]
    papers = [paper(n, day=days[n % 3]) for n in range(30)]
    rendered = templates.render(info(tuple(days)), items(papers))
    left = papers[30 - rendered.omitted:]
    assert {p.daily_date for p in left} == set(days), "the test needs papers left out from every day"

    soup = BeautifulSoup(rendered.html, "html.parser")
    more = soup.select_one("div.more")
    assert more is not None and f"and {rendered.omitted} more matched papers" in more.get_text()
    links = {a.get_text(): str(a["href"]) for a in more.select("a")}
    assert links == {"3 Mar 2025": "https://huggingface.co/papers/date/2025-03-03",
                     "4 Mar 2025": "https://huggingface.co/papers/date/2025-03-04",
                     "5 Mar 2025": "https://huggingface.co/papers/date/2025-03-05"}
    for day in days:
        count = sum(p.daily_date == day for p in left)
        assert f"{day.day} Mar 2025 ({count})" in more.get_text()
        assert f"  {day.day} Mar 2025 ({count}): https://huggingface.co/papers/date/{day}" in rendered.text


@pytest.mark.parametrize(("days", "links"), [
    ([DAY, DAY, None], [("5 Mar 2025", "https://huggingface.co/papers/date/2025-03-05", 2),
                        ("undated", "https://huggingface.co/papers", 1)]),
    ([dt.date(2025, 3, d) for d in range(1, 11)],  # ten days: by ISO week
     [("week of 24 Feb 2025", "https://huggingface.co/papers/week/2025-W09", 2),
      ("week of 3 Mar 2025", "https://huggingface.co/papers/week/2025-W10", 7),
      ("week of 10 Mar 2025", "https://huggingface.co/papers/week/2025-W11", 1)]),
    ([dt.date(2025, m, 1) + dt.timedelta(days=7 * w) for m in (1, 2, 3) for w in range(4)],  # 12 weeks: by month
     [("Jan 2025", "https://huggingface.co/papers/month/2025-01", 4),
      ("Feb 2025", "https://huggingface.co/papers/month/2025-02", 4),
      ("Mar 2025", "https://huggingface.co/papers/month/2025-03", 4)]),
])
def test_more_links_stay_few_whatever_the_span(days: list[dt.date | None], links: list[tuple[str, str, int]]) -> None:
    assert list(more_links(days)) == links


def test_why_line_does_not_double_the_quotes_of_a_quoted_phrase() -> None:
    reader = Reader.model_validate({"name": "alice", "email": "alice@example.org", "rules": [
        {"name": "boxes", "keywords": ['"black box"']}, {"name": "q", "query": '"black box" OR interpret*'}]})
    matcher = compile_rules(Config.model_validate({"readers": [reader.model_dump()]}))
    found = digest_items(reader, [paper(1, title="Opening the black box", summary="We interpret it.")], matcher)
    assert found[0].why == ("boxes: “black box” in the title",
                            "q: “black box” in the title, “interpret*” in the abstract")


def test_highlights_are_spans_styled_inline_which_outlook_keeps(templates: Templates) -> None:
    p = paper(1, title="Grokking, grokked", authors=("Ada Lovelace", "Alan Turing"), ai_keywords=("grokking",),
              organization="Grokking Lab")
    marks = tuple(Highlight(field, text) for field, text in (
        ("title", "grokking"), ("abstract", "grokking"), ("authors", "Ada Lovelace"), ("ai_keywords", "grokking"),
        ("organization", "Grokking Lab")))
    rendered = templates.render(info(), [DigestItem(p, ("grokking",), marks)])
    soup = BeautifulSoup(rendered.html, "html.parser")
    spans = soup.select("span.hl")
    assert not soup.select("mark")
    for where in ("h3.title", "p.abstract", "p.authors", "span.keyword", "p.meta"):
        assert soup.select(f"{where} span.hl"), where
    assert all(span["style"] == HIGHLIGHT_STYLE and "background-color:" in str(span["style"]) for span in spans)
    # Dark mode still overrides them, from the <style> kept for the clients that read it.
    assert re.search(r"\.hl \{ background-color: #[0-9a-f]+ !important", soup.style.get_text() if soup.style else "")


def test_size_budget_counts_the_html_part_as_sent(templates: Templates) -> None:
    """Non-ASCII text costs three times its size in quoted-printable: a digest cut on the decoded
    size would go out past Gmail's clip."""
    heavy = " ".join("Ünïcödé “grokking” — δ-rule ≈ λ-calculus." for _ in range(60))
    rendered = templates.render(info(), items([paper(n, summary=heavy, title=f"Pâper {n} — grökking")
                                               for n in range(400)]))
    raw, parsed = sent(rendered)
    body = html_part_as_sent(raw)
    assert rendered.omitted > 0
    assert len(body) == encoded_size(rendered.html) <= 100_000 < 102_000
    assert len(rendered.html.encode()) < 0.8 * len(body), "the test needs a part that grows when encoded"
    html_part = parsed.get_body(("html",))
    assert html_part is not None and html_part.get_content().replace("\r\n", "\n") == rendered.html + "\n"
    # The next paper would not have fitted: the budget is used, not wasted by a blind cut.
    more = templates.render(info(), items([paper(n, summary=heavy, title=f"Pâper {n} — grökking")
                                           for n in range(400 - rendered.omitted + 1)]))
    assert more.omitted == 1


def test_message_is_seven_bit_with_short_lines_and_decodes_to_what_was_rendered(templates: Templates) -> None:
    rendered = templates.render(info(), items([paper(n, title="Ünïcödé " + "long " * 60) for n in range(5)]))
    raw, parsed = sent(rendered)
    assert max(raw) < 128
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert b"\n" not in raw.replace(b"\r\n", b"")
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html + "\n"  # a part ends with a line end
    assert html["Content-Transfer-Encoding"] == "quoted-printable" and html.get_content_charset() == "utf-8"


@pytest.mark.parametrize(("latex", "text"), [
    (r"a \textbf{specialist} model", "a specialist model"),
    (r"\emph{one}, \textit{two}, \texttt{three} and \textsc{four}", "one, two, three and four"),
    (r"in \mathrm{text} and \textbf{\emph{nested}}", "in text and nested"),
    (r"{\bf old} {\em style}", "old style"),
    (r"50\% of R\&D", "50% of R&D"),
    (r"cost $\mathrm{O}(n^2)$ and \textbf{fast}", r"cost $\mathrm{O}(n^2)$ and fast"),
    (r"display $$\textbf{x} = 1$$ and \(\mathbf{y}\)", r"display $$\textbf{x} = 1$$ and \(\mathbf{y}\)"),
    (r"costs \$5 and \textbf{more}", "costs $5 and more"),
    (r"unknown \foo{x} stays", r"unknown \foo{x} stays"),
])
def test_latex_text_commands_reduce_to_their_text_and_math_stays(latex: str, text: str) -> None:
    assert latex_text(latex) == text


def test_latex_in_an_abstract_reaches_the_reader_as_text(templates: Templates) -> None:
    p = paper(1, title=r"A \textbf{specialist} for $\mathbf{x}$",
              summary=r"We train a \emph{specialist} grokking model in $O(\log n)$ steps.")
    rendered = templates.render(info(), items([p]))
    soup = BeautifulSoup(rendered.html, "html.parser")
    for shown in (soup.get_text(), rendered.text):
        assert r"A specialist for $\mathbf{x}$" in shown
        assert r"We train a specialist grokking model in $O(\log n)$ steps." in shown
        assert "\\textbf" not in shown and "\\emph" not in shown


def without_card_block(tmp_path: Path) -> Path:
    """The packaged templates, with the HTML one's card block (and the blocks in it) taken out, as
    an older copy would be."""
    for name, text in packaged_templates().items():
        if name == "digest.html.j2":
            text = re.sub(r"\{% block \w+(?: scoped)? %\}\n", "", text).replace("{% endblock %}\n", "")
            assert "{% block" not in text.split("-#}", 1)[1]
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def styles(html: str) -> list[tuple[str, str, str]]:
    soup = BeautifulSoup(html, "html.parser")
    return [(tag.name, " ".join(tag.get("class") or []), str(tag.get("style", ""))) for tag in soup.find_all(True)]


def test_css_inlined_once_at_load_styles_every_element_as_inlining_each_digest_did(tmp_path: Path) -> None:
    once = render_reference(Templates.load(None))
    each = render_reference(Templates.load(without_card_block(tmp_path)))
    assert once.text == each.text and once.subject == each.subject
    assert styles(once.html) == styles(each.html)
    assert BeautifulSoup(once.html, "html.parser").get_text() == BeautifulSoup(each.html, "html.parser").get_text()


def test_the_shipped_inlined_template_is_the_packaged_one_inlined() -> None:
    shipped = (importlib.resources.files("paperwatch") / "templates" / INLINED_FOLDER / "digest.html.j2").read_text(
        encoding="utf-8")
    assert shipped == inlined_template(), (
        "templates/inlined/digest.html.j2 is not digest.html.j2 inlined: write it again with "
        "python -c 'from paperwatch.digest import write_inlined_template; write_inlined_template()'")


def test_the_packaged_templates_start_without_the_css_inliner() -> None:
    code = ("import sys; from paperwatch.digest import Templates; Templates.load(None); "
            "print('css_inline' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_template_without_a_card_block_still_fits_the_budget_as_sent(tmp_path: Path) -> None:
    templates = Templates.load(without_card_block(tmp_path))
    rendered = templates.render(info(), items([paper(n) for n in range(300)]))
    assert 0 < rendered.omitted < 300 and encoded_size(rendered.html) <= 100_000
    assert rendered.subject.startswith(f"{300 - rendered.omitted} new papers, {rendered.omitted} more next time")
    assert all(card.has_attr("style") for card in BeautifulSoup(rendered.html, "html.parser").select("div.card"))


def test_papers_matched_once_for_every_reader_give_each_reader_what_matching_them_alone_does() -> None:
    readers = [Reader.model_validate({"name": name, "email": f"{name}@example.org", "rules": rules}) for name, rules in (
        ("alice", [{"name": "grok", "keywords": ["grok*"]}, {"name": "people", "authors": ["Ada Lovelace"]}]),
        ("bob", [{"name": "loss", "keywords": ["loss curves"], "exclude": ["Paper 3"]}]),
        ("carol", [{"name": "nothing", "keywords": ["quantum gravity"]}]))]
    matcher = compile_rules(Config.model_validate({"readers": [r.model_dump() for r in readers]}))
    papers = [paper(n, authors=("Ada Lovelace",) if n % 2 else ("Alan Turing",)) for n in range(6)]
    memo = RunMemo(matcher)
    for reader in readers:
        alone = digest_items(reader, papers, matcher)
        assert digest_items(reader, papers, matcher, memo=memo) == alone
        assert (len(alone) == 0) == (reader.name == "carol")


@pytest.mark.parametrize(("query", "shown"), [
    ('"black box"', "“black box”"),
    ('"black box" OR "white box"', "“\"black box\" OR \"white box\"”"),  # quotes inside: kept as written
])
def test_why_line_of_a_saved_search_quotes_it_once(query: str, shown: str) -> None:
    reader = Reader.model_validate({"name": "alice", "email": "alice@example.org",
                                    "searches": [{"name": "boxes", "query": query}]})
    matcher = compile_rules(Config.model_validate({"readers": [reader.model_dump()]}))
    hit = SearchHit(paper(1), query, dt.datetime(2025, 3, 5, tzinfo=dt.UTC))
    assert digest_items(reader, [], matcher, [hit])[0].why == (f"boxes: a new result of your search {shown}",)
