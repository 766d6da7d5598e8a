"""The fetcher against the fake site: manners, retries, waits, validators and redirects."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging

import pytest

from conftest import ConfigFactory
from fakehf import FakeHF, Fault
from paperwatch import __version__
from paperwatch.errors import FetchError
from paperwatch.fetch import Fetcher, day_url, server_wait

DAY = dt.date(2025, 3, 5)


@pytest.fixture
def day(fake_hf: FakeHF) -> dt.date:
    fake_hf.days[DAY] = [FakeHF.make_item(DAY, n) for n in range(5)]
    return DAY


def starts(server: FakeHF, path: str) -> list[float]:
    return [r.started for r in server.requests if r.path == path]


async def test_user_agent_names_paperwatch_its_version_and_a_url(fake_hf: FakeHF, make_config: ConfigFactory,
                                                                 day: dt.date) -> None:
    async with Fetcher(make_config().source) as fetcher:
        response = await fetcher.get(day_url(fake_hf.base_url, day))
    assert response.status == 200 and b"DailyPapers" in response.body
    agent = fake_hf.requests[0].headers["User-Agent"]
    assert agent.startswith(f"paperwatch/{__version__} (+http")


@pytest.mark.parametrize("headers", [{"Retry-After": "1"}, {"RateLimit": '"api";r=0;t=1'}])
async def test_a_429_wait_is_honoured_for_the_whole_host(fake_hf: FakeHF, make_config: ConfigFactory,
                                                         day: dt.date, headers: dict[str, str]) -> None:
    fake_hf.days[DAY + dt.timedelta(days=1)] = [FakeHF.make_item(DAY + dt.timedelta(days=1), 0)]
    first, second = day_url(fake_hf.base_url, DAY), day_url(fake_hf.base_url, DAY + dt.timedelta(days=1))
    fake_hf.fail(f"/papers/date/{DAY}", Fault.status(429, headers=headers))
    async with Fetcher(make_config(requests_per_minute=600).source) as fetcher:
        results = await asyncio.gather(fetcher.get(first), _after(0.05, fetcher.get(second)))
    assert [r.status for r in results] == [200, 200]
    refused_at = starts(fake_hf, f"/papers/date/{DAY}")[0]
    retried_at = starts(fake_hf, f"/papers/date/{DAY}")[1]
    other_at = starts(fake_hf, f"/papers/date/{DAY + dt.timedelta(days=1)}")[0]
    assert retried_at - refused_at >= 0.95
    assert other_at - refused_at >= 0.95, "the pause must hold every request to the host"


async def _after(seconds: float, coro):  # type: ignore[no-untyped-def]
    await asyncio.sleep(seconds)
    return await coro


async def test_5xx_and_resets_and_hangs_are_retried(fake_hf: FakeHF, make_config: ConfigFactory,
                                                    day: dt.date) -> None:
    fake_hf.fail(f"/papers/date/{DAY}", Fault.status(502), Fault.reset(), Fault.hang(3))
    async with Fetcher(make_config(timeout=0.5, retries=3).source) as fetcher:
        response = await fetcher.get(day_url(fake_hf.base_url, DAY))
    assert response.status == 200 and len(response.body) > 1000
    assert len(starts(fake_hf, f"/papers/date/{DAY}")) == 4


async def test_persistent_5xx_gives_up_with_the_url_and_what_happened(fake_hf: FakeHF, make_config: ConfigFactory,
                                                                      day: dt.date) -> None:
    fake_hf.fail("/papers/date/", *[Fault.status(503)] * 10)
    url = day_url(fake_hf.base_url, DAY)
    async with Fetcher(make_config(retries=2).source) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.get(url)
    assert str(caught.value) == f"{url}: HTTP 503 (gave up after 3 tries)"
    assert len(starts(fake_hf, f"/papers/date/{DAY}")) == 3


async def test_backoff_grows_between_tries(fake_hf: FakeHF, make_config: ConfigFactory, day: dt.date) -> None:
    fake_hf.fail(f"/papers/date/{DAY}", *[Fault.status(500)] * 3)
    async with Fetcher(make_config(backoff=0.2, retries=3).source) as fetcher:
        await fetcher.get(day_url(fake_hf.base_url, DAY))
    times = starts(fake_hf, f"/papers/date/{DAY}")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # equal jitter: each wait is at least half of base * 2^n (a busy machine only adds to a wait)
    assert 0.1 <= gaps[0] and 0.2 <= gaps[1] and 0.4 <= gaps[2]


async def test_a_wait_longer_than_max_wait_fails_at_once(fake_hf: FakeHF, make_config: ConfigFactory,
                                                         day: dt.date) -> None:
    fake_hf.fail(f"/papers/date/{DAY}", Fault.status(429, headers={"Retry-After": "3600"}))
    async with Fetcher(make_config(max_wait=5).source) as fetcher:
        with pytest.raises(FetchError, match="asks us to wait 3600 s, longer than max_wait"):
            await fetcher.get(day_url(fake_hf.base_url, DAY))
    assert len(starts(fake_hf, f"/papers/date/{DAY}")) == 1, "no second try after a wait past max_wait"


async def test_never_more_requests_in_flight_than_configured(fake_hf: FakeHF, make_config: ConfigFactory,
                                                             day: dt.date) -> None:
    fake_hf.fail("/papers/date/", *[Fault.hang(0.2)] * 8)
    async with Fetcher(make_config(max_concurrency=3, timeout=5).source) as fetcher:
        await asyncio.gather(*(fetcher.get(day_url(fake_hf.base_url, DAY)) for _ in range(8)))
    assert fake_hf.max_in_flight == 3


async def test_requests_per_minute_spaces_request_starts(fake_hf: FakeHF, make_config: ConfigFactory,
                                                         day: dt.date) -> None:
    async with Fetcher(make_config(requests_per_minute=300, max_concurrency=4).source) as fetcher:
        await asyncio.gather(*(fetcher.get(day_url(fake_hf.base_url, DAY)) for _ in range(5)))
    times = sorted(starts(fake_hf, f"/papers/date/{DAY}"))
    # 60 / 300 = 0.2 s apart. Arrival times at the server carry the machine's scheduling jitter
    # (one late arrival shortens the next gap), so: no burst, and the whole run spaced out.
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.1
    assert times[-1] - times[0] >= 0.7


async def test_validators_are_sent_and_a_304_has_no_body(fake_hf: FakeHF, make_config: ConfigFactory,
                                                         day: dt.date) -> None:
    url = day_url(fake_hf.base_url, DAY)
    async with Fetcher(make_config().source) as fetcher:
        first = await fetcher.get(url)
        second = await fetcher.get(url, validators=first.validators)
    assert first.validators.etag and first.validators.last_modified
    assert second.not_modified and second.body == b""
    assert fake_hf.requests[1].headers["If-None-Match"] == first.validators.etag
    assert fake_hf.requests[1].headers["If-Modified-Since"] == first.validators.last_modified


async def test_redirects_are_followed_within_the_site(fake_hf: FakeHF, make_config: ConfigFactory,
                                                      day: dt.date) -> None:
    fake_hf.fail("/papers/date/2025-03-08", Fault.redirect(f"/papers/date/{DAY}"))
    async with Fetcher(make_config().source) as fetcher:
        response = await fetcher.get(day_url(fake_hf.base_url, dt.date(2025, 3, 8)))
    assert response.final_url == day_url(fake_hf.base_url, DAY)


async def test_redirects_to_another_host_are_refused_unvisited(fake_hf: FakeHF, make_config: ConfigFactory,
                                                              day: dt.date) -> None:
    async with FakeHF() as elsewhere:
        for target in (f"{elsewhere.base_url}/papers/date/{DAY}", "file:///etc/passwd"):
            fake_hf.fail(f"/papers/date/{DAY}", Fault.redirect(target))
            async with Fetcher(make_config().source) as fetcher:
                with pytest.raises(FetchError, match="refused redirect"):
                    await fetcher.get(day_url(fake_hf.base_url, DAY))
        assert elsewhere.requests == []


async def test_a_body_over_the_cap_is_refused(fake_hf: FakeHF, make_config: ConfigFactory, day: dt.date) -> None:
    async with Fetcher(make_config(max_page_bytes=10_000).source) as fetcher:
        with pytest.raises(FetchError, match="over max_page_bytes"):
            await fetcher.get(day_url(fake_hf.base_url, DAY))


async def test_a_client_error_is_not_retried(fake_hf: FakeHF, make_config: ConfigFactory) -> None:
    url = f"{fake_hf.base_url}/api/daily_papers?date=2999-01-01"
    async with Fetcher(make_config().source) as fetcher:
        with pytest.raises(FetchError, match="HTTP 400"):
            await fetcher.get(url)
    assert len(fake_hf.requests) == 1


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"RateLimit": '"api";r=0;t=42'}, 42.0),
        ({"Retry-After": "soon", "RateLimit": '"api";r=0;t=3'}, 3.0),
        ({}, None),
    ],
)
def test_server_wait_reads_either_header(headers: dict[str, str], wait: float | None) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    assert server_wait(CIMultiDictProxy(CIMultiDict(headers))) == wait


@pytest.mark.parametrize("userinfo", ["user:secret@", "user@", ":secret@"])
async def test_a_redirect_that_would_send_credentials_is_refused_even_to_the_site(
        fake_hf: FakeHF, make_config: ConfigFactory, day: dt.date, userinfo: str) -> None:
    site = fake_hf.base_url.removeprefix("http://")
    fake_hf.fail("/papers/date/2025-03-08", Fault.redirect(f"http://{userinfo}{site}/papers/date/{DAY}"))
    async with Fetcher(make_config().source) as fetcher:
        with pytest.raises(FetchError, match="refused redirect to .*: it carries credentials"):
            await fetcher.get(day_url(fake_hf.base_url, dt.date(2025, 3, 8)))
    assert [r.path for r in fake_hf.requests] == ["/papers/date/2025-03-08"]
    assert "Authorization" not in fake_hf.requests[0].headers


async def test_a_refused_location_is_shown_escaped_not_as_sent(fake_hf: FakeHF, make_config: ConfigFactory,
                                                               day: dt.date) -> None:
    """A bidi override in a Location would reorder the log line that quotes it."""
    fake_hf.fail(f"/papers/date/{DAY}", Fault.redirect("http://evil.example/\u202etxt.exe"))
    async with Fetcher(make_config().source) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.get(day_url(fake_hf.base_url, DAY))
    assert "refused redirect to http://evil.example/\\u202etxt.exe: outside" in str(caught.value)
    assert str(caught.value).isprintable()


@pytest.mark.parametrize(("etag", "kept"), [(b'W/"abc-1"', 'W/"abc-1"'), (b'"abc"', '"abc"'),
                                            (b'W/"\xff\xfe"', None), (b'"caf\xc3\xa9"', None), (b"abc", None)])
async def test_validators_we_could_not_send_back_are_dropped(fake_hf: FakeHF, make_config: ConfigFactory,
                                                             day: dt.date, etag: bytes, kept: str | None,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    fake_hf.raw_headers[f"/papers/date/{DAY}"] = [(b"ETag", etag), (b"Last-Modified", b"\xe9t\xe9 2025")]
    url = day_url(fake_hf.base_url, DAY)
    with caplog.at_level(logging.DEBUG, logger="paperwatch.fetch"):
        async with Fetcher(make_config().source) as fetcher:
            first = await fetcher.get(url)
            second = await fetcher.get(url, validators=first.validators)
    assert first.status == second.status == 200 and b"DailyPapers" in first.body
    assert first.validators.etag == kept and first.validators.last_modified is None
    assert fake_hf.requests[1].headers.get("If-None-Match") == kept
    assert f"{url}: dropping a Last-Modified header we can't use" in caplog.text


@pytest.mark.parametrize(("link", "followed"), [
    ("<{base}/api/daily_papers?date=2025-03-05&limit=100&p=1>; rel=\"next\"", True),
    ("</api/daily_papers?date=2025-03-05&limit=100&p=1>; rel=next", True),
    ("<http://elsewhere.example/api/daily_papers?p=1>; rel=\"next\"", False),
    ("<{base}/api/daily_papers?p=1>; rel=\"prev\"", False),
])
async def test_a_next_link_is_kept_only_within_the_site(fake_hf: FakeHF, make_config: ConfigFactory,
                                                       day: dt.date, link: str, followed: bool) -> None:
    path = f"/api/daily_papers?date={DAY}&limit=100&p=0"
    fake_hf.fail(path, Fault.status(200, {"Link": link.format(base=fake_hf.base_url),
                                          "Content-Type": "application/json"}, b"[]"))
    async with Fetcher(make_config().source) as fetcher:
        response = await fetcher.get(fake_hf.base_url + path)
    want = f"{fake_hf.base_url}/api/daily_papers?date={DAY}&limit=100&p=1" if followed else None
    assert response.next_url == want
