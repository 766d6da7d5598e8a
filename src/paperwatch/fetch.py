"""The polite HTTP client: one aiohttp session per process, shared by every fetch.

Manners towards the site: a User-Agent that names us, at most ``max_concurrency`` requests
in flight and ``requests_per_minute`` overall, timeouts, a cap on body size, retries with
exponential backoff and jitter on timeouts, resets and 5xx, a host-wide pause when a 429/503
says how long to wait (``Retry-After`` or ``RateLimit: ...;t=N``), conditional requests, and
redirects followed only within the base URL's origin (same scheme, host and port, and no
credentials in the URL): any other target, ``file:`` and private addresses included, is refused
without being contacted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import random
import re
import time
from types import TracebackType
from urllib.parse import quote, quote_plus

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from paperwatch import PROJECT_URL, __version__
from paperwatch.config import SourceConfig
from paperwatch.errors import FetchError
from paperwatch.models import Response, Validators
from paperwatch.parse import CHALLENGE, is_challenge

log = logging.getLogger(__name__)

USER_AGENT = f"paperwatch/{__version__} (+{PROJECT_URL})"
MAX_REDIRECTS = 5
MAX_BACKOFF = 120.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RATELIMIT_T = re.compile(r"(?:^|;)\s*t=(\d+)", re.ASCII)
# Header values are bytes from strangers; only what we can send back as it came is kept.
_PRINTABLE = re.compile(r"[\x20-\x7e]{1,2000}")
_ETAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e]{0,200}"')
_HTTP_DATE = re.compile(r"[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT")
_LINK_NEXT = re.compile(r'<([^<>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)


def day_url(base_url: str, day: dt.date) -> str:
    return f"{base_url}/papers/date/{day.isoformat()}"


def search_api_url(base_url: str, query: str) -> str:
    return f"{base_url}/api/papers/search?q={quote_plus(query)}"


def search_page_url(base_url: str, query: str) -> str:
    return f"{base_url}/papers?q={quote_plus(query)}"


def paper_api_url(base_url: str, paper_id: str) -> str:
    return f"{base_url}/api/papers/{quote(paper_id, safe='/')}"


def api_url(base_url: str, day: dt.date, page: int = 0) -> str:
    return f"{base_url}/api/daily_papers?date={day.isoformat()}&limit=100&p={page}"


class _Retry(Exception):
    """A failure worth another try; ``wait`` is what the server asked for, if it did."""

    def __init__(self, reason: str, *, status: int | None = None, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.wait = wait


class _Pacer:
    """Spaces request starts evenly to honour requests_per_minute, and holds every request
    while the site has asked us to wait."""

    def __init__(self, per_minute: float) -> None:
        self._spacing = 60.0 / per_minute
        self._next = 0.0
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    async def wait_turn(self) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                start = max(now, self._next, self.paused_until)
                self._next = start + self._spacing
            await asyncio.sleep(start - now)
            # A pause may have arrived while we slept: then queue again behind it.
            if time.monotonic() >= self.paused_until:
                return


class Fetcher:
    """``async with Fetcher(config.source) as fetcher: await fetcher.get(url)``."""

    def __init__(self, source: SourceConfig) -> None:
        self._source = source
        self._base = URL(source.base_url)
        self._slots = asyncio.Semaphore(source.max_concurrency)
        self._pacer = _Pacer(source.requests_per_minute)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        timeout = aiohttp.ClientTimeout(total=self._source.timeout, connect=self._source.connect_timeout)
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            connector=aiohttp.TCPConnector(limit=self._source.max_concurrency),
        )
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, *, validators: Validators | None = None) -> Response:
        """GET ``url`` politely; raise FetchError naming the URL once retries are spent."""
        tries = 0
        while True:
            tries += 1
            try:
                return await self._get_once(url, validators)
            except _Retry as failure:
                if tries > self._source.retries:
                    raise FetchError(url, f"{failure.reason} (gave up after {tries} tries)",
                                     status=failure.status) from None
                delay = self._delay(url, failure, tries)
                log.info("%s: %s; try %d of %d in %.1f s", url, failure.reason, tries + 1,
                         self._source.retries + 1, delay)
                await asyncio.sleep(delay)

    def _delay(self, url: str, failure: _Retry, tries: int) -> float:
        if failure.wait is None:
            step: float = self._source.backoff * 2.0 ** (tries - 1)
            return min(MAX_BACKOFF, step / 2 + random.uniform(0, step / 2))
        if failure.wait > self._source.max_wait:
            raise FetchError(url, f"rate limited: the site asks us to wait {failure.wait:.0f} s, "
                                  f"longer than max_wait ({self._source.max_wait:.0f} s)", status=failure.status)
        # The site speaks for the whole host: every request waits, not just this one.
        self._pacer.pause(failure.wait)
        return 0.0

    async def _get_once(self, url: str, validators: Validators | None) -> Response:
        current = URL(url)
        for _hop in range(MAX_REDIRECTS + 1):
            status, headers, body = await self._request(current, validators)
            if status not in _REDIRECTS:
                return self._response(url, current, status, headers, body)
            location = headers.get("Location")
            if not location:
                raise FetchError(url, f"HTTP {status} redirect without a Location", status=status)
            target = _resolve(current, location)
            refusal = self._refusal(target)
            if refusal is not None or target is None:
                raise FetchError(url, f"refused redirect to {_shown(location)}: {refusal}", status=status)
            log.debug("%s: redirected to %s", current, target)
            current = target
        raise FetchError(url, f"more than {MAX_REDIRECTS} redirects")

    def _refusal(self, target: URL | None) -> str | None:
        """Why a redirect to ``target`` is not followed, or None to follow it."""
        if target is None:
            return "not a valid URL"
        if _origin(target) != _origin(self._base):
            return f"outside {self._base.origin()}"
        # Same origin, but a Location may not make us send credentials (userinfo becomes Basic auth).
        if target.raw_user is not None or target.raw_password is not None:
            return "it carries credentials"
        return None

    async def _request(self, url: URL, validators: Validators | None) -> tuple[int, CIMultiDictProxy[str], bytes]:
        if self._session is None:
            raise RuntimeError("Fetcher used outside 'async with'")
        headers = _conditional_headers(validators)
        async with self._slots:
            await self._pacer.wait_turn()
            try:
                async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                    _raise_for_retry(resp)
                    body = b"" if resp.status in _REDIRECTS or resp.status == 304 else await self._read(resp)
                    return resp.status, resp.headers, body
            except aiohttp.InvalidURL as exc:
                raise FetchError(str(url), "not a valid URL") from exc
            except TimeoutError:
                raise _Retry("timed out") from None
            except aiohttp.ClientPayloadError as exc:
                raise _Retry(f"connection broke mid-body ({_brief(exc)})") from None
            except aiohttp.ClientError as exc:
                raise _Retry(f"connection failed ({_brief(exc)})") from None

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self._source.max_page_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise FetchError(str(resp.url), f"answer of {resp.content_length} bytes is over max_page_bytes ({limit})")
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise FetchError(str(resp.url), f"answer is over max_page_bytes ({limit})")
            chunks.append(chunk)
        return b"".join(chunks)

    def _response(self, url: str, final: URL, status: int, headers: CIMultiDictProxy[str],
                  body: bytes) -> Response:
        log.info("GET %s: %d%s", url, status, f" (via {final})" if str(final) != url else "")
        if status != 304 and not 200 <= status < 300:
            raise FetchError(url, f"HTTP {status}{_challenge(status, body) or _error_detail(body)}", status=status)
        return Response(
            url=url,
            final_url=str(final),
            status=status,
            body=body,
            validators=Validators(etag=_header(url, headers, "ETag", _ETAG),
                                  last_modified=_header(url, headers, "Last-Modified", _HTTP_DATE)),
            next_url=self._next_url(url, final, headers),
        )

    def _next_url(self, url: str, final: URL, headers: CIMultiDictProxy[str]) -> str | None:
        """The ``Link: <...>; rel="next"`` target, when it is a URL of the site we may follow."""
        link = _header(url, headers, "Link", _PRINTABLE)
        found = _LINK_NEXT.search(link or "")
        target = _resolve(final, found.group(1)) if found else None
        if found is None:
            return None
        if target is None or self._refusal(target) is not None:
            log.debug("%s: ignoring a next link we can't follow: %s", url, _shown(found.group(1)))
            return None
        return str(target)


def _resolve(current: URL, location: str) -> URL | None:
    try:
        return current.join(URL(location))
    except ValueError:
        return None


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


def _shown(location: str) -> str:
    """A Location as the server sent it, fit for a one-line message: escaped where unprintable."""
    text = location[:200]
    if not text.isprintable():
        text = ascii(text)[1:-1]
    return " ".join(text.split())


def _conditional_headers(validators: Validators | None) -> dict[str, str]:
    headers = {}
    if validators is not None and validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators is not None and validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


def _raise_for_retry(resp: aiohttp.ClientResponse) -> None:
    if resp.status == 429 or resp.status >= 500:
        wait = server_wait(resp.headers) if resp.status in (429, 503) else None
        raise _Retry(f"HTTP {resp.status}", status=resp.status, wait=wait)


def server_wait(headers: CIMultiDictProxy[str]) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or date), else HF's
    ``RateLimit: "api";r=0;t=N``."""
    retry_after = headers.get("Retry-After")
    if retry_after:
        value = retry_after.strip()
        if value.isascii() and value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, float((when - dt.datetime.now(dt.UTC)).total_seconds()))
    found = _RATELIMIT_T.search(headers.get("RateLimit") or "")
    return float(found.group(1)) if found else None


def _header(url: str, headers: CIMultiDictProxy[str], name: str, shape: re.Pattern[str]) -> str | None:
    """The header's value if it has the shape we can use, else None (with a debug line)."""
    value = headers.get(name)
    if value is None:
        return None
    if shape.fullmatch(value.strip()) is None:
        log.debug("%s: dropping a %s header we can't use: %s", url, name, ascii(value[:80]))
        return None
    return value.strip()


def _challenge(status: int, body: bytes) -> str | None:
    """A bot check answers 403 with an HTML page: say so, rather than quote its markup."""
    if status != 403 or not body.lstrip()[:1] == b"<" or not is_challenge(body):
        return None
    return f": {CHALLENGE}"


def _error_detail(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace")
    text = " ".join(text.split())
    return f": {text[:200]}" if text and not text.lstrip().startswith("<") else ""


def _brief(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
