"""Digest composition: hostile papers stay inert text, headers stay ours, templates fail loudly."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import re
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from paperwatch.blocks import BlockMemo
from paperwatch.digest import (
    DigestInfo,
    DigestItem,
    Highlight,
    Rendered,
    Templates,
    empty_reason,
    listing_url,
    safe_url,
)
from paperwatch.errors import TemplateError
from paperwatch.filters import shorten
from paperwatch.message import QpLines, build_message, encoded_size, make_message_id, message_domain, qp_encode
from paperwatch.models import Paper
from paperwatch.parse import parse_daily_api
from reference import HTML as REFERENCE_HTML
from reference import TEXT as REFERENCE_TEXT
from reference import reference_digest, render_reference

SAMPLES = Path(__file__).resolve().parent / "data" / "samples"
DAY = dt.date(2025, 3, 5)
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
           "Auto-Submitted", "MIME-Version", "Content-Type"]
ABSTRACT = ("We study grokking in small transformers. Training loss falls early & test loss late. "
            "We explain the delay with a circuit analysis.")


def paper(paper_id: str = "2503.00001", **fields: Any) -> Paper:
    values: dict[str, Any] = {"title": "Grokking explained", "summary": ABSTRACT, "authors": ("Ada Lovelace",),
                              "daily_date": DAY, "upvotes": 12, "comments": 3}
    return Paper(id=paper_id, **{**values, **fields})


def item(p: Paper | None = None, rules: tuple[str, ...] = ("grokking",), **fields: Any) -> DigestItem:
    return DigestItem(p or paper(), rules, **fields)


def info(papers_seen: int = 20, days: tuple[dt.date, ...] = (DAY,), **fields: Any) -> DigestInfo:
    return DigestInfo(reader="alice", email="alice@example.org", days=days, papers_seen=papers_seen,
                      period_start=fields.pop("period_start", None), period_end=fields.pop("period_end", None),
                      **fields)


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(None)


def message(rendered: Rendered, **overrides: Any) -> EmailMessage:
    """Build the message, send it through bytes and parse it back the way a receiver would."""
    args: dict[str, Any] = {"sender": "paperwatch <pw@example.org>", "to": "alice@example.org",
                            "message_id": make_message_id("alice", "2025-03-05"),
                            "date": dt.datetime(2025, 3, 5, 8, tzinfo=dt.UTC),
                            "list_id": "paperwatch digest <alice.digest.example.org>",
                            "unsubscribe": "mailto:operator@example.org?subject=unsubscribe"}
    raw = bytes(build_message(rendered, **{**args, **overrides}))
    parsed = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def unstyled(html: str) -> str:
    """The HTML without the inlined style attributes, to compare markup (class in single quotes)."""
    return re.sub(r' style="[^"]*"', "", html).replace('class="hl"', "class='hl'")


def hrefs(html: str) -> list[str]:
    soup = BeautifulSoup(html, "html.parser")
    return [str(tag[attr]) for tag in soup.find_all(True) for attr in ("href", "src", "action") if tag.has_attr(attr)]


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("script title", {"title": "<script>alert(1)</script> Grokking"}, "<script>alert(1)</script> Grokking"),
    ("script abstract", {"summary": "Grokking <script>alert(1)</script> <img src=x onerror=alert(2)>"},
     "<img src=x onerror=alert(2)>"),
    ("ampersand", {"title": "R&D for grokking &amp; friends"}, "R&D for grokking &amp; friends"),
    ("jinja in title", {"title": "Grokking {{ 7*7 }} {% raw %}"}, "Grokking {{ 7*7 }} {% raw %}"),
    ("jinja in abstract", {"summary": "We show {{ config }} and {{ 7*7 }} in grokking."}, "{{ 7*7 }}"),
    ("header injection", {"title": "Grokking\r\nBcc: evil@x\r\n\r\nbody"}, "Grokking Bcc: evil@x body"),
    ("unicode line separators", {"title": "Grokking\u2028Bcc: evil@x\u0085X-Evil: 1"},
     "Grokking Bcc: evil@x X-Evil: 1"),
    ("latex", {"title": r"Grokking $\mathcal{O}(n^{2})$ \textbf{fast} \\ done"},
     r"Grokking $\mathcal{O}(n^{2})$ fast \\ done"),
    ("300-char title", {"title": "Grokking " + "very " * 58 + "long"}, "Grokking very very"),
    ("40 authors", {"authors": tuple(f"Author{i} Name" for i in range(40))}, "and 37 more"),
    ("javascript links", {"github_repo": "javascript:alert(1)", "project_page": " JavaScript:alert(1)"}, "Grokking"),
    ("data links", {"github_repo": "data:text/html,<script>alert(1)</script>",
                    "project_page": "data:text/html;base64,PHNjcmlwdD4="}, "Grokking"),
    ("odd id", {"id": '2503.1"><script>x</script>'}, "Grokking"),
    ("control characters", {"title": "Gro\x00k\x1bking\u202e evil"}, "Grokking evil"),
]


@pytest.mark.parametrize(("hostile", "expected"), [(h, e) for _n, h, e in HOSTILE], ids=[n for n, _h, _e in HOSTILE])
def test_hostile_paper_is_inert_text_with_our_headers_only(
        templates: Templates, hostile: dict[str, Any], expected: str) -> None:
    """Markup, template syntax, header breaks and bad links in a paper reach the reader as plain text."""
    fields = {("paper_id" if key == "id" else key): value for key, value in hostile.items()}
    p = paper(**fields)
    rendered = templates.render(info(), [item(p)])
    parsed = message(rendered)

    assert list(parsed.keys()) == HEADERS
    html_part, text_part = parsed.get_body(("html",)), parsed.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    soup = BeautifulSoup(html, "html.parser")
    assert expected in soup.get_text() and expected in text
    assert not soup.find_all(["script", "img", "iframe", "object", "form"])
    assert all(re.match(r"https?://[^\s]+$", url) for url in hrefs(html))
    assert "49" not in soup.get_text() and "49" not in text
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert parsed["To"] == "alice@example.org"


def test_title_with_a_bcc_line_stays_in_the_subject(templates: Templates) -> None:
    """A one-paper digest puts the title in the Subject, where a CR/LF cannot start a header."""
    rendered = templates.render(info(), [item(paper(title="Grokking\r\nBcc: evil@x"))])
    parsed = message(rendered)
    assert parsed["Subject"] == "1 new paper: Grokking Bcc: evil@x"
    assert parsed["Bcc"] is None and list(parsed.keys()) == HEADERS


@pytest.mark.parametrize("field", ["sender", "to", "message_id", "list_id", "unsubscribe"])
def test_header_arguments_cannot_add_headers(templates: Templates, field: str) -> None:
    """Every value build_message puts in a header loses its line breaks."""
    rendered = templates.render(info(), [item()])
    value = {"sender": "pw@example.org", "to": "alice@example.org", "message_id": "<a@b>",
             "list_id": "digest <x.example.org>", "unsubscribe": "op@example.org"}[field]
    parsed = message(rendered, **{field: value + "\r\nBcc: evil@x\nX-Evil: 1"})
    assert list(parsed.keys()) == HEADERS


def test_subject_is_cut_to_200_characters(templates: Templates) -> None:
    rendered = templates.render(info(), [item(paper(title="Grokking " + "word " * 200))])
    assert len(rendered.subject) <= 200 and rendered.subject.endswith("…")
    assert len(message(rendered)["Subject"]) <= 200


def test_message_has_text_then_html_with_a_stable_message_id(templates: Templates) -> None:
    rendered = templates.render(info(), [item()])
    parsed = message(rendered)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["List-Unsubscribe"] == "<mailto:operator@example.org?subject=unsubscribe>"
    assert make_message_id("alice", "2025-03-05") == parsed["Message-ID"]
    assert make_message_id("alice", "2025-03-06") != parsed["Message-ID"]
    assert make_message_id("bob", "2025-03-05") != parsed["Message-ID"]


@pytest.mark.parametrize(("given", "header"), [
    ("ops@example.org", "<mailto:ops@example.org>"),
    ("Ops Team <ops@example.org>", "<mailto:ops@example.org>"),
    ("<ops@example.org>", "<mailto:ops@example.org>"),
    ("mailto:ops@example.org?subject=unsubscribe", "<mailto:ops@example.org?subject=unsubscribe>"),
    ("https://example.org/unsubscribe?u=alice", "<https://example.org/unsubscribe?u=alice>"),
])
def test_list_unsubscribe_is_one_url_whatever_form_the_operator_gave(
        templates: Templates, given: str, header: str) -> None:
    assert message(templates.render(info(), [item()]), unsubscribe=given)["List-Unsubscribe"] == header


def test_message_id_refuses_a_domain_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="domain"):
        make_message_id("alice", "k", domain="evil>\r\nBcc: x")


@pytest.mark.parametrize(("url", "expected"), [
    ("https://github.com/a/b", "https://github.com/a/b"),
    ("http://example.org/x?y=1#z", "http://example.org/x?y=1#z"),
    ("  https://example.org  ", "https://example.org"),
    ("HTTPS://example.org", "HTTPS://example.org"),
    ("javascript:alert(1)", None),
    ("JaVaScRiPt:alert(1)", None),
    ("\x01javascript:alert(1)", None),
    ("data:text/html,<b>x</b>", None),
    ("vbscript:msgbox", None),
    ("file:///etc/passwd", None),
    ("//example.org/x", None),
    ("https://", None),
    ("https://huggingface.co@evil.example/", None),
    ('https://example.org/"onmouseover="x', None),
    ("https://exa mple.org", None),
    ("https://[::1", None),
    ("", None),
    (None, None),
])
def test_safe_url_keeps_only_http_links_with_a_host(url: str | None, expected: str | None) -> None:
    assert safe_url(url) == expected


def test_custom_html_template_autoescapes_whatever_its_name(tmp_path: Path) -> None:
    """Autoescape is set, not guessed from the file name: ``digest.html.j2`` doesn't end in .html."""
    write_templates(tmp_path, {"digest.html.j2": "{% for g in groups %}{% for e in g.entries %}"
                                                 "<h1>{{ e.title }}</h1>{% endfor %}{% endfor %}"})
    rendered = Templates.load(tmp_path).render(info(), [item(paper(title="<b onclick=x>Grokking</b>"))])
    assert "&lt;b onclick=x&gt;Grokking&lt;/b&gt;" in rendered.html
    assert "<b onclick" not in rendered.html


@pytest.mark.parametrize(("name", "source", "line"), [
    ("digest.html.j2", "<p>\n{{ headline }}\n{% for g in groups %}\n", 3),
    ("digest.txt.j2", "{{ headline }}\n\n{{ info.reader | nosuchfilter }}\n", 3),
    ("subject.txt.j2", "{% if count %}\n{{ count }\n{% endif %}\n", 2),
])
def test_broken_custom_template_fails_at_load_naming_template_and_line(
        tmp_path: Path, name: str, source: str, line: int) -> None:
    write_templates(tmp_path, {name: source})
    with pytest.raises(TemplateError, match=rf"{re.escape(name)}:{line}: "):
        Templates.load(tmp_path)


@pytest.mark.parametrize(("name", "source", "line"), [
    ("digest.html.j2", "<p>{{ headline }}</p>\n\n{{ no_such_variable }}\n", 3),
    ("digest.txt.j2", "{{ headline }}\n{{ info.reader.nothing_here }}\n", 2),
    ("subject.txt.j2", "{{ count }}\n{{ 1 / 0 }}\n", 2),
    ("digest.html.j2", "ok\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n", 2),
    ("digest.txt.j2", "{% for g in groups %}{% for e in g.entries %}\n{{ e.paper.no_such_field }}"
                      "{% endfor %}{% endfor %}\n", 2),
    ("digest.txt.j2", "{% if not count %}\n{{ empty_reason.nope }}\n{% endif %}\n", 2),
])
def test_template_failing_on_a_sample_digest_fails_at_load(
        tmp_path: Path, name: str, source: str, line: int) -> None:
    """Loading renders a sample digest and an empty one, so a mistake that fails on any data is found at start-up."""
    write_templates(tmp_path, {name: source})
    with pytest.raises(TemplateError, match=rf"{re.escape(name)}:{line}: "):
        Templates.load(tmp_path)


@pytest.mark.parametrize(("name", "source", "line"), [
    ("digest.html.j2", '<p>{{ headline }}</p>\n{% if info.reader == "alice" %}\n{{ no_such_variable }}\n{% endif %}', 3),
    ("subject.txt.j2", '{{ count }}\n{{ 1 // (info.reader != "alice") }}\n', 2),
    ("digest.txt.j2", '{% if info.reader == "alice" %}\n{{ "".__class__.__mro__ }}\n{% endif %}\n', 2),
])
def test_template_failing_on_real_papers_raises_template_error_with_line(
        tmp_path: Path, name: str, source: str, line: int) -> None:
    """An error that only these papers trigger fails this digest with the template and line; the sandbox counts as one."""
    write_templates(tmp_path, {name: source})
    loaded = Templates.load(tmp_path)
    with pytest.raises(TemplateError, match=rf"{re.escape(name)}:{line}: "):
        loaded.render(info(), [item()])


def test_template_directory_must_hold_all_three(tmp_path: Path) -> None:
    write_templates(tmp_path)
    (tmp_path / "subject.txt.j2").unlink()
    with pytest.raises(TemplateError, match="missing subject.txt.j2"):
        Templates.load(tmp_path)


def test_template_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read"):
        Templates.load(tmp_path / "nowhere")


def test_custom_templates_cannot_include_files_outside_their_directory(tmp_path: Path) -> None:
    (tmp_path / "secret.j2").write_text("SECRET")
    folder = tmp_path / "templates"
    folder.mkdir()
    write_templates(folder, {"digest.txt.j2": '{% include "../secret.j2" %}'})
    with pytest.raises(TemplateError, match=r"digest\.txt\.j2:1: .*secret"):
        Templates.load(folder).render(info(), [item()])


def write_templates(folder: Path, overrides: dict[str, str] | None = None) -> None:
    """A complete custom template directory, with ``overrides`` (file name → source) replacing some."""
    sources = {"digest.html.j2": "<p>{{ headline }}</p>", "digest.txt.j2": "{{ headline }}",
               "subject.txt.j2": "{{ count }} papers", **(overrides or {})}
    for name, source in sources.items():
        (folder / name).write_text(source)


def test_size_budget_keeps_html_under_gmails_clip_with_and_n_more(templates: Templates) -> None:
    """300 papers with long abstracts: the HTML stays under ~102 KB and says how many were left out."""
    long_abstract = " ".join(f"Sentence {i} about grokking and loss curves in deep networks." for i in range(60))
    items = [item(paper(f"2503.{i:05d}", title=f"Paper {i} on grokking", summary=long_abstract,
                        authors=tuple(f"Author {j}" for j in range(40))),
                  highlights=(Highlight("abstract", "grokking"),)) for i in range(300)]
    rendered = templates.render(info(papers_seen=300), items)

    assert len(rendered.html.encode()) < 102_000
    assert 0 < rendered.omitted < 300
    shown = 300 - rendered.omitted
    assert rendered.html.count('class="card"') == shown
    assert f"and {rendered.omitted} more" in rendered.html and f"and {rendered.omitted} more" in rendered.text
    assert "Paper 0 on grokking" in rendered.html and "Paper 299 on grokking" not in rendered.html
    assert rendered.subject.startswith(f"{shown} new papers, {rendered.omitted} more next time: grokking")


def test_size_budget_is_filled_to_the_last_card_that_fits(templates: Templates) -> None:
    """Cards are measured as they will be sent: the room left is less than the next card needs."""
    abstracts = [" ".join(f"Sentence {i} on grokking, · loss = {n}." for i in range(20 + n % 7)) for n in range(300)]
    items = [item(paper(f"2503.{n:05d}", title=f"Paper {n} on grokking", summary=abstracts[n]),
                  highlights=(Highlight("abstract", "grokking"),)) for n in range(300)]
    rendered = templates.render(info(papers_seen=300), items)

    shown = 300 - rendered.omitted
    cards = rendered.html.split('<div class="card"')
    assert len(cards) == shown + 1 and 0 < rendered.omitted < 300
    room = 100_000 - encoded_size(rendered.html)
    left_out = templates.render(info(papers_seen=300), items[shown:shown + 1]).html
    next_card = '<div class="card"' + left_out.split('<div class="card"')[1].split("</div>")[0] + "</div>\n"
    assert 0 <= room < encoded_size(next_card)


_CARD_LOOP = "{% for g in groups %}<h2>{{ g.rule }}</h2>\n{% for e in g.entries %}{% block card scoped %}"


@pytest.mark.parametrize("html", [
    None,  # ours: cards are whole lines of the page
    # A card in the middle of a line, and the page's own text holding the mark a card goes in as.
    f'<p class="x">{_CARD_LOOP}<b>{{{{ e.title }}}}</b> = {{{{ e.paper.upvotes }}}}{{% endblock %}}{{% endfor %}}'
    "{% endfor %}</p>\n",
    f'<p>{{{{ "\\x00" }}}}</p>\n{_CARD_LOOP}<p>{{{{ e.title }}}}</p>\n{{% endblock %}}{{% endfor %}}{{% endfor %}}',
])
def test_page_as_sent_is_the_page_encoded_whatever_the_cards(tmp_path: Path, html: str | None) -> None:
    """The page is encoded from its cards' lines, encoded once when they were measured, and the
    text between them: byte for byte what encoding it whole gives, for a second reader too."""
    if html is not None:
        write_templates(tmp_path, {"digest.html.j2": html})
    loaded = Templates.load(None if html is None else tmp_path)
    items = [item(paper(f"2503.{n:05d}", title=f"Paper {n} · on = grokking", summary=ABSTRACT * (1 + n % 3)),
                  rules=("grokking",) if n % 2 else ("loss",), highlights=(Highlight("abstract", "grokking"),))
             for n in range(30)]
    lines, memo = QpLines(), BlockMemo()
    for seen in (30, 31):  # a second digest, its headline its own
        rendered = loaded.render(info(papers_seen=seen), items, memo=memo, lines=lines)
        assert lines.encode(rendered.html) == qp_encode(rendered.html)
        assert [rendered.html.count(f"Paper {n} ") for n in range(30)] == [1] * 30


def test_paper_matched_by_several_rules_appears_once_under_its_best(templates: Templates) -> None:
    items = [item(paper("1", title="Neural collapse meets grokking"), rules=("neural collapse", "grokking")),
             item(paper("2", title="Plain grokking")),
             item(paper("1", title="Neural collapse meets grokking"), rules=("optimisation",))]
    rendered = templates.render(info(), items)
    soup = BeautifulSoup(rendered.html, "html.parser")

    assert [h.get_text() for h in soup.select("h2.rule")] == ["neural collapse", "grokking"]
    assert [h.get_text() for h in soup.select("h3.title")] == ["Neural collapse meets grokking", "Plain grokking"]
    assert "also matched: grokking, optimisation" in soup.get_text()
    assert rendered.text.count("Neural collapse meets grokking") == 1
    assert "Also matched: grokking, optimisation" in rendered.text
    assert rendered.subject == "2 new papers: neural collapse, grokking"


def test_matched_words_are_highlighted_after_escaping(templates: Templates) -> None:
    p = paper(title="R&D <i>for</i> grokking", summary="Grokking & friends.", authors=("A B", "Ada Lovelace"),
              ai_keywords=("grokking", "loss"), organization="Lovelace Lab")
    marks = (Highlight("title", "R&D"), Highlight("title", "grokking"), Highlight("abstract", "grokking"),
             Highlight("authors", "Ada Lovelace"), Highlight("ai_keywords", "grokking"),
             Highlight("organization", "Lovelace Lab"))
    html = unstyled(templates.render(info(), [item(p, highlights=marks)]).html)

    assert "<span class='hl'>R&amp;D</span> &lt;i&gt;for&lt;/i&gt; <span class='hl'>grokking</span>" in html
    assert "<span class='hl'>Grokking</span> &amp; friends." in html
    assert "<span class='hl'>Ada Lovelace</span>" in html and "<span class='hl'>Lovelace Lab</span>" in html
    assert ">grokking</span></span>" in html
    assert "<span class='hl'>A B</span>" not in html


def test_forty_authors_are_shortened_keeping_matched_ones(templates: Templates) -> None:
    names = tuple(f"Author{i} Name" for i in range(40))
    marks = (Highlight("authors", "Author20 Name"),)
    rendered = templates.render(info(), [item(paper(authors=names), highlights=marks)])
    assert ("Author0 Name, Author1 Name, Author2 Name, …, <span class='hl'>Author20 Name</span>, … and 36 more"
            in unstyled(rendered.html))
    assert "Author0 Name, Author1 Name, Author2 Name, …, Author20 Name, … and 36 more" in rendered.text


def test_long_abstract_keeps_the_first_highlighted_sentence() -> None:
    filler = " ".join(f"Filler sentence number {i} says nothing of note." for i in range(30))
    text = f"We open with context. {filler} Here grokking finally appears. {filler}"
    short = shorten(text, ("grokking",))
    assert len(short) <= 620
    assert short.startswith("We open with context. … Here grokking finally appears.")
    assert short.endswith("…")
    assert shorten("Short and sweet.", ("grokking",)) == "Short and sweet."


def test_overlong_sentence_is_cut_at_a_word_around_the_highlight() -> None:
    text = " ".join(["word"] * 400) + " grokking " + " ".join(["word"] * 400)
    short = shorten(text, ("grokking",))
    assert "grokking" in short and len(short) <= 600
    assert short.startswith("… word") and short.endswith("word …")


@pytest.mark.parametrize(("digest", "reason"), [
    (info(papers_seen=0, days=()), "no papers were published in this period"),
    (info(papers_seen=0, days=(), period_start=DAY, period_end=DAY), "no papers were published on 5 Mar 2025"),
    (info(papers_seen=0, days=(), period_start=dt.date(2025, 2, 28), period_end=dt.date(2025, 3, 3)),
     "no papers were published from 28 Feb to 3 Mar 2025"),
    (info(papers_seen=87, days=(dt.date(2025, 3, 3), dt.date(2025, 3, 5))),
     "none of the 87 papers published from 3 to 5 Mar 2025 matched your rules"),
    (info(papers_seen=1), "the one paper published on 5 Mar 2025 did not match your rules"),
])
def test_empty_reason_says_why(digest: DigestInfo, reason: str) -> None:
    assert empty_reason(digest) == reason


@pytest.mark.parametrize("papers_seen", [0, 87])
def test_empty_digest_explains_itself(templates: Templates, papers_seen: int) -> None:
    digest = info(papers_seen=papers_seen, days=(DAY,) if papers_seen else ())
    rendered = templates.render(digest, [])
    reason = empty_reason(digest)
    assert f"Nothing new for you this time: {reason}." in rendered.text
    assert f"Nothing new for you this time: {reason}." in BeautifulSoup(rendered.html, "html.parser").get_text()
    assert rendered.subject == f"No new papers: {reason}"
    assert rendered.omitted == 0


def test_headline_says_what_the_digest_covers(templates: Templates) -> None:
    digest = info(papers_seen=87, days=(dt.date(2025, 3, 3), dt.date(2025, 3, 4), dt.date(2025, 3, 5)))
    rendered = templates.render(digest, [item()])
    headline = "Hugging Face Daily Papers, 3–5 Mar 2025: 3 days with papers, 87 papers seen, 1 matched"
    assert rendered.text.startswith(headline)
    assert headline in rendered.html


def test_packaged_templates_are_package_data() -> None:
    """The templates ship inside the package, so the wheel and an editable install both find them."""
    folder = importlib.resources.files("paperwatch") / "templates"
    assert {"digest.html.j2", "digest.txt.j2", "subject.txt.j2"} <= {f.name for f in folder.iterdir()}


def test_realistic_day_renders_every_link_and_inlines_the_css(templates: Templates) -> None:
    page = parse_daily_api((SAMPLES / "api-daily_papers-2025-03-05.json").read_bytes(), day=DAY, url="x")
    items = [item(p, rules=("sample",), highlights=(Highlight("title", p.title.split()[0]),),
                  why=(f'keyword "{p.title.split()[0]}" in title',)) for p in page.papers[:20]]
    rendered = templates.render(info(papers_seen=len(page.papers)), items)
    soup = BeautifulSoup(rendered.html, "html.parser")

    assert rendered.omitted == 0 and len(soup.select("div.card")) == 20
    assert all(card.has_attr("style") for card in soup.select("div.card"))
    assert "prefers-color-scheme: dark" in rendered.html
    assert all(url.startswith("https://") for url in hrefs(rendered.html))
    for p in page.papers[:20]:
        assert f"https://arxiv.org/pdf/{p.id}" in rendered.text


# -- the reference digest: what tests/data/digest-*.png show --------------------------------------


def test_templates_still_render_the_reference_digest() -> None:
    """The packaged templates render the reference digest exactly as committed, so a change to
    them comes with fresh screenshots (``python tests/render_reference.py``) that someone looked at."""
    rendered = render_reference()
    hint = "the digest templates changed: run tests/render_reference.py, look at the screenshots, commit them"
    assert rendered.html == REFERENCE_HTML.read_text(encoding="utf-8"), hint
    assert rendered.text == REFERENCE_TEXT.read_text(encoding="utf-8"), hint
    for name in ("light", "phone", "dark"):
        assert (REFERENCE_HTML.parent / f"digest-{name}.png").stat().st_size > 10_000


def test_reference_digest_shows_every_part_of_every_paper() -> None:
    """Twenty-odd real papers: grouped by best rule, each card with its links, people, numbers and reasons."""
    info, items = reference_digest()
    rendered = Templates.load(None).render(info, items)
    soup = BeautifulSoup(rendered.html, "html.parser")
    cards = soup.select("div.card")

    assert 20 <= len(cards) == len(items) and rendered.omitted == 0
    assert [h.get_text() for h in soup.select("h2.rule")] == list(dict.fromkeys(i.rules[0] for i in items))
    assert soup.select_one("p.headline").get_text() == (  # type: ignore[union-attr]
        f"Hugging Face Daily Papers, 4–5 Mar 2025: 1 day with papers, 26 papers seen, {len(items)} matched")
    for card, entry in zip(cards, items, strict=True):
        p = entry.paper
        links = {a.get_text(): str(a["href"]) for a in card.select("p.links a")}
        assert card.select_one("h3.title a")["href"] == f"https://huggingface.co/papers/{p.id}"  # type: ignore[index]
        assert links["arXiv"] == f"https://arxiv.org/abs/{p.id}" and links["PDF"] == f"https://arxiv.org/pdf/{p.id}"
        assert ("Project page" in links) == bool(p.project_page)
        assert any(k.startswith("GitHub") for k in links) == bool(p.github_repo)
        meta = card.select_one("p.meta").get_text()  # type: ignore[union-attr]
        assert f"▲ {p.upvotes}" in meta and "5 Mar 2025" in meta and f"{p.comments} comment" in meta
        assert card.select_one("p.why").get_text().startswith(entry.why[0])  # type: ignore[union-attr]
        if len(entry.rules) > 1:
            assert f"also matched: {', '.join(entry.rules[1:])}" in card.get_text()
        assert len(card.select("span.keyword")) == min(len(p.ai_keywords), 8)
        assert card.select("p.abstract span.hl"), "the words that matched are marked"
        authors = card.select_one("p.authors").get_text()  # type: ignore[union-attr]
        assert len(p.authors) <= 6 or "more" in authors
        for mark in card.select("p.authors span.hl"):
            assert mark.get_text() in p.authors
    author_marks = [m.get_text() for m in soup.select("p.authors span.hl")]
    assert "Ilya Sutskever" in author_marks


def test_reference_digest_is_built_for_mail_clients() -> None:
    """Styles inlined on every element, dark-mode and phone rules kept, no fixed widths, well under Gmail's clip."""
    html = render_reference().html
    soup = BeautifulSoup(html, "html.parser")
    style = soup.style.get_text() if soup.style else ""

    assert len(html.encode()) < 0.7 * 102_000
    assert "@media (prefers-color-scheme: dark)" in style and "@media (max-width: 480px)" in style
    assert soup.find("meta", attrs={"name": "viewport"}) and soup.find("meta", attrs={"name": "color-scheme"})
    for tag in soup.select(".card, .title, .meta, .authors, .why, .abstract, .keyword, .links a, .hl"):
        assert tag.has_attr("style"), tag.name
    widths = [int(w) for w in re.findall(r"(?<![-\w])width:\s*(\d+)px", html)]
    assert all(w <= 390 for w in widths), "a fixed width wider than a phone"
    assert all(url.startswith("https://") for url in hrefs(html))


def test_a_paper_bigger_than_the_budget_is_still_shown(templates: Templates, monkeypatch: pytest.MonkeyPatch) -> None:
    """Else it would hold back every digest after it, each saying "and N more" and sending nothing."""
    monkeypatch.setattr("paperwatch.digest.HTML_BUDGET", 1_000)
    rendered = templates.render(info(), [item(paper("1")), item(paper("2"))])
    assert rendered.omitted == 1 and rendered.html.count('class="card"') == 1


@pytest.mark.parametrize(("days", "url"), [
    ((DAY,), "https://huggingface.co/papers/date/2025-03-05"),
    ((dt.date(2025, 3, 3), DAY), "https://huggingface.co/papers/week/2025-W10"),
    ((dt.date(2025, 3, 3), dt.date(2025, 3, 14)), "https://huggingface.co/papers/month/2025-03"),
    ((dt.date(2024, 12, 30), dt.date(2025, 1, 3)), "https://huggingface.co/papers/week/2025-W01"),
    ((dt.date(2025, 2, 27), DAY), "https://huggingface.co/papers/date/2025-03-05"),
    ((), "https://huggingface.co/papers"),
])
def test_and_n_more_links_to_the_page_listing_the_papers_left_out(days: tuple[dt.date, ...], url: str) -> None:
    assert listing_url(days) == url


@pytest.mark.parametrize(("address", "domain"), [
    ("paperwatch <pw@example.org>", "example.org"),
    ("pw@Mail.Example.ORG", "Mail.Example.ORG"),
    ("pw@bücher.example", "xn--bcher-kva.example"),
    ("pw@localhost", "localhost"),
    ("pw@exa_mple.org", "localhost"),
    ("no address at all", "localhost"),
])
def test_message_ids_take_an_ascii_domain_from_the_sender(address: str, domain: str) -> None:
    assert message_domain(address) == domain
    assert make_message_id("alice", "k", domain=message_domain(address)).endswith(f"@{domain}>")
