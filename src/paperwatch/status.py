"""``paperwatch status``: what has been fetched and delivered, and how it went, read from the
database (so it works beside a running daemon, or with none), as lines or as JSON, and what a
monitor should hear about (``status --check``)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from paperwatch.config import Config
from paperwatch.models import DayState, FetchRecord, OutboxMessage, SearchState, Summary
from paperwatch.pipeline import saved_queries, saved_searches
from paperwatch.runtime import Schedule, schedule_state
from paperwatch.store import Store
from paperwatch.words import plural

STALE_GRACE = dt.timedelta(minutes=15)
FAILED_RECENTLY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class StatusReport:
    config: Config
    summary: Summary
    failed_days: list[DayState]
    fetches: list[FetchRecord]
    pending: list[OutboxMessage]
    failed_mail: list[OutboxMessage]
    sent: dict[str, dt.datetime]
    schedule: Schedule
    searches: dict[str, SearchState]

    def lines(self) -> list[str]:
        zone, summary, schedule = self.config.paperwatch.timezone, self.summary, self.schedule
        span = f", featured {summary.first_day} .. {summary.last_day}" if summary.first_day else ""
        out = [f"database: {self.config.database}", f"papers: {summary.papers}{span}",
               f"days: {summary.days_ok} with papers, {summary.days_empty} without, {summary.days_failed} failing",
               f"last fetch: {when(summary.last_fetch, zone)}"]
        if schedule.last_poll is not None:
            out.append(f"daemon: last poll {when(schedule.last_poll, zone)} ({schedule.last_poll_summary}), "
                       f"next {when(schedule.next_poll, zone)}")
        if schedule.failing_polls:
            alerted = ", operator told" if schedule.operator_alerted else ""
            out.append(f"  the last {plural(schedule.failing_polls, 'poll')} had failing days{alerted}")
        out += [f"  failing {state.day} (last tried {when(state.checked_at, zone)}): {state.detail}"
                for state in self.failed_days]
        return out + self._fetch_lines(zone) + self._mail_lines(zone)

    def _fetch_lines(self, zone: str) -> list[str]:
        out = ["recent fetches:"] if self.fetches else []
        for f in self.fetches:
            counts = f"{plural(f.papers_seen, 'paper')}, {f.papers_new} new" if f.outcome == "ok" else (f.error or "")
            out.append(f"  {when(f.at, zone)}  {f.day or 'search'!s:<10}  {f.outcome:<12} {counts}")
        saved = saved_searches(self.config)
        return out + [_search_line(query, self.searches.get(query), [r for r, q in saved if q == query], zone)
                      for query in saved_queries(self.config)]

    def _mail_lines(self, zone: str) -> list[str]:
        out = [f"deliveries: {len(self.pending)} pending, {len(self.failed_mail)} failed"]
        for m in [*self.pending, *self.failed_mail]:
            out.append(f"  {m.status:<8} {m.reader} <{m.recipient}> queued {when(m.created_at, zone)}, "
                       f"{plural(m.attempts, 'try', 'tries')}" + (f": {m.last_error}" if m.last_error else ""))
        for reader in self.config.readers:
            own = reader.timezone or zone
            out.append(f"reader {reader.name}: last digest sent {when(self.sent.get(reader.name), own)}, "
                       f"next {when(self.schedule.next_digests.get(reader.name), own)}")
        return out

    def as_json(self) -> dict[str, object]:
        config, summary, schedule = self.config, self.summary, self.schedule
        saved = saved_searches(config)
        return {
            "database": str(config.database),
            "papers": summary.papers,
            "first_day": _iso(summary.first_day),
            "last_day": _iso(summary.last_day),
            "days": {"ok": summary.days_ok, "empty": summary.days_empty, "failed": summary.days_failed},
            "last_fetch": _iso(summary.last_fetch),
            "failed_days": [{"day": s.day.isoformat(), "error": s.detail, "checked_at": s.checked_at.isoformat()}
                            for s in self.failed_days],
            "recent_fetches": [{"at": f.at.isoformat(), "day": _iso(f.day), "url": f.url, "status": f.status,
                                "outcome": f.outcome, "source": f.source, "papers_seen": f.papers_seen,
                                "papers_new": f.papers_new, "error": f.error} for f in self.fetches],
            "deliveries": {
                "pending": [_message_json(m) for m in self.pending],
                "failed": [_message_json(m) for m in self.failed_mail],
            },
            "poll": {"last": _iso(schedule.last_poll), "summary": schedule.last_poll_summary,
                     "next": _iso(schedule.next_poll), "failing_in_a_row": schedule.failing_polls,
                     "operator_alerted": schedule.operator_alerted},
            "searches": [_search_json(query, self.searches.get(query), [r for r, q in saved if q == query])
                         for query in saved_queries(config)],
            "readers": {r.name: {"last_digest": _iso(self.sent.get(r.name)), "timezone": r.timezone or
                                 config.paperwatch.timezone,
                                 "next_digest": _iso(schedule.next_digests.get(r.name))} for r in config.readers},
        }

    def problems(self, now: dt.datetime | None = None) -> list[str]:
        """What ``status --check`` reports (and exits 1 for): polls stale or failing, deliveries failing."""
        now, schedule = now or dt.datetime.now(dt.UTC), self.schedule
        problems = []
        if schedule.last_poll is None:
            problems.append("no poll recorded: is `paperwatch run` running?")
        elif schedule.next_poll is not None:
            late = now - schedule.next_poll
            if late > max(STALE_GRACE, schedule.next_poll - schedule.last_poll):
                problems.append(f"polls are stale: the last was {when(schedule.last_poll, 'UTC')}, the next was due "
                                f"{when(schedule.next_poll, 'UTC')}")
        if schedule.failing_polls:
            problems.append(f"the last {plural(schedule.failing_polls, 'poll')} had failing days")
        retrying = [m for m in self.pending if m.attempts > 0]
        recent = [m for m in self.failed_mail if m.done_at is None or now - m.done_at < FAILED_RECENTLY]
        if retrying or recent:
            problems.append(f"deliveries failing: {len(retrying)} being retried, {len(recent)} failed in the last day")
        return problems


async def status_report(store: Store, config: Config) -> StatusReport:
    return StatusReport(
        config=config, summary=await store.summary(), failed_days=await store.failed_days(),
        fetches=await store.recent_fetches(10), pending=await store.messages(status="pending"),
        failed_mail=await store.messages(status="failed", limit=10), sent=await store.last_sent(),
        schedule=await schedule_state(store, config),
        searches={state.query: state for state in await store.search_states()})


def _search_json(query: str, state: SearchState | None, readers: list[str]) -> dict[str, object]:
    return {"query": query, "readers": readers, "outcome": state.outcome if state else None,
            "results": state.results if state else None, "source": state.source if state else None,
            "error": state.detail if state else None, "checked_at": _iso(state.checked_at) if state else None,
            "ok_at": _iso(state.ok_at) if state else None}


def _search_line(query: str, state: SearchState | None, readers: list[str], zone: str = "UTC") -> str:
    head = f"search {query!r} (for {', '.join(readers)}): "
    if state is None:
        return head + "not run yet"
    if state.outcome == "failed":
        return head + f"failing since {when(state.checked_at, zone)}: {state.detail}"
    return head + f"{plural(state.results, 'result')} at {when(state.ok_at, zone)}"


def _message_json(m: OutboxMessage) -> dict[str, object]:
    return {"reader": m.reader, "recipient": m.recipient, "message_id": m.message_id, "papers": m.papers,
            "queued_at": m.created_at.isoformat(), "attempts": m.attempts, "last_error": m.last_error,
            "next_attempt_at": m.next_attempt_at.isoformat() if m.status == "pending" else None}


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def when(value: dt.datetime | None, zone: str) -> str:
    """``2025-03-07 08:00 Europe/Berlin``: a time with the zone it is read in."""
    if value is None:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return f"{value.astimezone(zoneinfo.ZoneInfo(zone)):%Y-%m-%d %H:%M} {zone}"
