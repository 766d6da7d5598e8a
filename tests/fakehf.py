"""A fake huggingface.co on 127.0.0.1 for the tests: real-shaped pages, misbehaving on demand.

It serves ``/papers/date/DAY`` pages in the shape of ``shared/samples`` (hydration JSON and
article cards), ``/api/daily_papers``, and records every request it sees so tests can assert
what the fetcher did: headers sent, waits honoured, requests in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
_PAGE_HEAD = (
    '<!doctype html><html class=""><head><meta charset="utf-8"><title>Daily Papers - Hugging Face</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1.0"></head>'
    '<body class="flex flex-col min-h-dvh bg-white dark:bg-gray-950 text-black DailyPapersPage">'
    '<div class="flex min-h-dvh flex-col"><header class="border-b border-gray-100"><nav>'
    '<a href="/models">Models</a><a href="/datasets">Datasets</a><a href="/papers">Daily Papers</a>'
    '</nav></header><main class="flex flex-1 flex-col">'
)
_PAGE_TAIL = "</main></div></body></html>"
_WORDS = (
    "learning model neural network diffusion transformer language vision reasoning benchmark agents "
    "scaling training data robust efficient sparse attention graph policy reward alignment video "
    "retrieval multimodal generation evaluation optimization kernel memory latent tokens"
).split()
_NAMES = ("Yann Cho", "Ada Lovelace", "Jürgen Mikolov", "Søren Zhang", "Fei He", "Grace O'Brien",
          "Tomáš Vapnik", "Anna Peng", "Oriol Liu", "Zoubin Mohamed", "Yujia Li", "Yu Wang")


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, consumed by one request."""

    kind: str
    code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    location: str = ""

    @classmethod
    def status(cls, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Fault:
        return cls("status", code=code, headers=headers or {}, body=body)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def redirect(cls, location: str, code: int = 302) -> Fault:
        return cls("redirect", code=code, location=location)

    @classmethod
    def truncate(cls) -> Fault:
        return cls("truncate")


@dataclass
class Req:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    started: float
    ended: float | None = None
    status: int | None = None


class FakeHF:
    """``async with FakeHF() as hf:`` then point ``source.base_url`` at ``hf.base_url``."""

    def __init__(self) -> None:
        self.days: dict[dt.date, list[dict[str, Any]]] = {}
        self.page_mode: dict[dt.date, str] = {}
        self.latest_policy = "latest"
        self.etag = True
        self.requests: list[Req] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[tuple[str, list[Fault]]] = []
        self._first: tuple[int, tuple[Fault, ...]] | None = None
        self._seen: dict[str, int] = defaultdict(int)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> FakeHF:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/papers/date/{day}", self._day_page)
        app.router.add_get("/api/daily_papers", self._api)
        app.router.add_get("/papers", self._papers_root)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- misbehaviour -------------------------------------------------------------------

    def fail(self, path_prefix: str, *responses: Fault) -> None:
        """Requests whose path (and query) start with ``path_prefix`` get these faults, in order."""
        self._faults.append((path_prefix, list(responses)))

    def fail_first(self, n: int, *choices: Fault) -> None:
        """The first ``n`` requests of every distinct URL get a fault, cycling through ``choices``."""
        self._first = (n, choices)

    def _fault_for(self, request: web.Request) -> Fault | None:
        target = request.path_qs
        for prefix, queue in self._faults:
            if queue and target.startswith(prefix):
                return queue.pop(0)
        if self._first is not None:
            n, choices = self._first
            seen = self._seen[target]
            self._seen[target] += 1
            if seen < n:
                return choices[seen % len(choices)]
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        record = Req(request.method, request.path, dict(request.query), CIMultiDict(request.headers),
                     time.monotonic())
        self.requests.append(record)
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            response = await self._serve(request, handler)
            record.status = response.status
            return response
        finally:
            self._in_flight -= 1
            record.ended = time.monotonic()

    async def _serve(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fault = self._fault_for(request)
        if fault is None:
            return await handler(request)
        if fault.kind == "status":
            return web.Response(status=fault.code, headers=fault.headers, body=fault.body)
        if fault.kind == "redirect":
            return web.Response(status=fault.code, headers={"Location": fault.location})
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return await handler(request)
        normal = await handler(request)
        body = normal.body if isinstance(normal, web.Response) and isinstance(normal.body, bytes) else b""
        if fault.kind == "truncate":
            return web.Response(status=200, body=body[: len(body) // 2], content_type=normal.content_type)
        return await _reset_mid_body(request, body)

    # -- content ------------------------------------------------------------------------

    def items(self, day: dt.date) -> list[dict[str, Any]]:
        """The items served for ``day``, sorted like the API: most upvoted first."""
        return sorted(self.days.get(day, []), key=lambda i: -(i["paper"].get("upvotes") or 0))

    def _latest_day(self, before: dt.date | None = None) -> dt.date | None:
        days = [d for d, items in self.days.items() if items and (before is None or d <= before)]
        return max(days) if days else max((d for d in self.days if self.days[d]), default=None)

    async def _papers_root(self, request: web.Request) -> web.Response:
        latest = self._latest_day()
        raise web.HTTPFound(f"/papers/date/{latest}" if latest else "/papers/trending")

    async def _day_page(self, request: web.Request) -> web.Response:
        try:
            day = dt.date.fromisoformat(request.match_info["day"])
        except ValueError:
            raise web.HTTPNotFound() from None
        shown = day
        if not self.days.get(day):
            latest = self._latest_day(day)
            if self.latest_policy == "redirect":
                raise web.HTTPFound("/papers")
            if self.latest_policy == "redirect_date" and latest is not None:
                raise web.HTTPFound(f"/papers/date/{latest}")
            if self.latest_policy == "latest" and latest is not None:
                shown = latest
        body = self._render(shown, self.page_mode.get(day, "json")).encode()
        return self._conditional(request, body)

    def _conditional(self, request: web.Request, body: bytes) -> web.Response:
        if not self.etag:
            return web.Response(body=body, content_type="text/html", charset="utf-8")
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        modified = "Wed, 05 Mar 2025 10:00:00 GMT"
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag, "Last-Modified": modified})
        return web.Response(body=body, content_type="text/html", charset="utf-8",
                            headers={"ETag": etag, "Last-Modified": modified})

    def _render(self, day: dt.date, mode: str) -> str:
        items = [{**item, "upvoted": False} for item in self.items(day)]
        props = {"authLight": {}, "canSubmit": False, "dateString": day.isoformat(), "dailyPapers": items,
                 "prevDate": (day - dt.timedelta(days=1)).isoformat(), "publisher": None,
                 "periodType": "day", "query": {}, "isTrending": False}
        data = html.escape(json.dumps(props), quote=True)
        if mode == "broken_json":
            data = data[: len(data) // 2]
        div = f'<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{data}"></div>'
        cards = "".join(_card(item) for item in items)
        section = (f'<section class="container"><h1>Daily Papers</h1><time datetime="{day}">{day:%b %d}</time>'
                   f'<div class="relative grid grid-cols-1 gap-14">{cards}</div></section>')
        if mode == "cards":
            content = f'<div class="contents">{section}</div>'
        elif mode == "changed":
            content = '<div class="contents"><section><h1>Daily Papers</h1><p>Something new</p></section></div>'
        else:
            content = div + section
        page = _PAGE_HEAD + content + _PAGE_TAIL
        return page[: len(page) // 2] if mode == "truncated" else page

    async def _api(self, request: web.Request) -> web.Response:
        try:
            day = dt.date.fromisoformat(request.query.get("date", ""))
        except ValueError:
            return web.json_response({"error": "Invalid date"}, status=400)
        if day > dt.datetime.now(dt.UTC).date():
            return web.json_response({"error": "Date cannot be in the future"}, status=400)
        limit = min(int(request.query.get("limit", "50")), 100)
        page = int(request.query.get("p", "0"))
        items = self.items(day)
        chunk = items[page * limit:(page + 1) * limit]
        headers = {}
        if (page + 1) * limit < len(items):
            headers["Link"] = f'<{self.base_url}/api/daily_papers?date={day}&limit={limit}&p={page + 1}>; rel="next"'
        return web.json_response(chunk, headers=headers)

    # -- data ---------------------------------------------------------------------------

    @staticmethod
    def make_item(day: dt.date, n: int, **overrides: Any) -> dict[str, Any]:
        """A realistic, deterministic item for paper ``n`` of ``day``."""
        rng = random.Random(f"{day}-{n}")
        paper_id = f"{day:%y%m}.{(day.day * 1000 + n) % 100000:05d}"
        words = rng.sample(_WORDS, 6)
        title = f"{words[0].title()} {words[1]} for {words[2]}:\n  a study of {words[3]} {words[4]}"
        lines = [" ".join(rng.choices(_WORDS, k=9)) for _ in range(rng.randint(3, 7))]
        authors = [{"_id": f"{n:04x}{i:020x}", "name": rng.choice(_NAMES), "hidden": False}
                   for i in range(rng.randint(1, 12))]
        paper: dict[str, Any] = {
            "id": paper_id, "authors": authors,
            "publishedAt": f"{day - dt.timedelta(days=2)}T00:00:00.000Z",
            "submittedOnDailyAt": f"{day}T00:00:00.000Z",
            "title": title, "summary": "We study " + ".\n".join(lines) + ".",
            "upvotes": rng.randint(0, 200), "discussionId": f"d{paper_id}",
        }
        if n % 2 == 0:
            paper["ai_keywords"] = words[:4]
            paper["ai_summary"] = lines[0]
        if n % 3 == 0:
            paper["githubRepo"] = f"https://github.com/lab{n}/{words[0]}"
            paper["githubStars"] = rng.randint(0, 5000)
        if n % 4 == 1:
            paper["projectPage"] = f"https://{words[1]}.github.io/"
        item: dict[str, Any] = {
            "paper": paper, "publishedAt": f"{day}T08:{n % 60:02d}:00.000Z", "title": title,
            "summary": paper["summary"], "numComments": rng.randint(0, 12),
            "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{paper_id}.png",
            "isAuthorParticipating": bool(n % 2),
        }
        if n % 5 != 4:
            org = {"_id": f"o{n}", "name": f"lab{n % 3}", "fullname": ["Ai2", "Mila", "DeepMind"][n % 3]}
            item["organization"] = org
        for key, value in overrides.items():
            (paper if key in paper or key in ("upvotes", "ai_keywords") else item)[key] = value
        return item

    @staticmethod
    def sample_items(name: str = "api-daily_papers-2025-03-05.json") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads((SAMPLES / name).read_text())
        return items


def _card(item: dict[str, Any]) -> str:
    paper = item["paper"]
    pid = html.escape(paper["id"])
    authors = "".join(f'<li title="{html.escape(a["name"])}"></li>' for a in paper["authors"][:5])
    return (
        f'<article class="relative flex flex-col overflow-hidden rounded-xl border">'
        f'<a href="/papers/{pid}" class="block"><img src="https://cdn-thumbnails.huggingface.co/social-thumbnails/'
        f'papers/{pid}.png" alt=""></a><div class="flex px-6 pb-6 pt-8"><label class="flex cursor-pointer">'
        f'<input type="checkbox" class="peer hidden"><div class="leading-none">{paper.get("upvotes", 0)}</div>'
        f'</label><div class="w-full"><h3 class="mb-1 text-lg font-semibold"><a href="/papers/{pid}" '
        f'class="line-clamp-3">{html.escape(item["title"])}</a></h3><div class="flex items-center">'
        f'<ul class="flex items-center">{authors}</ul><div class="text-gray-500">· {len(paper["authors"])} '
        f'authors</div><a href="/papers/{pid}#community" class="ml-2">{item.get("numComments", 0)}</a>'
        f"</div></div></div></article>"
    )


async def _reset_mid_body(request: web.Request, body: bytes) -> web.StreamResponse:
    """Promise the whole body, send a part, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": str(len(body))})
    await response.prepare(request)
    await response.write(body[: max(1, len(body) // 3)])
    assert request.transport is not None
    request.transport.abort()
    return response
