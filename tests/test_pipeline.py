"""fetch → parse → store for real, against the fake site, into a real SQLite file."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from conftest import ConfigFactory
from fakehf import FakeHF, Fault
from paperwatch.config import Config
from paperwatch.errors import StoreError
from paperwatch.fetch import Fetcher
from paperwatch.models import DayFetch, PageSource, Validators
from paperwatch.pipeline import DayReport, fetch_days, is_settled, recent_days
from paperwatch.store import Store

WED, THU, FRI, SAT = (dt.date(2025, 3, 5) + dt.timedelta(days=n) for n in range(4))


class Harness:
    def __init__(self, config: Config, store: Store, fetcher: Fetcher) -> None:
        self.config, self.store, self.fetcher = config, store, fetcher

    async def fetch(self, *days: dt.date) -> dict[dt.date, DayReport]:
        reports = await fetch_days(self.fetcher, self.store, self.config.source.base_url, days)
        return {r.day: r for r in reports}

    async def ids(self, day: dt.date | None = None) -> set[str]:
        return {p.id for p in await self.store.papers(date=day)}


@pytest.fixture
async def run(make_config: ConfigFactory, fake_hf: FakeHF) -> AsyncIterator[Harness]:
    for day in (WED, THU, FRI):
        fake_hf.days[day] = [FakeHF.make_item(day, n) for n in range(6)]
    config = make_config()
    async with await Store.open(config.database) as store, Fetcher(config.source) as fetcher:
        yield Harness(config, store, fetcher)


def served_ids(fake_hf: FakeHF, day: dt.date) -> set[str]:
    return {item["paper"]["id"] for item in fake_hf.items(day)}


async def test_days_are_stored_with_every_paper(run: Harness, fake_hf: FakeHF) -> None:
    reports = await run.fetch(WED, THU)
    assert [reports[d].line() for d in (WED, THU)] == [f"{WED}: 6 papers, 6 new", f"{THU}: 6 papers, 6 new"]
    assert await run.ids(WED) == served_ids(fake_hf, WED)


@pytest.mark.parametrize(("most", "groups"), [(32, [3]), (2, [2, 1])])
async def test_days_read_together_are_stored_together_and_each_reported_once_committed(
        run: Harness, monkeypatch: pytest.MonkeyPatch, most: int, groups: list[int]) -> None:
    import paperwatch.pipeline

    monkeypatch.setattr(paperwatch.pipeline, "BATCH_WAIT", 60.0)  # a group waits for every day still read
    monkeypatch.setattr(paperwatch.pipeline, "BATCH_DAYS", most)
    written: list[int] = []
    record_days = run.store.record_days

    async def counted(fetches: Sequence[DayFetch]) -> list[int | StoreError]:
        written.append(len(fetches))
        return await record_days(fetches)

    monkeypatch.setattr(run.store, "record_days", counted)
    committed: dict[dt.date, int] = {}

    def on_day(report: DayReport) -> None:
        db = sqlite3.connect(run.store.path)  # another connection: it sees only what is committed
        committed[report.day] = db.execute("SELECT count(*) FROM features WHERE day = ?",
                                           (report.day.isoformat(),)).fetchone()[0]
        db.close()

    await fetch_days(run.fetcher, run.store, run.config.source.base_url, [WED, THU, FRI], on_day=on_day)
    assert committed == {WED: 6, THU: 6, FRI: 6}
    assert written == groups


async def test_a_day_the_database_refuses_keeps_none_of_the_days_read_with_it_out(
        run: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import paperwatch.pipeline
    import paperwatch.store

    monkeypatch.setattr(paperwatch.pipeline, "BATCH_WAIT", 60.0)  # the three days in one group
    record_day = paperwatch.store._record_day

    def refusing(conn: sqlite3.Connection, fetch: DayFetch, now: str) -> int:
        new = record_day(conn, fetch, now)
        if fetch.day == THU:
            raise sqlite3.IntegrityError("refused")
        return new

    monkeypatch.setattr(paperwatch.store, "_record_day", refusing)
    with pytest.raises(StoreError, match=f"could not store {THU}: refused"):
        await run.fetch(WED, THU, FRI)
    assert {p.daily_date for p in await run.store.papers()} == {WED, FRI}
    assert set(await run.store.day_states([WED, THU, FRI])) == {WED, FRI}


async def test_a_failing_day_is_reported_and_the_others_still_land(run: Harness, fake_hf: FakeHF) -> None:
    fake_hf.page_mode[THU] = "changed"
    fake_hf.fail(f"/api/daily_papers?date={THU}", *[Fault.status(503)] * 10)
    reports = await run.fetch(WED, THU, FRI)
    assert reports[THU].failed
    url = f"{fake_hf.base_url}/papers/date/{THU}"
    assert reports[THU].detail is not None and reports[THU].detail.startswith(f"{url}: page has changed shape")
    assert "the API fallback failed too" in reports[THU].detail and "\n" not in reports[THU].detail
    assert await run.ids() == served_ids(fake_hf, WED) | served_ids(fake_hf, FRI)


async def test_a_page_that_takes_too_long_to_read_fails_its_day_and_the_loop_goes_on(
        run: Harness, fake_hf: FakeHF, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import time

    import paperwatch.parse
    import paperwatch.pipeline

    monkeypatch.setattr(paperwatch.pipeline, "PARSE_TIMEOUT", 0.2)
    monkeypatch.setattr(paperwatch.parse, "MAX_NESTING", 10**9)  # past the nesting check: a slow parse
    nested = ("<html><body>" + "<div>" * 20000 + "x" + "</div>" * 20000 + "</body></html>").encode()
    fake_hf.fail(f"/papers/date/{THU}", Fault.status(200, {"Content-Type": "text/html"}, nested))
    fake_hf.fail(f"/api/daily_papers?date={THU}", *[Fault.status(503)] * 10)
    ticks = 0

    async def clock() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking, started = asyncio.create_task(clock()), time.monotonic()
    reports = await run.fetch(WED, THU)
    ticking.cancel()
    assert reports[THU].failed and "reading it took over 0.2 s" in (reports[THU].detail or "")
    assert ticks >= (time.monotonic() - started) / 0.01 / 4, "the event loop stalled while parsing"
    assert await run.ids() == served_ids(fake_hf, WED)


@pytest.mark.parametrize("mode", ["changed", "broken_json", "truncated"])
async def test_an_unreadable_page_falls_back_to_the_api(run: Harness, fake_hf: FakeHF, mode: str) -> None:
    fake_hf.page_mode[WED] = mode
    reports = await run.fetch(WED)
    assert reports[WED].source is PageSource.API
    assert await run.ids(WED) == served_ids(fake_hf, WED)
    assert any(r.path == "/api/daily_papers" for r in fake_hf.requests)


async def test_a_later_full_page_completes_what_the_cards_gave(run: Harness, fake_hf: FakeHF) -> None:
    fake_hf.page_mode[WED] = "cards"
    assert (await run.fetch(WED))[WED].source is PageSource.CARDS
    assert all(p.summary is None for p in await run.store.papers())
    fake_hf.page_mode[WED] = "json"
    assert (await run.fetch(WED))[WED].new == 0
    by_id = {p.id: p for p in await run.store.papers()}
    for item in fake_hf.items(WED):
        assert by_id[item["paper"]["id"]].authors == tuple(a["name"] for a in item["paper"]["authors"])
        assert by_id[item["paper"]["id"]].summary


@pytest.mark.parametrize("policy", ["latest", "redirect", "redirect_date"])
async def test_a_weekend_is_a_day_without_papers_whatever_the_site_shows(run: Harness, fake_hf: FakeHF,
                                                                         policy: str) -> None:
    fake_hf.latest_policy = policy
    report = (await run.fetch(SAT))[SAT]
    assert report.outcome == "empty" and report.papers == 0
    assert await run.ids() == set()


async def test_a_growing_day_adds_the_late_papers(run: Harness, fake_hf: FakeHF) -> None:
    fake_hf.days[WED] = fake_hf.days[WED][:2]
    assert (await run.fetch(WED))[WED].new == 2
    fake_hf.days[WED] = [FakeHF.make_item(WED, n) for n in range(9)]
    report = (await run.fetch(WED))[WED]
    assert (report.papers, report.new) == (9, 7)


async def test_an_unchanged_page_costs_no_parse_and_no_paper_write(run: Harness, fake_hf: FakeHF) -> None:
    await run.fetch(WED)
    before = _rows(run.store.path, "SELECT id, last_seen FROM papers")
    assert (await run.fetch(WED))[WED].outcome == "not_modified"
    assert fake_hf.requests[-1].status == 304
    assert _rows(run.store.path, "SELECT id, last_seen FROM papers") == before


async def test_validators_of_a_page_that_failed_are_not_kept(run: Harness, fake_hf: FakeHF) -> None:
    fake_hf.page_mode[WED] = "changed"
    await run.fetch(WED)
    fake_hf.page_mode[WED] = "json"
    await run.fetch(WED)
    page_requests = [r for r in fake_hf.requests if r.path == f"/papers/date/{WED}"]
    assert "If-None-Match" not in page_requests[-1].headers


async def test_days_after_today_are_skipped_without_a_request(run: Harness, fake_hf: FakeHF) -> None:
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert (await run.fetch(tomorrow))[tomorrow].outcome == "skipped"
    assert fake_hf.requests == []


def test_recent_days_count_back_from_today() -> None:
    assert recent_days(3, today=FRI) == [FRI, THU, WED]


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute(sql).fetchall())
    finally:
        db.close()


# -- the API as a second source ---------------------------------------------------------------

@pytest.mark.parametrize("fault", [Fault.status(503), Fault.status(500), Fault.reset()], ids=["503", "500", "reset"])
async def test_a_page_that_fails_after_its_retries_is_read_from_the_api(run: Harness, fake_hf: FakeHF,
                                                                         fault: Fault) -> None:
    fake_hf.fail(f"/papers/date/{WED}", *[fault] * (run.config.source.retries + 1))
    reports = await run.fetch(WED)
    assert reports[WED].line() == f"{WED}: 6 papers, 6 new (read from the api)"
    assert await run.ids(WED) == served_ids(fake_hf, WED)
    assert len([r for r in fake_hf.requests if r.path == f"/papers/date/{WED}"]) == run.config.source.retries + 1


async def test_a_429_longer_than_max_wait_is_read_from_the_api(run: Harness, fake_hf: FakeHF) -> None:
    fake_hf.fail(f"/papers/date/{WED}", Fault.status(429, {"Retry-After": "3600"}))
    reports = await run.fetch(WED)
    assert reports[WED].source is PageSource.API and await run.ids(WED) == served_ids(fake_hf, WED)


@pytest.mark.parametrize("status", [200, 202, 403])
async def test_a_challenge_page_is_named_and_the_day_read_from_the_api(run: Harness, fake_hf: FakeHF, status: int,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    fake_hf.page_mode[WED] = "challenge"
    fake_hf.challenge_status = status
    with caplog.at_level(logging.WARNING, logger="paperwatch.pipeline"):
        reports = await run.fetch(WED)
    assert reports[WED].source is PageSource.API and await run.ids(WED) == served_ids(fake_hf, WED)
    url = f"{fake_hf.base_url}/papers/date/{WED}"
    assert [r.getMessage() for r in caplog.records if "challenge" in r.getMessage()] == [
        f"{url}: {'HTTP 403: ' if status == 403 else ''}the site answered with a challenge page; "
        "trying the API instead"]


async def test_a_challenge_page_with_the_api_down_fails_naming_both(run: Harness, fake_hf: FakeHF) -> None:
    fake_hf.page_mode[WED] = "challenge"
    fake_hf.fail(f"/api/daily_papers?date={WED}", *[Fault.status(503)] * 10)
    report = (await run.fetch(WED))[WED]
    assert report.failed and report.detail is not None
    assert "the site answered with a challenge page; the API fallback failed too" in report.detail
    assert (await run.store.summary()).days_failed == 1


async def test_an_unreadable_page_and_an_empty_api_is_a_failed_day_fetched_again(run: Harness,
                                                                                  fake_hf: FakeHF) -> None:
    fake_hf.fail(f"/papers/date/{SAT}", *[Fault.status(503)] * (run.config.source.retries + 1))
    report = (await run.fetch(SAT))[SAT]  # the fake has no papers for SAT: the API lists none
    assert report.failed and "the API lists no papers for 2025-03-08 either" in (report.detail or "")
    assert [s.day for s in await run.store.failed_days()] == [SAT]
    assert (await run.store.summary()).days_failed == 1
    assert not is_settled((await run.store.day_states([SAT])).get(SAT))

    fake_hf.days[SAT] = [FakeHF.make_item(SAT, n) for n in range(3)]
    assert (await run.fetch(SAT))[SAT].line() == f"{SAT}: 3 papers, 3 new"
    assert await run.store.failed_days() == []


@pytest.mark.parametrize("link", [True, False], ids=["link", "p"])
async def test_a_day_of_120_papers_is_read_through_the_apis_pages(run: Harness, fake_hf: FakeHF, link: bool) -> None:
    fake_hf.days[WED] = [FakeHF.make_item(WED, n) for n in range(120)]
    fake_hf.page_mode[WED] = "changed"
    fake_hf.api_link = link
    report = (await run.fetch(WED))[WED]
    assert (report.papers, report.source) == (120, PageSource.API)
    assert await run.ids(WED) == served_ids(fake_hf, WED)
    pages = [r.query for r in fake_hf.requests if r.path == "/api/daily_papers"]
    assert [(q["limit"], q["p"]) for q in pages] == [("100", "0"), ("100", "1")]


async def test_a_day_of_exactly_100_papers_asks_for_the_next_page_once(run: Harness, fake_hf: FakeHF) -> None:
    fake_hf.days[WED] = [FakeHF.make_item(WED, n) for n in range(100)]
    fake_hf.page_mode[WED] = "changed"
    fake_hf.api_link = False
    assert (await run.fetch(WED))[WED].papers == 100
    assert [r.query["p"] for r in fake_hf.requests if r.path == "/api/daily_papers"] == ["0", "1"]


@pytest.mark.parametrize("etag", [b'W/"\xff\xfeabc"', b'"caf\xc3\xa9"', b"not quoted", b'"a"\x01'])
async def test_an_etag_we_cannot_send_back_is_dropped_and_the_page_stored(run: Harness, fake_hf: FakeHF,
                                                                          etag: bytes,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    fake_hf.raw_headers[f"/papers/date/{WED}"] = [(b"ETag", etag), (b"Last-Modified", b"Wed, 05 Mar 2025 \xe9")]
    with caplog.at_level(logging.DEBUG, logger="paperwatch.fetch"):
        first = (await run.fetch(WED))[WED]
        second = (await run.fetch(WED))[WED]
    assert (first.outcome, first.source, first.papers) == ("ok", PageSource.JSON, 6)
    assert second.outcome == "ok", "nothing to send back: the page is fetched whole again"
    assert await run.ids(WED) == served_ids(fake_hf, WED)
    url = f"{fake_hf.base_url}/papers/date/{WED}"
    assert await run.store.validators_of([url]) == {url: Validators(None, None)}
    sent = [r.headers for r in fake_hf.requests if r.path == f"/papers/date/{WED}"]
    assert not [h for h in sent if "If-None-Match" in h or "If-Modified-Since" in h]
    assert "dropping a ETag header we can't use" in caplog.text


async def test_a_stuck_parse_never_holds_up_later_pages_and_threads_serve_page_after_page(
        run: Harness, fake_hf: FakeHF, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import paperwatch.pipeline

    release = threading.Event()
    parsed: list[tuple[dt.date, threading.Thread]] = []
    real = paperwatch.pipeline.parse_daily_page

    def parse(body: bytes, *, day: dt.date, url: str) -> object:
        parsed.append((day, threading.current_thread()))
        if day == THU:
            release.wait(60)  # stuck until the test ends
        return real(body, day=day, url=url)

    monkeypatch.setattr(paperwatch.pipeline, "PARSE_TIMEOUT", 0.2)
    monkeypatch.setattr(paperwatch.pipeline, "parse_daily_page", parse)
    fake_hf.fail(f"/api/daily_papers?date={THU}", *[Fault.status(503)] * 10)
    keep = paperwatch.pipeline._ParseThread.KEEP
    try:
        reports = await run.fetch(WED, THU, FRI)
        assert reports[THU].failed and "reading it took over 0.2 s" in (reports[THU].detail or "")
        assert not reports[WED].failed and not reports[FRI].failed
        stuck = next(thread for day, thread in parsed if day == THU)
        before = len(parsed)
        more = [FRI + dt.timedelta(days=n) for n in range(1, 4 * keep + 5)]
        for day in more:
            fake_hf.days[day] = [FakeHF.make_item(day, n) for n in range(3)]
        for pair in zip(more[::2], more[1::2], strict=True):
            assert all(r.outcome == "ok" for r in (await run.fetch(*pair)).values())
        assert len(parsed) - before == len(more)
        later = {id(thread) for _day, thread in parsed[before:]}
        assert id(stuck) not in later and stuck.is_alive()
        assert len(later) <= keep, "a thread was started for each page"
        assert THU not in {p.daily_date for p in await run.store.papers()}
    finally:
        release.set()
