"""The ``paperwatch`` command line: argparse subcommands, and the only place logging is set up.

Errors users can act on are printed as one line each, without a traceback (``-v`` adds it),
and map to exit codes: 0 success, 1 runtime failure, 2 usage, 78 config error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from paperwatch import __version__
from paperwatch.config import Config, Reader, find_config_file, load_config
from paperwatch.daemon import Loaded, schedule_state, serve
from paperwatch.delivery import (
    SEARCH,
    compose,
    deliver_due,
    prepare,
    queue_digests,
    rule_specs,
    with_search_hits,
    write_preview,
)
from paperwatch.errors import ConfigError, PaperwatchError
from paperwatch.fetch import Fetcher
from paperwatch.mail import describe
from paperwatch.match import Match, Matcher
from paperwatch.models import Paper
from paperwatch.pipeline import (
    DayReport,
    day_range,
    fetch_days,
    fetch_searches,
    is_settled,
    recent_days,
    saved_queries,
    saved_searches,
    today_utc,
)
from paperwatch.store import OutboxMessage, SearchState, Store

log = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The daemon's log is its record (poll summaries, digests sent, failures): INFO by default.
    _configure_logging(args.verbose + (args.command is _run and not args.once))
    try:
        config = load_config(find_config_file(args.config))
        command: Command = args.command
        return asyncio.run(command(args, config))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except PaperwatchError as exc:
        log.debug("details", exc_info=True)
        print(f"paperwatch: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("paperwatch: interrupted; every day finished so far is stored", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperwatch", description="Watch Hugging Face Daily Papers.")
    parser.add_argument("-c", "--config", type=Path, metavar="FILE", help="the config file to use")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="say more (-vv: debug)")
    parser.add_argument("--version", action="version", version=f"paperwatch {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    check = commands.add_parser("check", help="validate the config and print a summary")
    check.set_defaults(command=_check)

    fetch = commands.add_parser("fetch", help="fetch and store days (default: the recent days)")
    fetch.add_argument("dates", nargs="*", type=_date, metavar="DATE")
    fetch.set_defaults(command=_fetch)

    backfill = commands.add_parser("backfill", help="fetch and store every day in a range, resumably")
    backfill.add_argument("--since", type=_date, required=True, metavar="DATE")
    backfill.add_argument("--until", type=_date, metavar="DATE", help="default: today (UTC)")
    backfill.set_defaults(command=_backfill)

    papers = commands.add_parser("papers", help="list stored papers, newest first")
    papers.add_argument("--date", type=_date, metavar="DATE", help="featured on that day")
    papers.add_argument("--since", type=_date, metavar="DATE", help="featured on that day or later")
    papers.add_argument("--search", metavar="TEXT", help="full text over title, abstract and authors")
    papers.add_argument("--limit", type=_positive, metavar="N")
    papers.add_argument("--json", action="store_true", help="print a JSON array")
    papers.set_defaults(command=_papers)

    match = commands.add_parser("match", help="dry run: which stored papers each reader's rules match, and why")
    match.add_argument("--reader", metavar="NAME")
    match.add_argument("--since", type=_date, metavar="DATE", help="papers featured on that day or later")
    match.add_argument("--json", action="store_true")
    match.set_defaults(command=_match)

    digest = commands.add_parser("digest", help="deliver each reader's pending digest now")
    digest.add_argument("--reader", metavar="NAME")
    digest.add_argument("--since", type=_date, metavar="DATE",
                        help="also the stored papers featured from DATE on that the reader never received")
    digest.add_argument("--preview", type=Path, metavar="DIR",
                        help="write NAME.html, NAME.txt and NAME.eml there instead of sending; changes nothing")
    digest.set_defaults(command=_digest)

    run = commands.add_parser("run", help="the daemon: poll, match and deliver on schedule until stopped")
    run.add_argument("--once", action="store_true",
                     help="one full cycle now, ignoring schedules: fetch, match, deliver, then exit")
    run.set_defaults(command=_run)

    status = commands.add_parser("status", help="what has been fetched and how it went")
    status.add_argument("--json", action="store_true")
    status.set_defaults(command=_status)
    return parser


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    # aiosqlite and asyncio chatter at DEBUG about every statement: only our own debug lines
    for noisy in ("aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
    # journald stamps every line itself
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2025-03-05") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _readers(config: Config, name: str | None) -> tuple[Reader, ...]:
    if name is None:
        return config.readers
    chosen = tuple(r for r in config.readers if r.name == name)
    if not chosen:
        known = ", ".join(r.name for r in config.readers) or "none configured"
        raise PaperwatchError(f"no reader named {name!r} (readers: {known})")
    return chosen


async def _check(args: argparse.Namespace, config: Config) -> int:
    Loaded.of(config)
    where = config.path or "no config file: embedded defaults"
    rules = sum(len(r.rules) for r in config.readers)
    print(f"config: {where}")
    print(f"database: {config.database}")
    print(f"source: {config.source.base_url}, poll {config.source.poll}, "
          f"lookback {config.source.lookback_days} days")
    print(f"readers: {len(config.readers)}, rules: {rules}")
    for reader in config.readers:
        searches = f", {len(reader.searches)} saved searches" if reader.searches else ""
        print(f"  {reader.name} <{reader.email}>: {len(reader.rules)} rules{searches}, schedule {reader.schedule!r}")
    print(f"mail: {describe(config.mail)}")
    return 0


async def _fetch(args: argparse.Namespace, config: Config) -> int:
    failed = await _fetch_and_report(config, sorted(set(args.dates)) or recent_days(config.source.lookback_days))
    return 1 if failed else 0


async def _run(args: argparse.Namespace, config: Config) -> int:
    if not args.once:
        return await serve(config)
    matcher, templates = prepare(config)
    base = config.source.base_url
    async with await Store.open(config.database) as store, Fetcher(config.source) as fetcher:
        days = await fetch_days(fetcher, store, base, recent_days(config.source.lookback_days))
        await store.watch_searches(saved_searches(config))
        searches = await fetch_searches(fetcher, store, base, saved_queries(config))
        for line in [r.line() for r in days] + [r.line() for r in searches]:
            print(line)
        queued = await queue_digests(store, config, matcher, templates, config.readers)
        sent = await deliver_due(store, config)
    for outcome in [*queued, *sent]:
        print(f"{outcome.reader}: {outcome.text}")
    failed = any(r.failed for r in days) or any(r.failed for r in searches)
    return 1 if failed or not all(o.ok for o in [*queued, *sent]) else 0


async def _match(args: argparse.Namespace, config: Config) -> int:
    matcher, _ = prepare(config)
    readers = {r.name for r in _readers(config, args.reader)}
    if args.reader is not None:  # only that reader's terms to look for in every paper
        matcher = Matcher.compile(rule_specs(_readers(config, args.reader)))
    async with await Store.open(config.database) as store:
        papers = await store.papers(since=args.since)
        matches = [m for m in matcher.match_all(papers) if m.reader in readers]
        matches, found = await _with_search_hits(store, config, matches, readers, args.since)
    papers += found
    if args.json:
        _write_json_array((m.as_json() for m in matches), sys.stdout)
        return 0
    titles = {p.id: p.title for p in papers}
    for m in matches:
        print(f"{m.reader}  {m.paper_id}  {titles[m.paper_id]}")
        for hit in m.why:
            where = hit.text if hit.field == SEARCH else \
                f"“{hit.term.strip(chr(34))}” in the {hit.field.replace('_', ' ')}: {hit.text}"
            print(f"    {hit.rule}: {where}")
    since = f"since {args.since}" if args.since else f"among the {len(papers)} stored papers"
    for reader in _readers(config, args.reader):
        for rule in reader.rules:
            count = sum(1 for m in matches if m.reader == reader.name and rule.name in m.rules)
            print(f"{reader.name} / {rule.name}: would have matched {count} papers {since}")
        for search in reader.searches:
            count = sum(1 for m in matches if m.reader == reader.name and search.name in m.rules)
            when = f"since {args.since}" if args.since else "since it was saved"
            print(f"{reader.name} / {search.name}: the search {search.query!r} found {count} new papers {when}")
    return 0


def _write_json_array(items: Iterable[object], out: TextIO) -> None:
    """A JSON array, one object a line, written as it is encoded: the C encoder (no indent)
    and one write per thousand objects instead of millions of small ones."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    start, chunk = "[", []
    for item in items:
        chunk.append(encode(item))
        if len(chunk) == 1000:
            out.write(start + "\n" + ",\n".join(chunk))
            start, chunk = ",", []
    if chunk:
        out.write(start + "\n" + ",\n".join(chunk))
        start = ","
    out.write("[]\n" if start == "[" else "\n]\n")


async def _with_search_hits(store: Store, config: Config, matches: list[Match], readers: set[str],
                            since: dt.date | None) -> tuple[list[Match], list[Paper]]:
    """The matches with each reader's saved-search results folded in (a paper once per reader),
    and the papers only a search found."""
    folded: list[Match] = []
    found: dict[str, Paper] = {}
    by_reader: dict[str, dict[str, Match]] = {}
    for m in matches:
        by_reader.setdefault(m.reader, {})[m.paper_id] = m
    for reader in config.readers:
        mine = by_reader.get(reader.name, {})
        if reader.name in readers and reader.searches:
            hits = await store.search_hits(reader.name, [(s.query, s.min_upvotes) for s in reader.searches],
                                           undelivered=False)
            hits = [hit for hit in hits if since is None or hit.found_at.date() >= since]
            found |= {hit.paper.id: hit.paper for hit in hits}
            mine = with_search_hits(reader, mine, hits)
        folded += mine.values()
    known = {m.paper_id for m in matches}
    return folded, [paper for paper_id, paper in found.items() if paper_id not in known]


async def _digest(args: argparse.Namespace, config: Config) -> int:
    matcher, templates = prepare(config)
    readers = _readers(config, args.reader)
    async with await Store.open(config.database) as store:
        if args.preview is not None:
            for reader in readers:
                composed = await compose(store, config, matcher, templates, reader, since=args.since, preview=True)
                if composed is None:
                    print(f"{reader.name}: nothing to send")
                    continue
                files = write_preview(args.preview, composed)
                print(f"{reader.name}: {composed.rendered.subject} -> {', '.join(str(f) for f in files)}")
            return 0
        queued = await queue_digests(store, config, matcher, templates, readers, since=args.since)
        sent = await deliver_due(store, config, reader=args.reader)
    for outcome in [*queued, *sent]:
        print(f"{outcome.reader}: {outcome.text}")
    return 0 if all(o.ok for o in [*queued, *sent]) else 1


async def _fetch_and_report(config: Config, days: list[dt.date]) -> int:
    """Fetch and print one line per day; return how many days failed."""
    reports = await _fetch_and_store(config, sorted(days))
    for report in reports:
        print(report.line())
    return sum(1 for r in reports if r.failed)


async def _backfill(args: argparse.Namespace, config: Config) -> int:
    until = min(args.until or today_utc(), today_utc())
    if args.since > until:
        print(f"paperwatch: nothing to do: --since {args.since} is after {until}", file=sys.stderr)
        return 2
    days = day_range(args.since, until)
    async with await Store.open(config.database) as store:
        states = await store.day_states(days)
    todo = [d for d in days if not is_settled(states.get(d))]
    print(f"backfill {args.since} .. {until}: {len(days)} days, {len(days) - len(todo)} already complete, "
          f"{len(todo)} to fetch", flush=True)
    progress = Progress(len(todo), sys.stdout)
    reports = await _fetch_and_store(config, todo, on_day=progress.step)
    progress.finish()
    failed = [r for r in reports if r.failed]
    stored = sum(r.papers for r in reports)
    print(f"backfill done: {len(reports) - len(failed)} days stored ({stored} papers, "
          f"{sum(r.new for r in reports)} new), {len(failed)} failed", flush=True)
    for report in failed:
        print(report.line(), file=sys.stderr)
    return 1 if failed else 0


async def _fetch_and_store(config: Config, days: list[dt.date],
                           *, on_day: Callable[[DayReport], None] | None = None) -> list[DayReport]:
    async with await Store.open(config.database) as store, Fetcher(config.source) as fetcher:
        return await fetch_days(fetcher, store, config.source.base_url, days, on_day=on_day)


async def _papers(args: argparse.Namespace, config: Config) -> int:
    async with await Store.open(config.database) as store:
        papers = await store.papers(date=args.date, since=args.since, search=args.search, limit=args.limit)
    if args.json:
        _write_json_array((p.as_json() for p in papers), sys.stdout)
        return 0
    for p in papers:
        authors = ", ".join(p.authors[:3]) + (" et al." if len(p.authors) > 3 else "")
        print(f"{p.daily_date}  {p.id:<11} {p.upvotes if p.upvotes is not None else '-':>4} up  {p.title}")
        if authors:
            print(f"{'':24}{authors}")
    if not papers:
        print("no stored papers match", file=sys.stderr)
    return 0


async def _status(args: argparse.Namespace, config: Config) -> int:
    async with await Store.open(config.database) as store:
        summary = await store.summary()
        failed = await store.failed_days()
        fetches = await store.recent_fetches(10)
        pending = await store.messages(status="pending")
        failed_mail = await store.messages(status="failed", limit=10)
        digests = await store.last_digests()
        schedule = await schedule_state(store, config)
        searches = {state.query: state for state in await store.search_states()}
    saved = saved_searches(config)
    if args.json:
        out = {
            "database": str(config.database),
            "papers": summary.papers,
            "first_day": _iso(summary.first_day),
            "last_day": _iso(summary.last_day),
            "days": {"ok": summary.days_ok, "empty": summary.days_empty, "failed": summary.days_failed},
            "last_fetch": _iso(summary.last_fetch),
            "failed_days": [{"day": s.day.isoformat(), "error": s.detail, "checked_at": s.checked_at.isoformat()}
                            for s in failed],
            "recent_fetches": [{"at": f.at.isoformat(), "day": _iso(f.day), "url": f.url, "status": f.status,
                                "outcome": f.outcome, "source": f.source, "papers_seen": f.papers_seen,
                                "papers_new": f.papers_new, "error": f.error} for f in fetches],
            "deliveries": {
                "pending": [_message_json(m) for m in pending],
                "failed": [_message_json(m) for m in failed_mail],
            },
            "poll": {"last": _iso(schedule.last_poll), "summary": schedule.last_poll_summary,
                     "next": _iso(schedule.next_poll), "failing_in_a_row": schedule.failing_polls,
                     "operator_alerted": schedule.operator_alerted},
            "searches": [_search_json(query, searches.get(query), [r for r, q in saved if q == query])
                         for query in saved_queries(config)],
            "readers": {r.name: {"last_digest": _iso(digests.get(r.name)),
                                 "next_digest": _iso(schedule.next_digests.get(r.name))} for r in config.readers},
        }
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    span = f", featured {summary.first_day} .. {summary.last_day}" if summary.first_day else ""
    print(f"database: {config.database}")
    print(f"papers: {summary.papers}{span}")
    print(f"days: {summary.days_ok} with papers, {summary.days_empty} without, {summary.days_failed} failing")
    print(f"last fetch: {_when(summary.last_fetch)}")
    if schedule.last_poll is not None:
        print(f"daemon: last poll {_when(schedule.last_poll)} ({schedule.last_poll_summary}), "
              f"next {_when(schedule.next_poll)}")
    if schedule.failing_polls:
        alerted = ", operator told" if schedule.operator_alerted else ""
        print(f"  the last {schedule.failing_polls} polls had failing days{alerted}")
    for state in failed:
        print(f"  failing {state.day} (last tried {_when(state.checked_at)}): {state.detail}")
    if fetches:
        print("recent fetches:")
    for f in fetches:
        counts = f"{f.papers_seen} papers, {f.papers_new} new" if f.outcome == "ok" else (f.error or "")
        print(f"  {_when(f.at)}  {f.day or 'search':<10}  {f.outcome:<12} {counts}")
    for query in saved_queries(config):
        print(_search_line(query, searches.get(query), [r for r, q in saved if q == query]))
    print(f"deliveries: {len(pending)} pending, {len(failed_mail)} failed")
    for m in [*pending, *failed_mail]:
        print(f"  {m.status:<8} {m.reader} <{m.recipient}> queued {_when(m.created_at)}, {m.attempts} tries"
              + (f": {m.last_error}" if m.last_error else ""))
    for reader in config.readers:
        print(f"reader {reader.name}: last digest {_when(digests.get(reader.name))}, "
              f"next {_when(schedule.next_digests.get(reader.name))}")
    return 0


def _search_json(query: str, state: SearchState | None, readers: list[str]) -> dict[str, object]:
    return {"query": query, "readers": readers, "outcome": state.outcome if state else None,
            "results": state.results if state else None, "source": state.source if state else None,
            "error": state.detail if state else None, "checked_at": _iso(state.checked_at) if state else None,
            "ok_at": _iso(state.ok_at) if state else None}


def _search_line(query: str, state: SearchState | None, readers: list[str]) -> str:
    head = f"search {query!r} (for {', '.join(readers)}): "
    if state is None:
        return head + "not run yet"
    if state.outcome == "failed":
        return head + f"failing since {_when(state.checked_at)}: {state.detail}"
    return head + f"{state.results} results at {_when(state.ok_at)}"


def _message_json(m: OutboxMessage) -> dict[str, object]:
    return {"reader": m.reader, "recipient": m.recipient, "message_id": m.message_id, "papers": m.papers,
            "queued_at": m.created_at.isoformat(), "attempts": m.attempts, "last_error": m.last_error,
            "next_attempt_at": m.next_attempt_at.isoformat() if m.status == "pending" else None}


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _when(value: dt.datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "never"


class Progress:
    """A one-line progress bar on a terminal; one plain line per day otherwise."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self._stream = stream
        self._tty = stream.isatty()

    def step(self, report: DayReport) -> None:
        self.done += 1
        self.failed += report.failed
        if not self._tty:
            print(f"[{self.done}/{self.total}] {report.line()}", file=self._stream, flush=True)
            return
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        note = f", {self.failed} failed" if self.failed else ""
        self._stream.write(f"\r[{bar}] {self.done}/{self.total} days{note}  {report.line()[:60]:<60}")
        self._stream.flush()

    def finish(self) -> None:
        if self._tty and self.total:
            self._stream.write("\n")
            self._stream.flush()
