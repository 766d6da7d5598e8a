"""Smoke tests of the fake Hugging Face server itself, so fetcher tests can trust it."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fakehf import MISSING, SAMPLES, FakeHF, Fault, render_page, render_search_page

WED, THU, SAT = dt.date(2025, 3, 5), dt.date(2025, 3, 6), dt.date(2025, 3, 8)
_PROPS = re.compile(rb'data-target="DailyPapers" data-props="([^"]*)"')


@pytest.fixture
async def hf() -> AsyncIterator[FakeHF]:
    async with FakeHF() as server:
        server.days[WED] = [FakeHF.make_item(WED, n) for n in range(5)]
        server.days[THU] = [FakeHF.make_item(THU, n) for n in range(7)]
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def props(body: bytes) -> dict[str, Any]:
    found = _PROPS.search(body)
    assert found is not None, "no hydration div"
    data: dict[str, Any] = json.loads(html.unescape(found.group(1).decode()))
    return data


async def get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    async with http.get(url, allow_redirects=False, **kwargs) as response:
        return response.status, response.headers, await response.read()


async def test_a_page_round_trips_its_items(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    status, headers, body = await get(http, f"{hf.base_url}/papers/date/{WED}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    data = props(body)
    assert data["dateString"] == str(WED) and data["periodType"] == "day"
    assert data["dailyPapers"] == [{**item, "upvoted": False} for item in hf.items(WED)]
    assert body.count(b"<article") == 5 and len(body) > 10_000
    upvotes = [item["paper"]["upvotes"] for item in hf.items(WED)]
    assert upvotes == sorted(upvotes, reverse=True)
    assert hf.requests[0].path == f"/papers/date/{WED}" and hf.requests[0].status == 200


@pytest.mark.parametrize(("sample", "source", "day", "mode"), [
    ("papers-date-2025-03-05.html", "papers-date-2025-03-05.html", "2025-03-05", "json"),
    ("papers-date-2025-03-08-weekend.html", "papers-date-2025-03-08-weekend.html", "2025-03-06", "json"),
    # the cards-only sample shows the same 2025-03-06 papers as the weekend one
    ("papers-date-2025-03-06-cards-only.html", "papers-date-2025-03-08-weekend.html", "2025-03-06", "cards"),
])
def test_rendering_reproduces_the_samples_byte_for_byte(sample: str, source: str, day: str, mode: str) -> None:
    items = FakeHF.sample_items(source)
    prev = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    assert render_page(day, items, prev_date=prev, mode=mode) == (SAMPLES / sample).read_bytes()


@pytest.mark.parametrize(("policy", "status", "location", "shown"), [
    ("latest", 200, None, str(THU)),
    ("redirect", 302, "/papers", None),
    ("redirect_date", 302, f"/papers/date/{THU}", None),
    ("empty", 200, None, str(SAT)),
])
async def test_a_date_without_papers_follows_latest_policy(hf: FakeHF, http: aiohttp.ClientSession, policy: str,
                                                           status: int, location: str | None,
                                                           shown: str | None) -> None:
    hf.latest_policy = policy
    got, headers, body = await get(http, f"{hf.base_url}/papers/date/{SAT}")
    assert got == status and headers.get("Location") == location
    if shown is not None:
        data = props(body)
        assert data["dateString"] == shown
        assert len(data["dailyPapers"]) == (7 if policy == "latest" else 0)
    got, headers, _ = await get(http, f"{hf.base_url}/papers")
    assert (got, headers["Location"]) == (302, f"/papers/date/{THU}")


async def test_page_modes(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    url = f"{hf.base_url}/papers/date/{WED}"
    full = (await get(http, url))[2]
    hf.page_mode[WED] = "cards"
    body = (await get(http, url))[2]
    assert b"data-target" not in body and body.count(b"<article") == 5
    hf.page_mode[WED] = "changed"
    body = (await get(http, url))[2]
    assert b"data-target" not in body and b"<article" not in body and body.endswith(b"</html>")
    hf.page_mode[WED] = "broken_json"
    with pytest.raises(ValueError):
        props((await get(http, url))[2])
    hf.page_mode[WED] = "truncated"
    _, headers, body = await get(http, url)
    assert body == full[: len(full) // 2] and int(headers["Content-Length"]) == len(body)


async def test_each_fault_is_seen_by_a_client(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    url = f"{hf.base_url}/papers/date/{WED}"
    hf.fail(f"/papers/date/{WED}", Fault.status(429, headers={"RateLimit": '"api";r=0;t=1'}, body=b"slow down"),
            Fault.hang(1), Fault.reset(), Fault.redirect("https://evil.example/papers"), Fault.truncate())
    status, headers, body = await get(http, url)
    assert (status, headers["RateLimit"], body) == (429, '"api";r=0;t=1', b"slow down")
    with pytest.raises(asyncio.TimeoutError):
        await get(http, url, timeout=aiohttp.ClientTimeout(total=0.1))
    async with http.get(url) as response:
        assert response.status == 200 and response.content_length is not None
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    status, headers, _ = await get(http, url)
    assert (status, headers["Location"]) == (302, "https://evil.example/papers")
    status, headers, body = await get(http, url)
    assert status == 200 and int(headers["Content-Length"]) == len(body) and not body.endswith(b"</html>")
    assert "ETag" not in headers, "a damaged body must not carry validators"
    status, _, body = await get(http, url)  # the queue is spent: normal service again
    assert status == 200 and props(body)["dateString"] == str(WED)
    await asyncio.sleep(0.01)  # let the cancelled hang finish its bookkeeping
    assert [r.fault for r in hf.requests] == ["status", "hang", "reset", "redirect", "truncate", None]
    assert hf.requests[1].status is None and all(r.ended is not None for r in hf.requests)


async def test_fail_matches_the_query_and_prefers_the_longest_prefix(hf: FakeHF,
                                                                     http: aiohttp.ClientSession) -> None:
    hf.fail("/api/", Fault.status(500))
    hf.fail(f"/api/daily_papers?date={WED}", Fault.status(503))
    assert (await get(http, f"{hf.base_url}/api/daily_papers?date={WED}&limit=100&p=0"))[0] == 503
    assert (await get(http, f"{hf.base_url}/api/daily_papers?date={WED}&limit=100&p=0"))[0] == 500
    assert (await get(http, f"{hf.base_url}/api/daily_papers?date={WED}&limit=100&p=0"))[0] == 200


async def test_validators_and_304(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    url = f"{hf.base_url}/papers/date/{WED}"
    _, headers, _ = await get(http, url)
    etag, modified = headers["ETag"], headers["Last-Modified"]
    status, again, body = await get(http, url, headers={"If-None-Match": etag})
    assert (status, body, again["ETag"]) == (304, b"", etag)
    assert (await get(http, url, headers={"If-Modified-Since": modified}))[0] == 304
    hf.days[WED].append(FakeHF.make_item(WED, 5))  # the day grows within the same second
    status, grown, _ = await get(http, url, headers={"If-None-Match": etag, "If-Modified-Since": modified})
    assert status == 200 and grown["ETag"] != etag
    assert (await get(http, url, headers={"If-Modified-Since": modified}))[0] == 200
    hf.etag = False
    status, headers, _ = await get(http, url, headers={"If-None-Match": grown["ETag"]})
    assert status == 200 and "ETag" not in headers and "Last-Modified" not in headers


async def test_fail_first_counts_per_url(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    hf.fail_first(2, Fault.status(503), Fault.status(429, headers={"Retry-After": "0"}))
    urls = [f"{hf.base_url}/papers/date/{WED}", f"{hf.base_url}/papers/date/{THU}",
            f"{hf.base_url}/api/daily_papers?date={WED}&p=0", f"{hf.base_url}/api/daily_papers?date={WED}&p=1"]
    for url in urls:
        assert [(await get(http, url))[0] for _ in range(3)] == [503, 429, 200]


async def test_api_sorts_pages_and_refuses_bad_dates(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    api = f"{hf.base_url}/api/daily_papers"
    pages, url = [], f"{api}?date={THU}&limit=3"
    while url:  # follow Link: rel="next" like a client would
        status, headers, body = await get(http, url)
        assert status == 200
        pages.append(json.loads(body))
        link = re.fullmatch(r'<([^>]+)>; rel="next"', headers.get("Link", ""))
        url = link.group(1) if link else ""
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [item for page in pages for item in page] == hf.items(THU)
    assert json.loads((await get(http, f"{api}?date={THU}&limit=3&p=3"))[2]) == []
    assert json.loads((await get(http, f"{api}?date={SAT}"))[2]) == []
    assert len(json.loads((await get(http, f"{api}?date={THU}&limit=500"))[2])) == 7
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    for bad in (str(tomorrow), "2026-07", "2025-3-5", "yesterday"):
        status, _, body = await get(http, f"{api}?date={bad}")
        assert status == 400 and "error" in json.loads(body)


async def test_max_in_flight_counts_concurrent_requests(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    hf.fail("/papers/date/", *[Fault.hang(0.2)] * 4)
    await asyncio.gather(*(get(http, f"{hf.base_url}/papers/date/{WED}") for _ in range(4)))
    for _ in range(3):
        await get(http, f"{hf.base_url}/papers/date/{WED}")
    assert hf.max_in_flight == 4
    first = sorted(hf.requests[:4], key=lambda r: r.started)
    assert all(r.ended is not None and r.ended - r.started >= 0.19 for r in first)


def test_items_are_realistic_and_deterministic() -> None:
    items = [FakeHF.make_item(WED, n) for n in range(30)]
    assert items == [FakeHF.make_item(WED, n) for n in range(30)]
    ids = {item["paper"]["id"] for item in items} | {FakeHF.make_item(THU, n)["paper"]["id"] for n in range(30)}
    assert len(ids) == 60 and all(re.fullmatch(r"2503\.0\d{4}", i) for i in ids)
    assert all(1 <= len(item["paper"]["authors"]) <= 12 for item in items)
    assert all("\n" in item["paper"]["summary"] for item in items)
    for key in ("githubRepo", "projectPage", "ai_summary", "organization"):
        assert 0 < sum(key in item["paper"] for item in items) < 30, key
    odd = FakeHF.make_item(WED, 0, upvotes=99, numComments=7, title="T", githubRepo=MISSING, authors=20)
    assert (odd["paper"]["upvotes"], odd["numComments"], odd["title"], odd["paper"]["title"]) == (99, 7, "T", "T")
    assert "githubRepo" not in odd["paper"] and len(odd["paper"]["authors"]) == 20
    assert len(FakeHF.sample_items()) == 26


async def test_search_page_and_api_serve_the_same_results(hf: FakeHF) -> None:
    items = FakeHF.sample_items("api-papers-search-q-deep-networks.json")
    hf.searches["deep networks"] = items
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hf.base_url}/api/papers/search", params={"q": "deep networks"}) as resp:
            assert resp.status == 200 and await resp.json() == items
        async with session.get(f"{hf.base_url}/api/papers/search", params={"q": "unknown"}) as resp:
            assert await resp.json() == []
        async with session.get(f"{hf.base_url}/papers", params={"q": "deep networks"}) as resp:
            page = await resp.read()
    found = re.search(rb'data-target="DailyPapers" data-props="([^"]*)"', page)
    assert found is not None
    props = json.loads(html.unescape(found.group(1).decode()))
    assert props["query"] == {"q": "deep networks"} and props["searchResults"] == items
    # the shape of the sample page: same keys in the same order
    sample = (SAMPLES / "papers-search-q-deep-networks.html").read_text()
    sample_props = json.loads(html.unescape(re.search(r'data-props="([^"]*)"', sample).group(1)))  # type: ignore[union-attr]
    assert list(props) == list(sample_props)
    assert b"searchResults" not in render_search_page("q", items, today=dt.date(2026, 4, 13), mode="no_results")
    assert b"data-props" not in render_search_page("q", items, today=dt.date(2026, 4, 13), mode="changed")


# -- the real site's other shapes ------------------------------------------------------------

async def test_the_2024_style_says_date_and_shows_usernames_on_cards(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    day = dt.date(2024, 8, 1)
    items = FakeHF.sample_items("real/papers-date-2024-08-01.html")
    hf.days[day] = items
    hf.page_style[day] = "2024"
    status, _, body = await get(http, f"{hf.base_url}/papers/date/{day}")
    data = props(body)
    assert status == 200 and data["date"] == "2024-08-01T00:00:00.000Z"
    assert "dateString" not in data and "periodType" not in data
    assert [{k: v for k, v in i.items() if k != "upvoted"} for i in data["dailyPapers"]] == hf.items(day)
    # as the real 2024 cards did ("mannatsingh" for Mannat Singh)
    claimed = [a for i in items for a in i["paper"]["authors"][:5] if isinstance(a.get("user"), dict)]
    assert claimed and all(f'<li title="{a["user"]["user"]}">'.encode() in body for a in claimed)


async def test_a_real_page_is_served_byte_for_byte(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    real = (SAMPLES / "real" / "papers-date-2024-08-01.html").read_bytes()
    hf.raw_pages[dt.date(2024, 8, 1)] = real
    assert (await get(http, f"{hf.base_url}/papers/date/2024-08-01"))[2] == real


@pytest.mark.parametrize("status", [200, 202, 403])
async def test_a_challenge_page_answers_with_its_status_and_no_papers(hf: FakeHF, http: aiohttp.ClientSession,
                                                                      status: int) -> None:
    hf.page_mode[WED] = "challenge"
    hf.challenge_status = status
    got, _, body = await get(http, f"{hf.base_url}/papers/date/{WED}")
    assert got == status and b"gokuProps" in body and b"DailyPapers" not in body and b"<article" not in body
    assert len(json.loads((await get(http, f"{hf.base_url}/api/daily_papers?date={WED}"))[2])) == 5


async def test_the_paper_api_serves_papers_of_the_days_and_set_ones(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    paper = hf.days[WED][0]["paper"]
    status, _, body = await get(http, f"{hf.base_url}/api/papers/{paper['id']}")
    assert status == 200 and json.loads(body) == paper
    hf.papers["2409.07146"] = {"id": "2409.07146", "title": "Gated Slot Attention"}
    assert json.loads((await get(http, f"{hf.base_url}/api/papers/2409.07146"))[2])["title"] == "Gated Slot Attention"
    assert (await get(http, f"{hf.base_url}/api/papers/2409.99999"))[0] == 404


async def test_api_pages_without_link(hf: FakeHF, http: aiohttp.ClientSession) -> None:
    hf.api_link = False
    _, headers, body = await get(http, f"{hf.base_url}/api/daily_papers?date={THU}&limit=3")
    assert len(json.loads(body)) == 3 and "Link" not in headers
    assert len(json.loads((await get(http, f"{hf.base_url}/api/daily_papers?date={THU}&limit=3&p=2"))[2])) == 1


async def test_raw_header_bytes_reach_the_client_as_sent(hf: FakeHF) -> None:
    hf.raw_headers[f"/papers/date/{WED}"] = [(b"ETag", b'W/"\xff\xfe"'), (b"X-Odd", b"caf\xc3\xa9")]
    reader, writer = await asyncio.open_connection("127.0.0.1", int(hf.base_url.rsplit(":", 1)[1]))
    writer.write(f"GET /papers/date/{WED} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await reader.read()  # the fake closes the connection after a raw answer
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'\r\nETag: W/"\xff\xfe"\r\n' in head and b"\r\nX-Odd: caf\xc3\xa9\r\n" in head
    assert head.count(b"ETag") == 1 and props(body)["dateString"] == str(WED)
