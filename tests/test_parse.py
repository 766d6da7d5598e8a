"""The page parser: real-shaped pages in, papers out; unknown shapes are errors, never 0 papers."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
from pathlib import Path

import pytest

from paperwatch.errors import ParseError
from paperwatch.models import PageSource
from paperwatch.parse import (
    MAX_NESTING,
    check_nesting,
    clean_text,
    parse_daily_api,
    parse_daily_page,
    parse_paper_api,
    parse_search_api,
)

SAMPLES = Path(__file__).resolve().parent / "data" / "samples"
DAY = dt.date(2025, 3, 5)
URL = "http://site/papers/date/2025-03-05"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def page(props: dict[str, object], *, attrs_first: bool = False) -> bytes:
    """A page carrying ``props`` in the hydration div, with either attribute order."""
    escaped = html.escape(json.dumps(props), quote=True)
    attrs = [f'data-props="{escaped}"', 'data-target="DailyPapers"', 'class="SVELTE_HYDRATER contents"']
    if not attrs_first:
        attrs.reverse()
    return f"<html><body><section><div {' '.join(attrs)}></div></section></body></html>".encode()


def item(paper_id: str = "2503.00001", **paper: object) -> dict[str, object]:
    return {"paper": {"id": paper_id, "title": "A title", **paper}, "numComments": 2}


def test_daily_page_reads_every_paper_from_the_hydration_json() -> None:
    result = parse_daily_page(sample("papers-date-2025-03-05.html"), day=DAY, url=URL)
    assert result.source is PageSource.JSON
    assert result.empty_reason is None
    assert len(result.papers) == 26
    first = result.papers[0]
    assert first.id == "2503.10655"
    assert first.authors == ("Mohammad Salakhutdinov", "Ruslan Vapnik", "Vladimir O'Brien")
    assert first.organization == "Ai2"
    assert first.comments == 4
    assert first.daily_date == DAY
    assert "\n" not in (first.summary or "")


def test_page_and_api_of_the_same_day_agree() -> None:
    from_page = parse_daily_page(sample("papers-date-2025-03-05.html"), day=DAY, url=URL)
    from_api = parse_daily_api(sample("api-daily_papers-2025-03-05.json"), day=DAY, url=URL)
    assert from_api.source is PageSource.API
    assert sorted(from_page.papers, key=lambda p: p.id) == sorted(from_api.papers, key=lambda p: p.id)


def test_cards_are_read_when_the_json_is_missing_and_the_log_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    day = dt.date(2025, 3, 6)
    result = parse_daily_page(sample("papers-date-2025-03-06-cards-only.html"), day=day, url=URL)
    assert result.source is PageSource.CARDS
    assert len(result.papers) == 26
    paper = next(p for p in result.papers if p.id == "2503.18705")
    assert paper.title == "Tokens-to-Token ViT: Training Vision Transformers from Scratch on ImageNet"
    assert paper.upvotes == 27 and paper.comments == 3
    assert paper.authors == ("Zoubin Schmidhuber", "Sanjeev LeCun", "Yann Cho")
    assert not paper.complete and paper.summary is None
    assert "no hydration JSON" in caplog.text


def test_a_weekend_page_showing_another_day_means_no_papers() -> None:
    result = parse_daily_page(sample("papers-date-2025-03-08-weekend.html"), day=dt.date(2025, 3, 8), url=URL)
    assert result.papers == ()
    assert result.empty_reason == "page shows 2025-03-06"


def test_cards_for_another_day_mean_no_papers() -> None:
    body = sample("papers-date-2025-03-06-cards-only.html")
    result = parse_daily_page(body, day=dt.date(2025, 3, 7), url=URL)
    assert result.papers == () and result.empty_reason == "page shows 2025-03-06"


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"dateString": "2025-03-05", "periodType": "week", "dailyPapers": [item()]}, "page shows a week view"),
        ({"dateString": "2025-03-04", "periodType": "day", "dailyPapers": [item()]}, "page shows 2025-03-04"),
    ],
)
def test_other_periods_and_dates_are_empty_days(props: dict[str, object], reason: str) -> None:
    result = parse_daily_page(page(props), day=DAY, url=URL)
    assert result.papers == () and result.empty_reason == reason


def test_the_data_div_is_found_in_any_attribute_order_and_under_any_parent() -> None:
    props = {"dateString": "2025-03-05", "dailyPapers": [item()]}
    assert len(parse_daily_page(page(props, attrs_first=True), day=DAY, url=URL).papers) == 1
    assert len(parse_daily_page(page(props), day=DAY, url=URL).papers) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body><main><h1>Daily Papers</h1></main></body></html>", "changed shape"),
        (b"", "changed shape"),
        (b'<div data-target="DailyPapers" data-props="{&quot;dailyPapers&quot;:[{&quot;pa"></div>', "broken JSON"),
        (b'<div data-target="DailyPapers" data-props="[1, 2]"></div>', "not a JSON object"),
        (b'<div data-target="DailyPapers" data-props="{}"></div>', "no dailyPapers list"),
        (b'<div data-target="DailyPapers"></div>', "no data-props"),
        (b'<time datetime="2025-03-05"></time><article><h3>no link</h3></article></html>', "none of its 1 cards"),
    ],
)
def test_unknown_shapes_are_errors_naming_the_url(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_daily_page(body, day=DAY, url=URL)
    assert message in str(caught.value)
    assert str(caught.value).startswith(URL)


def test_truncated_real_page_is_an_error_not_fewer_papers() -> None:
    body = sample("papers-date-2025-03-05.html")
    with pytest.raises(ParseError):
        parse_daily_page(body[: len(body) // 2], day=DAY, url=URL)


def test_every_optional_field_may_be_missing() -> None:
    props = {"dateString": "2025-03-05", "dailyPapers": [{"paper": {"id": "2503.00002", "title": "Bare"}}]}
    (paper,) = parse_daily_page(page(props), day=DAY, url=URL).papers
    assert paper.as_json() == {
        "id": "2503.00002", "title": "Bare", "summary": None, "authors": [], "daily_date": "2025-03-05",
        "published_at": None, "upvotes": None, "comments": None, "github_repo": None, "github_stars": None,
        "project_page": None, "organization": None, "ai_keywords": [], "ai_summary": None,
        "url": "https://huggingface.co/papers/2503.00002",
    }


def test_wrongly_typed_fields_become_missing_not_errors() -> None:
    props = {"dateString": "2025-03-05", "dailyPapers": [
        item(upvotes="12", githubStars=True, authors=[{"name": 3}, "x", {"name": " Ada  Lovelace "}],
             ai_keywords="nope", organization=[1]),
    ]}
    (paper,) = parse_daily_page(page(props), day=DAY, url=URL).papers
    assert paper.upvotes is None and paper.github_stars is None
    assert paper.authors == ("Ada Lovelace",)
    assert paper.ai_keywords == () and paper.organization is None


@pytest.mark.parametrize(
    "names",
    [
        ["Ada Lovelace", "José Müller", "李 小龙"], [], [""], ["   "], ["Ada", "", "Bob"], [" Ada", "Bob "],
        ["A|B", "|C", "D|"], ["Ada  Lovelace"], ["Ada\nLovelace", "Bob"], ["\u202eAda", "Bob"], ["Ada", None, 3],
    ],
)
def test_author_names_are_each_one_clean_line_and_empty_ones_dropped(names: list[object]) -> None:
    props = {"dateString": "2025-03-05", "dailyPapers": [item(authors=[{"name": name} for name in names])]}
    (paper,) = parse_daily_page(page(props), day=DAY, url=URL).papers
    assert paper.authors == tuple(text for text in map(clean_text, names) if text)


@pytest.mark.parametrize(
    ("inner", "refused"),
    [
        ("<div>" * (MAX_NESTING - 2) + "</div>" * (MAX_NESTING - 2), False),  # html, body and the divs: the limit
        ("<div>" * (MAX_NESTING - 1) + "</div>" * (MAX_NESTING - 1), True),
        ("<div>" * (MAX_NESTING - 1), True),  # never closed: still open
        ("<p>x</p>" * 5 * MAX_NESTING, False),  # many elements, few open at once
        ("<br>" * 3 * MAX_NESTING, False),  # nothing a void element holds
    ],
)
def test_pages_nested_deeper_than_the_limit_are_refused_before_the_html_parser(inner: str, refused: bool) -> None:
    body = f"<html><body>{inner}</body></html>".encode()
    if refused:
        with pytest.raises(ParseError, match=f"nested over {MAX_NESTING} deep"):
            check_nesting(body, URL)
    else:
        check_nesting(body, URL)


def test_items_without_id_or_title_are_skipped_and_all_bad_is_an_error() -> None:
    good_and_bad = {"dateString": "2025-03-05", "dailyPapers": [item(), {"paper": {"title": "no id"}}, 7]}
    assert [p.id for p in parse_daily_page(page(good_and_bad), day=DAY, url=URL).papers] == ["2503.00001"]
    all_bad = {"dateString": "2025-03-05", "dailyPapers": [{"paper": {"title": "no id"}}]}
    with pytest.raises(ParseError, match="none of the 1 papers"):
        parse_daily_page(page(all_bad), day=DAY, url=URL)


def test_an_empty_day_in_the_json_is_zero_papers_not_an_error() -> None:
    result = parse_daily_page(page({"dateString": "2025-03-05", "dailyPapers": []}), day=DAY, url=URL)
    assert result.papers == () and result.empty_reason is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Deep\n  Learning", "Deep Learning"),
        ("hard\nwrapped\nabstract", "hard wrapped abstract"),
        ("del\x7fand\x1bescape", "del and escape"),
        ("naïve\ntext", "naïve text"),
        ("  a\t\tb \r\n c  ", "a b c"),
        ("<b>bold</b> & co", "<b>bold</b> & co"),
        ("nul\x00byte", "nul byte"),
        ("line\u2028sep", "line sep"),
        ("c1\x80\x9fcontrol\x85end", "c1 control end"),
        ("\u202eexe.pdf\u202c and \u2066isolated\u2069", "exe.pdf and isolated"),
        ("lone \ud800 surrogate\udfff", "lone \ufffd surrogate\ufffd"),
        ("   ", None),
        (None, None),
        (42, None),
    ],
)
def test_text_is_whitespace_collapsed_and_otherwise_kept(raw: object, clean: str | None) -> None:
    assert clean_text(raw) == clean


def test_html_in_titles_is_kept_as_text() -> None:
    props = {"dateString": "2025-03-05", "dailyPapers": [item(title="x")]}
    props["dailyPapers"][0]["title"] = "When <script>alert(1)</script> & \n  LaTeX $x<y$"  # type: ignore[index]
    (paper,) = parse_daily_page(page(props), day=DAY, url=URL).papers
    assert paper.title == "When <script>alert(1)</script> & LaTeX $x<y$"


def test_api_answer_that_is_not_an_array_is_an_error() -> None:
    with pytest.raises(ParseError, match="expected a JSON array"):
        parse_daily_api(b'{"error": "Invalid date"}', day=DAY, url=URL)
    with pytest.raises(ParseError, match="broken JSON"):
        parse_daily_api(b'[{"paper": {"id"', day=DAY, url=URL)


def cards_page(cards: str, *, shows: str | None = "2025-03-05", end: str = "</body></html>") -> bytes:
    time = f'<time datetime="{shows}">Mar 5</time>' if shows is not None else ""
    return f"<html><body><section>{time}{cards}</section>{end}".encode()


def card(href: str = "/papers/2503.00001", title: str = "A title", upvotes: str = "7") -> str:
    return (f'<article><label><div class="leading-none">{upvotes}</div></label>'
            f'<h3><a href="{href}">{title}</a></h3></article>')


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000])
def test_json_nested_too_deeply_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_daily_api(body, day=DAY, url=URL)
    escaped = html.escape(body.decode()).encode()
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_daily_page(b'<div data-target="DailyPapers" data-props="' + escaped + b'"></div>', day=DAY, url=URL)


@pytest.mark.parametrize("paper_id",
                         ["2503.00001\n", "2503.00001/", "../x", "2503.00001/../../settings", "a b", "x" * 65])
def test_ids_are_whole_path_segments(paper_id: str) -> None:
    with pytest.raises(ParseError, match="none of the 1 papers"):
        parse_daily_api(json.dumps([item(paper_id)]).encode(), day=DAY, url=URL)
    with pytest.raises(ParseError, match="none of its 1 cards"):
        parse_daily_page(cards_page(card(href=f"/papers/{paper_id}")), day=DAY, url=URL)


def test_old_style_arxiv_ids_are_still_ids() -> None:
    (paper,) = parse_daily_api(json.dumps([item("hep-th/9901001")]).encode(), day=DAY, url=URL).papers
    assert paper.id == "hep-th/9901001"


def test_counts_beyond_any_real_one_are_missing() -> None:
    items = [item("2503.00001", upvotes=2**63, githubStars=2**53), {**item("2503.00002"), "numComments": 10**30}]
    first, second = parse_daily_api(json.dumps(items).encode(), day=DAY, url=URL).papers
    assert first.upvotes is None and first.github_stars is None and second.comments is None
    (paper,) = parse_daily_page(cards_page(card(upvotes="9" * 5_000)), day=DAY, url=URL).papers
    assert paper.upvotes is None
    (paper,) = parse_daily_page(cards_page(card(upvotes="1,234")), day=DAY, url=URL).papers
    assert paper.upvotes == 1234


def test_links_and_dates_are_one_clean_line_and_dates_are_iso_8601() -> None:
    items = [item("2503.00001", githubRepo=" https://github.com/a/b\r\nX-Injected: 1 ",
                  projectPage="\u202ehttps://x.org", publishedAt="2024-07-18T05:15:24.000Z\n"),
             item("2503.00002", publishedAt="yesterday"), item("2503.00003", publishedAt="2024-13-45")]
    first, second, third = parse_daily_api(json.dumps(items).encode(), day=DAY, url=URL).papers
    assert first.github_repo == "https://github.com/a/b X-Injected: 1"
    assert first.project_page == "https://x.org"
    assert first.published_at == "2024-07-18T05:15:24.000Z"
    assert second.published_at is None and third.published_at is None


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"dailyPapers": [item()]}, "does not say which day it shows (dateString null)"),
        ({"dateString": None, "dailyPapers": [item()]}, "does not say which day it shows (dateString null)"),
        ({"dateString": ["2025-03-05"], "dailyPapers": [item()]}, "(dateString <list>)"),
        ({"dateString": "a\r\nb", "dailyPapers": [item()]}, '(dateString "a\\r\\nb")'),
        ({"dateString": "2025-03-05", "periodType": None, "dailyPapers": [item()]}, "unknown periodType null"),
        ({"dateString": "2025-03-05", "periodType": " day", "dailyPapers": [item()]}, 'unknown periodType " day"'),
    ],
)
def test_a_page_that_does_not_say_which_day_it_shows_is_an_error_not_that_days_papers(
        props: dict[str, object], message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_daily_page(page(props), day=DAY, url=URL)
    assert message in str(caught.value) and str(caught.value).isprintable()


def test_cards_that_do_not_say_which_day_they_show_are_an_error() -> None:
    with pytest.raises(ParseError, match="do not say which day"):
        parse_daily_page(cards_page(card(), shows=None), day=DAY, url=URL)
    with pytest.raises(ParseError, match="do not say which day"):
        parse_daily_page(cards_page(card(), shows="soon"), day=DAY, url=URL)


def test_a_cut_cards_page_is_an_error_not_cut_titles_or_counts() -> None:
    body = sample("papers-date-2025-03-06-cards-only.html")
    cut = body.index(b"Tokens-to-Token ViT") + len(b"Tokens-to")
    with pytest.raises(ParseError, match="cut short"):
        parse_daily_page(body[:cut], day=dt.date(2025, 3, 6), url=URL)
    whole = parse_daily_page(body + b"\n", day=dt.date(2025, 3, 6), url=URL)
    assert len(whole.papers) == 26


# -- shapes the real site served (tests/data/samples/real) -----------------------------------

@pytest.mark.parametrize(("stamp", "papers"), [
    ("2025-03-05T00:00:00.000Z", 1),  # the real 2024 shape
    ("2025-03-04T23:30:00-01:00", 1),  # the 5th in UTC
    ("2025-03-05T00:30:00+01:00", 0),  # the 4th in UTC: another day's page
])
def test_a_page_that_says_date_not_datestring_is_read_by_its_utc_date(stamp: str, papers: int) -> None:
    props = {"date": stamp, "nextDate": None, "prevDate": "2025-03-04", "dailyPapers": [item()]}
    result = parse_daily_page(page(props), day=DAY, url=URL)
    assert (len(result.papers), result.source) == (papers, PageSource.JSON)
    assert result.empty_reason == (None if papers else "page shows 2025-03-04")


def test_a_date_that_is_no_timestamp_is_an_error() -> None:
    with pytest.raises(ParseError, match=r"does not say which day it shows \(dateString null, date yesterday\)"):
        parse_daily_page(page({"date": "yesterday", "dailyPapers": [item()]}), day=DAY, url=URL)


def test_unknown_extra_keys_anywhere_never_break_a_parse() -> None:
    odd: dict[str, object] = {"x-new": [1, {"a": None}], "ai_summary_model": {"nested": True}, "weird": 3.5}
    props = {"dateString": "2025-03-05", "dailyPapers": [{**item(**odd), **odd}], **odd}
    (paper,) = parse_daily_page(page(props), day=DAY, url=URL).papers
    assert (paper.id, paper.title) == ("2503.00001", "A title")


@pytest.mark.parametrize(("where", "expected"), [
    ({"organization": {"fullname": "  Item  Org ", "name": "i"}, "paper_org": {"fullname": "Paper Org"}}, "Item Org"),
    ({"paper_org": {"fullname": "", "name": " paper-org "}, "submitterOrganization": {"fullname": "S"}}, "paper-org"),
    ({"submitterOrganization": {"_id": "1", "name": "Tsinghua", "fullname": "Tsinghua University"}},
     "Tsinghua University"),
    ({"submitterOrganization": "not an object"}, None),
])
def test_organization_from_the_item_the_paper_or_the_submitter(where: dict[str, object], expected: str | None) -> None:
    entry = item(**({"organization": where["paper_org"]} if "paper_org" in where else {}))
    entry |= {k: v for k, v in where.items() if k != "paper_org"}
    (paper,) = parse_daily_api(json.dumps([entry]).encode(), day=DAY, url=URL).papers
    assert paper.organization == expected


def test_ai_summary_is_kept_as_one_clean_line() -> None:
    (paper,) = parse_daily_api(json.dumps([item(ai_summary=" One\nsentence  by the site. ")]).encode(),
                               day=DAY, url=URL).papers
    assert paper.ai_summary == "One sentence by the site."
    assert paper.as_json()["ai_summary"] == "One sentence by the site."


def test_the_real_flat_search_results_are_incomplete_papers_with_titles() -> None:
    body = (SAMPLES / "real" / "api-papers-search-q-attention-2024-09-18.json").read_bytes()
    papers = parse_search_api(body, url=URL)
    assert [(p.id, p.complete, p.summary) for p in papers][:2] == [("2409.07146", False, None),
                                                                    ("2409.03752", False, None)]
    assert papers[0].title == "Gated Slot Attention for Efficient Linear-Time Sequence Modeling"
    assert len(papers) == 5


def test_search_results_flat_with_details_and_wrapped_mix() -> None:
    flat = {"id": "2409.00001", "title": "Flat", "upvotes": 7, "publishedAt": "2024-09-01T00:00:00.000Z",
            "authors": [{"name": "Ada Lovelace", "user": {"user": "ada"}}], "summary": "An abstract.",
            "thumbnailUrl": "x", "source": "hf", "whatever": {"new": 1}}
    wrapped = item("2409.00002", summary="Whole.", submittedOnDailyAt="2024-09-03T08:00:00.000Z")
    first, second = parse_search_api(json.dumps([flat, wrapped]).encode(), url=URL)
    assert (first.title, first.upvotes, first.authors, first.summary, first.complete) == (
        "Flat", 7, ("Ada Lovelace",), "An abstract.", False)
    assert (second.id, second.complete, second.daily_date) == ("2409.00002", True, dt.date(2024, 9, 3))


def test_the_paper_api_gives_a_complete_paper() -> None:
    body = json.dumps({"id": "2409.00001", "title": "T", "summary": "S.", "authors": [{"name": "A"}],
                       "upvotes": 3, "submittedOnDailyAt": "2024-09-03T08:00:00.000Z", "ai_summary": "Short."})
    paper = parse_paper_api(body.encode(), url=URL)
    assert (paper.id, paper.summary, paper.authors, paper.upvotes, paper.daily_date, paper.ai_summary, paper.complete) \
        == ("2409.00001", "S.", ("A",), 3, dt.date(2024, 9, 3), "Short.", True)
    with pytest.raises(ParseError, match="no id or no title"):
        parse_paper_api(b'{"error": "Paper not found"}', url=URL)


def test_a_challenge_page_is_named_and_a_redesign_is_not() -> None:
    from fakehf import CHALLENGE_PAGE, render_page

    with pytest.raises(ParseError, match="the site answered with a challenge page"):
        parse_daily_page(CHALLENGE_PAGE, day=DAY, url=URL)
    # A redesigned page whose paper is about a challenge still links its papers: changed shape.
    redesign = render_page("2025-03-05", [{"paper": {"id": "2503.00001", "title": "The TADPOLE Challenge"}}],
                           prev_date=None, mode="changed")
    with pytest.raises(ParseError, match="changed shape"):
        parse_daily_page(redesign, day=DAY, url=URL)
