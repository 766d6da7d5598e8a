"""What huggingface.co really served (tests/data/samples/real), through the fake site.

Every real capture is served as a daily page built around its real items, and through the API
behind a bot challenge; the real 2024 page is also served byte for byte. Whatever the route,
every real paper must be stored with its real title, abstract, authors (the names in the JSON,
never the HF usernames the 2024 cards show), upvotes, organization and the site's summary. The
real flat search results are stored and completed from ``/api/papers/{id}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST_SOURCE, ConfigFactory, write_config
from fakehf import REAL, FakeHF, Fault
from paperwatch.config import Config
from paperwatch.digest import Templates
from paperwatch.fetch import Fetcher
from paperwatch.models import DayFetch, PageSource, Paper
from paperwatch.parse import parse_daily_api
from paperwatch.pipeline import DayReport, fetch_days, fetch_searches, today_utc
from paperwatch.schema import MIGRATIONS
from paperwatch.store import Store
from reference import reference_digest
from smtpserver import Recorder, SmtpServer
from support import ids, paperwatch
from support import write_config as delivery_config

# file → the day it lists
CAPTURES = {
    "api-daily_papers-2024-03-12.raw.json": dt.date(2024, 3, 12),
    "api-daily_papers-2025-03-17.json": dt.date(2025, 3, 17),
    "api-daily_papers-2025-09-30.json": dt.date(2025, 9, 30),
    "api-daily_papers-2026-08-21.json": dt.date(2026, 8, 21),
    "papers-date-2024-08-01.html": dt.date(2024, 8, 1),
}
REAL_PAGE = "papers-date-2024-08-01.html"
SEARCH = "api-papers-search-q-attention-2024-09-18.json"


def test_every_real_capture_is_covered() -> None:
    on_disk = {p.name for p in REAL.iterdir() if p.suffix in (".json", ".html")}
    assert on_disk == set(CAPTURES) | {SEARCH}


def text(value: Any) -> Any:
    return " ".join(value.split()) if isinstance(value, str) else None


def expected(item: dict[str, Any]) -> dict[str, Any]:
    """What must be stored of a real item, read off the JSON independently of the parser."""
    paper = item["paper"]
    org = item.get("organization") or paper.get("organization") or item.get("submitterOrganization")
    return {
        "title": text(item.get("title") or paper["title"]),
        "summary": text(paper.get("summary") or item.get("summary")),
        "authors": tuple(text(a["name"]) for a in paper["authors"]),
        "upvotes": paper["upvotes"],
        "organization": text(org.get("fullname") or org.get("name")) if org else None,
        "ai_summary": text(paper.get("ai_summary")),
    }


def stored(paper: Paper) -> dict[str, Any]:
    return {"title": paper.title, "summary": paper.summary, "authors": paper.authors, "upvotes": paper.upvotes,
            "organization": paper.organization, "ai_summary": paper.ai_summary}


def usernames(items: list[dict[str, Any]]) -> set[str]:
    """HF account names of claimed authors that differ from every author's real name."""
    names = {a["name"] for item in items for a in item["paper"]["authors"]}
    handles = {a["user"]["user"] for item in items for a in item["paper"]["authors"] if isinstance(a.get("user"), dict)}
    return handles - names


class Site:
    def __init__(self, config: Config, store: Store, fetcher: Fetcher, hf: FakeHF) -> None:
        self.config, self.store, self.fetcher, self.hf = config, store, fetcher, hf

    async def fetch(self, day: dt.date) -> DayReport:
        (report,) = await fetch_days(self.fetcher, self.store, self.config.source.base_url, [day])
        return report


@pytest.fixture
async def site(make_config: ConfigFactory, fake_hf: FakeHF) -> AsyncIterator[Site]:
    config = make_config()
    async with await Store.open(config.database) as store, Fetcher(config.source) as fetcher:
        yield Site(config, store, fetcher, fake_hf)


@pytest.mark.parametrize("route", ["page", "challenge"])
@pytest.mark.parametrize("name", sorted(CAPTURES))
async def test_every_real_paper_is_stored_whole(site: Site, name: str, route: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    day, items = CAPTURES[name], FakeHF.sample_items(f"real/{name}")
    site.hf.days[day] = items
    if name == REAL_PAGE:
        site.hf.page_style[day] = "2024"
    if route == "challenge":
        site.hf.page_mode[day] = "challenge"
    with caplog.at_level(logging.WARNING, logger="paperwatch.pipeline"):
        report = await site.fetch(day)
    assert report.outcome == "ok", report.line()
    assert report.source is (PageSource.API if route == "challenge" else PageSource.JSON)
    if route == "challenge":
        assert "the site answered with a challenge page; trying the API instead" in caplog.text
    papers = {p.id: p for p in await site.store.papers(date=day)}
    want = {item["paper"]["id"]: expected(item) for item in items}
    assert {i: stored(p) for i, p in papers.items()} == want
    assert not usernames(items) & {a for p in papers.values() for a in p.authors}


async def test_the_real_2024_page_parses_from_its_json(site: Site) -> None:
    day, items = CAPTURES[REAL_PAGE], FakeHF.sample_items(f"real/{REAL_PAGE}")
    site.hf.raw_pages[day] = (REAL / REAL_PAGE).read_bytes()  # as served, byte for byte
    report = await site.fetch(day)
    assert (report.outcome, report.source, report.papers) == ("ok", PageSource.JSON, 13)
    papers = {p.id: p for p in await site.store.papers(date=day)}
    assert {i: stored(p) for i, p in papers.items()} == {item["paper"]["id"]: expected(item) for item in items}
    # The real cards name claimed authors by username ("mannatsingh"): none of them is stored.
    assert "mannatsingh" in usernames(items)
    assert not usernames(items) & {a for p in papers.values() for a in p.authors}


async def test_the_2025_09_30_organizations_come_from_the_submitter(site: Site) -> None:
    day = CAPTURES["api-daily_papers-2025-09-30.json"]
    items = FakeHF.sample_items("real/api-daily_papers-2025-09-30.json")
    assert not any("organization" in item or "organization" in item["paper"] for item in items)
    site.hf.days[day] = items
    await site.fetch(day)
    orgs = Counter(p.organization for p in await site.store.papers(date=day))
    with_org = sum(1 for item in items if item.get("submitterOrganization"))
    assert with_org >= 30 and sum(n for org, n in orgs.items() if org) == with_org
    assert orgs["Tsinghua University"] >= 1


def real_details(index: int, result: dict[str, Any]) -> dict[str, Any]:
    """``/api/papers/{id}`` for a real search result: the real id and title in a paper object
    of the site's shape (no capture of that endpoint exists)."""
    day = dt.date(2024, 9, 12)
    return FakeHF.make_item(day, index, id=result["id"], title=result["title"], authors=3)["paper"]


async def test_real_flat_search_results_are_stored_and_completed(site: Site) -> None:
    results = json.loads((REAL / SEARCH).read_text(encoding="utf-8"))
    assert all(set(r) == {"id", "title", "thumbnailUrl", "source"} for r in results)
    details = {r["id"]: real_details(n, r) for n, r in enumerate(results)}
    site.hf.papers.update(details)
    site.hf.searches["attention"] = results
    site.hf.searches["linear attention"] = results[:3]  # the same papers twice in one poll
    base = site.config.source.base_url
    reports = await fetch_searches(site.fetcher, site.store, base, ["attention", "linear attention"])
    assert [r.line() for r in reports] == ["search 'attention': 5 results, 5 new",
                                           "search 'linear attention': 3 results, 3 new"]
    asked = Counter(r.path for r in site.hf.requests if r.path.startswith("/api/papers/2"))
    assert asked == Counter({f"/api/papers/{r['id']}": 1 for r in results}), "one request per paper per poll"
    papers = {p.id: p for p in await site.store.papers()}
    for result in results:
        paper, detail = papers[result["id"]], details[result["id"]]
        assert paper.title == result["title"] and paper.complete
        assert paper.summary == text(detail["summary"])
        assert paper.authors == tuple(a["name"] for a in detail["authors"])
        assert paper.upvotes == detail["upvotes"] and paper.published_at == detail["publishedAt"]

    # The next poll: the stored papers are complete, so their details are not asked again.
    await fetch_searches(site.fetcher, site.store, base, ["attention"])
    assert sum(1 for r in site.hf.requests if r.path.startswith("/api/papers/2")) == len(results)


async def test_a_flat_result_never_erases_what_a_day_stored(site: Site) -> None:
    day = CAPTURES["api-daily_papers-2026-08-21.json"]
    items = FakeHF.sample_items("real/api-daily_papers-2026-08-21.json")
    site.hf.days[day] = items
    await site.fetch(day)
    known = items[0]["paper"]
    flat = [{"id": known["id"], "title": "A shorter title", "thumbnailUrl": "x", "source": "hf"}]
    site.hf.searches["q"] = flat
    site.hf.fail(f"/api/papers/{known['id']}", *[Fault.status(404)] * 5)
    await fetch_searches(site.fetcher, site.store, site.config.source.base_url, ["q"])
    (paper,) = [p for p in await site.store.papers() if p.id == known["id"]]
    assert stored(paper) == expected(items[0])
    assert not [r for r in site.hf.requests if r.path == f"/api/papers/{known['id']}"]


async def test_flat_results_without_details_keep_their_titles(site: Site) -> None:
    results = json.loads((REAL / SEARCH).read_text(encoding="utf-8"))
    site.hf.searches["attention"] = results  # /api/papers/{id} answers 404 for all of them
    (report,) = await fetch_searches(site.fetcher, site.store, site.config.source.base_url, ["attention"])
    assert not report.failed and report.results == 5
    papers = {p.id: p for p in await site.store.papers()}
    assert {i: (p.title, p.summary, p.url) for i, p in papers.items()} == {
        r["id"]: (r["title"], None, f"https://huggingface.co/papers/{r['id']}") for r in results}


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_failed_day_is_counted_and_fetched_again_by_the_next_poll_and_by_backfill(
        tmp_path: Path, fake_hf: FakeHF) -> None:
    yesterday = today_utc() - dt.timedelta(days=1)  # within the poll's lookback
    older = today_utc() - dt.timedelta(days=20)  # only backfill reaches it
    config = str(write_config(tmp_path / "pw.toml", fake_hf.base_url))
    for day in (yesterday, older):  # the page is down and the API lists nothing (yet)
        fake_hf.fail(f"/papers/date/{day}", *[Fault.status(503)] * (FAST_SOURCE["retries"] + 1))
    code, out, err = await paperwatch("-c", config, "run", "--once")
    assert f"{yesterday}: failed: " in out and "the API lists no papers" in out, out + err
    code, out, err = await paperwatch("-c", config, "backfill", "--since", str(older), "--until", str(older))
    assert code == 1 and "1 failed" in out, out + err
    code, out, err = await paperwatch("-c", config, "status", "--json")
    status = json.loads(out)
    assert status["days"]["failed"] == 2
    assert {d["day"] for d in status["failed_days"]} == {str(yesterday), str(older)}

    fake_hf.days[yesterday] = [FakeHF.make_item(yesterday, n) for n in range(4)]
    fake_hf.days[older] = [FakeHF.make_item(older, n) for n in range(5)]
    code, out, err = await paperwatch("-c", config, "run", "--once")
    assert f"{yesterday}: 4 papers, 4 new" in out, out + err
    code, out, err = await paperwatch("-c", config, "backfill", "--since", str(older), "--until", str(older))
    assert code == 0 and "0 already complete, 1 to fetch" in out and "1 day stored (5 papers, 5 new)" in out, out
    code, out, err = await paperwatch("-c", config, "status", "--json")
    assert json.loads(out)["days"]["failed"] == 0


async def test_an_existing_database_gains_ai_summary_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS):  # the schema as it was before ai_summary
        db.executescript(f"{script}\nPRAGMA user_version = {number + 1};")
    db.execute("INSERT INTO papers (id, title, summary, complete, first_seen, last_seen) "
               "VALUES ('2401.00001', 'Kept', 'An abstract.', 1, '2024-01-02', '2024-01-02')")
    db.commit()
    db.close()
    day = CAPTURES["api-daily_papers-2026-08-21.json"]
    items = FakeHF.sample_items("real/api-daily_papers-2026-08-21.json")
    async with await Store.open(path) as store:
        (old,) = await store.papers_by_id(["2401.00001"])
        assert (old.title, old.summary, old.ai_summary) == ("Kept", "An abstract.", None)
        page = parse_daily_api(json.dumps(items).encode(), day=day, url="capture")
        await store.record_day(DayFetch(day, "capture", 200, page=page))
    async with await Store.open(path) as store:  # a second open adds nothing and loses nothing
        papers = {p.id: p for p in await store.papers()}
    assert papers["2401.00001"].summary == "An abstract."
    assert {p.id: p.ai_summary for p in papers.values() if p.id != "2401.00001"} == {
        item["paper"]["id"]: text(item["paper"].get("ai_summary")) for item in items}
    assert any(p.ai_summary for p in papers.values())


@pytest.mark.e2e
@pytest.mark.slow
async def test_flat_search_results_without_details_are_still_mailed_with_titles_and_links(tmp_path: Path) -> None:
    results = json.loads((REAL / SEARCH).read_text(encoding="utf-8"))
    readers = ('\n[[readers]]\nname = "alice"\nemail = "alice@example.org"\n'
               '[[readers.searches]]\nname = "attention"\nquery = "attention"\n')
    recorder = Recorder()
    async with FakeHF() as hf:
        hf.searches["attention"] = results[:4]  # every /api/papers/{id} answers 404
        with SmtpServer(recorder) as smtp:
            path = str(delivery_config(tmp_path, hf, smtp=smtp, readers=readers))
            code, out, err = await paperwatch("-c", path, "run", "--once")
            assert code == 0 and "search 'attention': 4 results, 4 new" in out, out + err
            hf.searches["attention"] = results
            code, out, err = await paperwatch("-c", path, "run", "--once")
            assert code == 0, out + err
    (message,) = recorder.messages_to("alice@example.org")
    body = message.get_body(("plain",))
    assert body is not None
    content = " ".join(body.get_content().split())
    assert ids(message) == [results[4]["id"]]
    assert results[4]["title"] in content and f"https://huggingface.co/papers/{results[4]['id']}" in content


def test_the_digest_shows_the_sites_summary_under_the_title_marked_and_escaped() -> None:
    info, items = reference_digest()
    hostile = "A <script>alert(1)</script> & \"quoted\" summary."
    first = replace(items[0], paper=replace(items[0].paper, ai_summary=hostile))
    bare = replace(items[1], paper=replace(items[1].paper, ai_summary=None))
    rendered = Templates.load(None).render(info, (first, bare))
    assert ">Hugging Face's AI summary: A &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quoted&#34; summary.</p>" \
        in rendered.html
    assert "<script>" not in rendered.html
    assert rendered.html.count("AI summary:") == 1  # the paper without one shows no line
    text_lines = rendered.text.splitlines()
    at = text_lines.index(f"  {first.paper.url}")
    assert text_lines[at + 1] == f"  Hugging Face's AI summary: {hostile}"


async def test_json_author_names_always_beat_the_usernames_of_2024_cards(site: Site) -> None:
    day, items = CAPTURES[REAL_PAGE], FakeHF.sample_items(f"real/{REAL_PAGE}")
    site.hf.days[day] = items
    site.hf.page_style[day] = "2024"
    handles = usernames(items)

    async def authors() -> set[str]:
        return {a for p in await site.store.papers(date=day) for a in p.authors}

    site.hf.page_mode[day] = "cards"
    assert (await site.fetch(day)).source is PageSource.CARDS
    assert handles & await authors(), "the cards alone name claimed authors by username"
    site.hf.page_mode[day] = "json"
    assert (await site.fetch(day)).source is PageSource.JSON
    assert not handles & await authors()
    site.hf.page_mode[day] = "cards"  # a thinner page later changes nothing
    assert (await site.fetch(day)).source is PageSource.CARDS
    papers = {p.id: p for p in await site.store.papers(date=day)}
    assert {i: p.authors for i, p in papers.items()} == {i["paper"]["id"]: expected(i)["authors"] for i in items}
