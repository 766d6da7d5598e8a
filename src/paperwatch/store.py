"""SQLite storage: the only SQL in the project (the schema and its migrations are in ``schema``).

Durability first: WAL, ``synchronous=FULL``, a busy timeout, and every write inside one
``BEGIN IMMEDIATE`` transaction holding whole days (one, or several read together), so a
crash or a failing day never leaves half a day behind nor touches the days already stored.
A paper is keyed by its arXiv id; a later fetch updates what changes (upvotes, comments,
links) and never replaces a value with nothing, so a thinner page (cards only) cannot erase
what a full one stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from json.encoder import encode_basestring
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiosqlite

from paperwatch.errors import StoreError
from paperwatch.models import (
    DayFetch,
    DayState,
    FeaturedPaper,
    FetchRecord,
    OutboxMessage,
    Paper,
    QueuedPaper,
    ReaderState,
    SearchFetch,
    SearchHit,
    SearchState,
    Summary,
    Validators,
)
from paperwatch.schema import ADDED_COLUMNS, MIGRATIONS

log = logging.getLogger(__name__)

_T = TypeVar("_T")

BUSY_TIMEOUT_MS = 30_000
# FTS5 merges index segments this many at a time (its default is 4); see Store._tune_fts.
FTS_AUTOMERGE = 8

_PAPER_COLUMNS = (
    "id, title, summary, published_at, daily_date, upvotes, comments, github_repo, "
    "github_stars, project_page, organization, ai_keywords, complete, ai_summary, authors"
)
def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store:
    """The database; open with ``async with await Store.open(path)`` or ``Store.open`` + ``close``."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        # One connection serves every task: transactions must take turns on it.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating or migrating as needed) the database at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc
        store = cls(db, path)
        try:
            await store._configure()
            await store._migrate()
            await store._add_columns()
            await store._tune_fts()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _configure(self) -> None:
        try:
            await self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            await self._db.execute("PRAGMA synchronous = FULL")
            await self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: not a usable SQLite database: {exc}") from exc
        if mode != "wal":
            log.warning("%s: journal mode is %s, not WAL (is it on a network file system?)", self.path, mode)

    async def _migrate(self) -> None:
        version = await self._scalar("PRAGMA user_version")
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: written by a newer paperwatch (schema {version}, this one knows "
                f"{len(MIGRATIONS)}); upgrade paperwatch or point it at another database"
            )
        for number in range(version, len(MIGRATIONS)):
            # executescript commits whatever is open first, so the script carries its own transaction.
            script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[number]}\nPRAGMA user_version = {number + 1};\nCOMMIT;"
            try:
                await self._db.executescript(script)
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    await self._db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: could not migrate to schema {number + 1}: {exc}") from exc
            log.info("%s: schema migrated to version %d", self.path, number + 1)

    async def _add_columns(self) -> None:
        for table, column, kind in ADDED_COLUMNS:
            present = {row[1] for row in await self._db.execute_fetchall(f"PRAGMA table_info({table})")}
            if column in present:
                continue
            try:
                await self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: could not add the column {table}.{column}: {exc}") from exc
            log.info("%s: added the column %s.%s", self.path, table, column)

    async def _tune_fts(self) -> None:
        """Have FTS5 merge its index segments 8 at a time instead of 4: each day's commit adds a
        segment, and merging 4 by 4 rewrote every paper's index entries about log4(days)
        times, a third of a backfill's store time. Searches read a few more segments, still
        a few dozen. The setting lives in the table's own config: written once per database."""
        if await self._scalar("SELECT v FROM papers_fts_config WHERE k = 'automerge'") == FTS_AUTOMERGE:
            return
        try:
            await self._db.execute("INSERT INTO papers_fts (papers_fts, rank) VALUES ('automerge', ?)",
                                   (FTS_AUTOMERGE,))
        except sqlite3.Error as exc:  # a database we may only read: searches work either way
            log.info("%s: full-text merge setting left as it was: %s", self.path, exc)

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self._write_lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot start a write: {exc}") from exc
            try:
                yield
            except BaseException:
                await self._rollback()
                raise
            try:
                await self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._rollback()
                raise StoreError(f"{self.path}: write failed: {sqlite_cause(exc)}") from exc

    async def _rollback(self) -> None:
        """Undo the open write, if SQLite has not already: a full disk ends the transaction itself,
        and the error to report is that one, not "cannot rollback - no transaction is active"."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self._db.execute("ROLLBACK")

    # -- writing -----------------------------------------------------------------------

    async def record_day(self, fetch: DayFetch) -> int:
        """Store one day's outcome in one transaction; return how many papers were new."""
        (result,) = await self.record_days([fetch])
        if isinstance(result, StoreError):
            raise result
        return result

    async def record_days(self, fetches: Sequence[DayFetch]) -> list[int | StoreError]:
        """Store days' outcomes, in order, in one transaction; for each day how many papers
        were new, or the StoreError that kept it out. Should the database refuse one day, the
        transaction is undone and each day stored in one of its own: a failing day never
        leaves half of itself behind nor keeps the others out.

        The whole group is one call into the database thread (a statement list per table, not
        a thread hop per statement), so a day of 30 papers costs about what one paper did."""
        now = utcnow().isoformat()
        async with self._write_lock:
            if len(fetches) > 1:
                with contextlib.suppress(sqlite3.Error):
                    return [*await self._in_thread(_record_days, fetches, now)]
            return [await self._record_alone(fetch, now) for fetch in fetches]

    async def _record_alone(self, fetch: DayFetch, now: str) -> int | StoreError:
        try:
            return await self._in_thread(_record_day, fetch, now)
        except sqlite3.Error as exc:
            error = StoreError(f"{self.path}: could not store {fetch.day}: {exc}")
            error.__cause__ = exc
            return error

    async def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(connection, *args)`` in the database thread, in one ``BEGIN IMMEDIATE``
        transaction: committed if it returns, rolled back if it raises."""
        return await self._db._execute(_atomically, self._db._conn, fn, *args)  # type: ignore[no-untyped-call,no-any-return]

    async def _write_in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``_in_thread`` once no other write of this process is open: a write is one hop into
        the database thread, not one per statement (each hop is a wake-up of the event loop)."""
        async with self._write_lock:
            return await self._in_thread(fn, *args)

    async def _upsert(self, papers: Sequence[Paper], now: str, *, day: dt.date | None = None) -> set[str]:
        """Within a transaction already open: see ``_upsert_papers``."""
        return await self._db._execute(_upsert_papers, self._db._conn, papers, now, day)  # type: ignore[no-untyped-call,no-any-return]

    # -- reading -----------------------------------------------------------------------

    async def validators_of(self, urls: Iterable[str]) -> dict[str, Validators]:
        """The validators remembered for those of ``urls`` that have any."""
        found: dict[str, Validators] = {}
        for chunk in _chunks(list(urls), 500):
            sql = f"SELECT url, etag, last_modified FROM validators WHERE url IN ({_marks(chunk)})"
            found.update((row[0], Validators(row[1], row[2])) for row in await self._db.execute_fetchall(sql, chunk))
        return found

    async def day_states(self, days: Iterable[dt.date]) -> dict[dt.date, DayState]:
        wanted = [d.isoformat() for d in days]
        states: dict[dt.date, DayState] = {}
        for chunk in _chunks(wanted, 500):
            sql = f"SELECT day, outcome, papers, detail, checked_at, ok_at FROM days WHERE day IN ({_marks(chunk)})"
            async with self._db.execute(sql, chunk) as cur:
                async for row in cur:
                    state = DayState(dt.date.fromisoformat(row[0]), row[1], row[2], row[3],
                                     dt.datetime.fromisoformat(row[4]), _datetime(row[5]))
                    states[state.day] = state
        return states

    async def papers(self, *, date: dt.date | None = None, since: dt.date | None = None,
                     search: str | None = None, limit: int | None = None) -> list[Paper]:
        """Stored papers, newest first, filtered by featured day and full-text search."""
        where: list[str] = []
        params: list[str | int] = []
        if date is not None:
            where.append("p.id IN (SELECT paper_id FROM features WHERE day = ?)")
            params.append(date.isoformat())
        if since is not None:
            where.append("p.id IN (SELECT paper_id FROM features WHERE day >= ?)")
            params.append(since.isoformat())
        if search is not None:
            where.append("p.fts_key IN (SELECT rowid FROM papers_fts WHERE papers_fts MATCH ?)")
            params.append(fts_query(search))
        sql = f"SELECT {_PAPER_COLUMNS} FROM papers p"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY p.daily_date DESC, p.upvotes DESC, p.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        try:
            rows = await self._db.execute_fetchall(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot search for {search!r}: {exc}") from exc
        return [_paper(row) for row in rows]

    async def papers_by_id(self, ids: Sequence[str]) -> list[Paper]:
        """The stored papers among ``ids`` (in no particular order)."""
        rows: list[Any] = []
        for chunk in _chunks(list(ids), 500):
            rows += await self._db.execute_fetchall(
                f"SELECT {_PAPER_COLUMNS} FROM papers WHERE id IN ({_marks(chunk)})", chunk
            )
        return [_paper(row) for row in rows]

    async def recent_fetches(self, limit: int = 20) -> list[FetchRecord]:
        sql = ("SELECT at, day, url, status, outcome, source, papers_seen, papers_new, error "
               "FROM fetches ORDER BY id DESC LIMIT ?")
        rows = await self._db.execute_fetchall(sql, (limit,))
        return [FetchRecord(dt.datetime.fromisoformat(r[0]), _date(r[1]), *r[2:]) for r in rows]

    async def failed_days(self) -> list[DayState]:
        rows = await self._db.execute_fetchall("SELECT day FROM days WHERE outcome = 'failed' ORDER BY day DESC")
        states = await self.day_states(dt.date.fromisoformat(r[0]) for r in rows)
        return sorted(states.values(), key=lambda s: s.day, reverse=True)

    async def summary(self) -> Summary:
        papers = await self._scalar("SELECT count(*) FROM papers")
        counts: dict[str, int] = {
            row[0]: row[1] for row in await self._db.execute_fetchall("SELECT outcome, count(*) FROM days GROUP BY outcome")
        }
        first, last = next(iter(await self._db.execute_fetchall("SELECT min(day), max(day) FROM features")))
        last_fetch = await self._scalar("SELECT max(at) FROM fetches")
        return Summary(papers, counts.get("ok", 0), counts.get("empty", 0), counts.get("failed", 0),
                       _date(first), _date(last), _datetime(last_fetch))


    # -- readers and the outbox ---------------------------------------------------------

    async def reader_state(self, name: str, *, now: dt.datetime | None = None, record: bool = True) -> ReaderState:
        """The reader's state; the first time a reader is seen, ``now`` becomes their start
        (recorded unless ``record`` is false, as for a preview that must change nothing)."""
        now = now or utcnow()
        if record:
            await self.adopt_reader(name)
            await self._write("INSERT OR IGNORE INTO readers (name, started_at) VALUES (?, ?)", (name, now.isoformat()))
        rows = await self._db.execute_fetchall(f"SELECT {_READER_COLUMNS} FROM readers WHERE name = ?", (name,))
        return next((_reader(row).as_of(now) for row in rows), ReaderState(name, now, None))

    async def reader_states(self) -> dict[str, ReaderState]:
        """Every recorded reader's state as stored, by name, in one read (``as_of`` reads it at a time)."""
        rows = await self._db.execute_fetchall(f"SELECT {_READER_COLUMNS} FROM readers")
        return {row[0]: _reader(row) for row in rows}

    async def undelivered(self, reader: str, *, featured_since: dt.date,
                          fresh: tuple[dt.datetime, dt.date] | None = None) -> list[Paper]:
        """Papers featured on ``featured_since`` or later that this reader never had in a digest.

        With ``fresh`` = (seen, day), only those first stored after ``seen`` or featured on
        ``day`` or later: what a digest since the last one can hold, so that composing a digest
        costs the same after a year as on the first day."""
        featured = "EXISTS (SELECT 1 FROM features f WHERE f.paper_id = p.id AND f.day >= ?)"
        delivered = "NOT EXISTS (SELECT 1 FROM delivered d WHERE d.reader = ? AND d.paper_id = p.id)"
        if fresh is None:
            sql = f"SELECT {_PAPER_COLUMNS} FROM papers p WHERE {featured} AND {delivered}"
            params: list[str] = [featured_since.isoformat(), reader]
        else:
            # Driven by the few fresh papers (two indexed lookups), not by every paper since the start.
            sql = (f"SELECT {_PAPER_COLUMNS} FROM papers p WHERE p.id IN "
                   "(SELECT id FROM papers WHERE first_seen > ? UNION SELECT paper_id FROM features WHERE day >= ?) "
                   f"AND {featured} AND {delivered}")
            params = [fresh[0].isoformat(), fresh[1].isoformat(), featured_since.isoformat(), reader]
        rows = await self._db.execute_fetchall(sql + " ORDER BY p.daily_date DESC, p.upvotes DESC, p.id", params)
        return [_paper(row) for row in rows]

    async def featured_papers(self, *, featured_since: dt.date,
                              fresh: tuple[dt.datetime, dt.date] | None = None) -> list[FeaturedPaper]:
        """``undelivered`` for any reader: the papers featured since ``featured_since`` (with
        ``fresh``: only the fresh ones), in the same order, whoever had them already, each with
        what ``fresh`` tests. A run composing many readers' digests loads them once, narrows
        them to each reader's ``fresh`` and asks ``delivered_among``."""
        featured = "EXISTS (SELECT 1 FROM features f WHERE f.paper_id = p.id AND f.day >= ?)"
        columns = f"{_PAPER_COLUMNS}, p.first_seen, (SELECT max(day) FROM features f WHERE f.paper_id = p.id)"
        if fresh is None:
            sql = f"SELECT {columns} FROM papers p WHERE {featured}"
            params: list[str] = [featured_since.isoformat()]
        else:
            sql = (f"SELECT {columns} FROM papers p WHERE p.id IN "
                   "(SELECT id FROM papers WHERE first_seen > ? UNION SELECT paper_id FROM features WHERE day >= ?) "
                   f"AND {featured}")
            params = [fresh[0].isoformat(), fresh[1].isoformat(), featured_since.isoformat()]
        rows = await self._db.execute_fetchall(sql + " ORDER BY p.daily_date DESC, p.upvotes DESC, p.id", params)
        return [FeaturedPaper(_paper(row), row[-2], row[-1]) for row in rows]

    async def delivered_among(self, reader: str, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that went into one of the reader's digests (queued or sent)."""
        found: set[str] = set()
        for chunk in _chunks(list(ids), 500):
            rows = await self._db.execute_fetchall(
                f"SELECT paper_id FROM delivered WHERE reader = ? AND paper_id IN ({_marks(chunk)})", [reader, *chunk])
            found.update(row[0] for row in rows)
        return found

    async def featured_between(self, first: dt.date, last: dt.date) -> tuple[tuple[dt.date, ...], int]:
        """The days from ``first`` to ``last`` with papers, and how many distinct papers they featured."""
        span = (first.isoformat(), last.isoformat())
        days = await self._db.execute_fetchall(
            "SELECT DISTINCT day FROM features WHERE day BETWEEN ? AND ? ORDER BY day", span)
        count = await self._scalar("SELECT count(DISTINCT paper_id) FROM features WHERE day BETWEEN ? AND ?", span)
        return tuple(dt.date.fromisoformat(row[0]) for row in days), int(count or 0)

    async def queue_digest(self, *, reader: str, recipient: str, sender: str, message_id: str, data: bytes,
                           papers: Sequence[QueuedPaper], now: dt.datetime | None = None) -> int:
        """Commit a rendered digest and its papers as delivered-to-this-reader, in one transaction.

        From here on those papers never go into another digest for this reader, and the
        message is retried until sent or given up: nothing between is lost or doubled.
        """
        stamp = (now or utcnow()).isoformat()
        try:
            return await self._queue(reader, recipient, sender, message_id, data, papers, stamp)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise StoreError(f"{self.path}: digest for {reader} not queued: {exc}") from exc
            # Another paperwatch process (a digest run beside this one) queued these papers for this
            # reader a moment ago: they go out once, in its message.
            log.warning("digest for %s not queued: another paperwatch process queued these papers just now", reader)
            return 0
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: digest for {reader} not queued: {sqlite_cause(exc)}") from exc

    async def _queue(self, reader: str, recipient: str, sender: str, message_id: str, data: bytes,
                     papers: Sequence[QueuedPaper], stamp: str) -> int:
        rules = [(p.paper_id, json.dumps(list(p.rules), ensure_ascii=False)) for p in papers]
        return await self._write_in_thread(_queue_digest, reader, recipient, sender, message_id, data, rules, stamp)

    async def mark_digested(self, reader: str, *, now: dt.datetime | None = None) -> None:
        """Note a digest period that ended with nothing to send."""
        await self._write("UPDATE readers SET last_digest_at = ? WHERE name = ?", ((now or utcnow()).isoformat(), reader))

    async def due_messages(self, *, now: dt.datetime | None = None, reader: str | None = None) -> list[OutboxMessage]:
        """Pending messages whose next attempt is due (or whose sender died mid-attempt), oldest first."""
        sql = (f"SELECT {_OUTBOX_COLUMNS}, claimed_by FROM {_OUTBOX} WHERE status = 'pending' "
               "AND (next_attempt_at <= ? OR claimed_by IS NOT NULL)")
        stamp = (now or utcnow()).isoformat()
        params: list[str] = [stamp]
        if reader is not None:
            sql += " AND reader = ?"
            params.append(reader)
        rows = await self._db.execute_fetchall(sql + " ORDER BY id", params)
        return [_message(row[:-1]) for row in rows if row[10] <= stamp or _abandoned(row[-1])]

    async def messages(self, *, status: str | None = None, limit: int = 50) -> list[OutboxMessage]:
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM {_OUTBOX}"
        params: list[str | int] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        rows = await self._db.execute_fetchall(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
        return [_message(row) for row in rows]

    async def claim(self, message_id: int, *, until: dt.datetime, now: dt.datetime | None = None) -> bool:
        """Take a due message for one delivery attempt: its next attempt moves to ``until``, so
        no other process (a manual ``digest`` beside the daemon) sends it meanwhile. If this
        process dies, the next one on this machine takes it over at once, another machine after
        ``until``. False if someone else holds it."""
        stamp = (now or utcnow()).isoformat()
        try:
            return await self._write_in_thread(_claim, message_id, until.isoformat(), stamp)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed: {exc}") from exc

    async def pull_forward(self, *, beyond: dt.datetime, now: dt.datetime) -> None:
        """Make due now every pending message planned after ``beyond``: only a clock that ran
        ahead plans that far, and its dates would hold the message for as long."""
        await self._write("UPDATE outbox SET next_attempt_at = ?, claimed_by = NULL "
                          "WHERE status = 'pending' AND next_attempt_at > ?", (now.isoformat(), beyond.isoformat()))

    async def mark_sent(self, message_id: int, *, now: dt.datetime | None = None) -> None:
        await self._write("UPDATE outbox SET status = 'sent', attempts = attempts + 1, done_at = ?, last_error = NULL, claimed_by = NULL "
                          "WHERE id = ?", ((now or utcnow()).isoformat(), message_id))

    async def mark_retry(self, message_id: int, error: str, *, next_attempt_at: dt.datetime) -> None:
        await self._write("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, claimed_by = NULL "
                          "WHERE id = ?",
                          (error, next_attempt_at.isoformat(), message_id))

    async def mark_failed(self, message_id: int, error: str, *, now: dt.datetime | None = None) -> None:
        await self._write("UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, done_at = ?, claimed_by = NULL "
                          "WHERE id = ?", (error, (now or utcnow()).isoformat(), message_id))

    async def last_digests(self) -> dict[str, dt.datetime | None]:
        rows = await self._db.execute_fetchall("SELECT name, last_digest_at FROM readers ORDER BY name")
        return {row[0]: _datetime(row[1]) for row in rows}

    async def last_sent(self) -> dict[str, dt.datetime]:
        """Each reader's last digest that was actually sent (a run with nothing to send is not one)."""
        rows = await self._db.execute_fetchall(
            "SELECT reader, MAX(done_at) FROM outbox WHERE status = 'sent' GROUP BY reader")
        return {row[0]: dt.datetime.fromisoformat(row[1]) for row in rows if row[1]}

    # -- saved searches -----------------------------------------------------------------

    async def watch_searches(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Note each (reader, query) saved in the config; its results start counting as new
        from the first successful run of the query after this."""
        async with self._transaction():
            await self._db.executemany("INSERT OR IGNORE INTO reader_searches (reader, query) VALUES (?, ?)",
                                       list(pairs))

    async def record_search(self, fetch: SearchFetch, *, now: dt.datetime | None = None) -> int:
        """Store one run of a search in one transaction; return how many results it had never shown.

        Results are stored as papers like any other. The readers who saved the query and had not
        seen it run yet start now: what it shows at this run is their baseline, never mailed."""
        stamp = (now or utcnow()).isoformat()
        new = 0
        try:
            async with self._transaction():
                if fetch.error is None:
                    await self._upsert(fetch.papers, stamp)
                    seen = {row[0] for row in await self._db.execute_fetchall(
                        "SELECT paper_id FROM search_results WHERE query = ?", (fetch.query,))}
                    new = sum(1 for p in fetch.papers if p.id not in seen)
                    await self._db.executemany(
                        "INSERT INTO search_results (query, paper_id, first_seen, last_seen) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (query, paper_id) DO UPDATE SET last_seen = excluded.last_seen",
                        [(fetch.query, p.id, stamp, stamp) for p in fetch.papers])
                    await self._db.execute("UPDATE reader_searches SET started_at = ? "
                                           "WHERE query = ? AND started_at IS NULL", (stamp, fetch.query))
                    await self._db.execute(
                        "INSERT INTO searches (query, outcome, source, results, checked_at, ok_at) "
                        "VALUES (?, 'ok', ?, ?, ?, ?) ON CONFLICT (query) DO UPDATE SET outcome = 'ok', "
                        "source = excluded.source, results = excluded.results, detail = NULL, "
                        "checked_at = excluded.checked_at, ok_at = excluded.ok_at",
                        (fetch.query, fetch.source, len(fetch.papers), stamp, stamp))
                else:
                    await self._db.execute(
                        "INSERT INTO searches (query, outcome, detail, checked_at) VALUES (?, 'failed', ?, ?) "
                        "ON CONFLICT (query) DO UPDATE SET outcome = 'failed', detail = excluded.detail, "
                        "checked_at = excluded.checked_at", (fetch.query, fetch.error, stamp))
                await self._db.execute(
                    "INSERT INTO fetches (at, url, status, outcome, source, papers_seen, papers_new, error) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (stamp, fetch.url, fetch.status, "failed" if fetch.error else "ok", fetch.source,
                     len(fetch.papers), new, fetch.error))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not store the search {fetch.query!r}: {exc}") from exc
        return new

    async def search_hits(self, reader: str, searches: Sequence[tuple[str, int]], *,
                          undelivered: bool = True) -> list[SearchHit]:
        """Results of the reader's searches (query, min_upvotes) that appeared after the reader
        saved them (and, unless ``undelivered`` is false, that the reader never had in a digest)."""
        hits: list[SearchHit] = []
        columns = ", ".join("p." + c.strip() for c in _PAPER_COLUMNS.split(","))
        for query, min_upvotes in searches:
            sql = (f"SELECT {columns}, r.first_seen FROM search_results r "
                   "JOIN reader_searches w ON w.query = r.query AND w.reader = ? JOIN papers p ON p.id = r.paper_id "
                   "WHERE r.query = ? AND w.started_at IS NOT NULL AND r.first_seen > w.started_at "
                   "AND coalesce(p.upvotes, 0) >= ?")
            params: list[str | int] = [reader, query, min_upvotes]
            if undelivered:
                sql += " AND p.id NOT IN (SELECT paper_id FROM delivered WHERE reader = ?)"
                params.append(reader)
            rows = await self._db.execute_fetchall(sql + " ORDER BY r.first_seen, p.id", params)
            hits += [SearchHit(_paper(row), query, dt.datetime.fromisoformat(row[-1])) for row in rows]
        return hits

    async def search_states(self) -> list[SearchState]:
        rows = await self._db.execute_fetchall(
            "SELECT query, outcome, source, results, detail, checked_at, ok_at FROM searches ORDER BY query")
        return [SearchState(r[0], r[1], r[2], r[3], r[4], dt.datetime.fromisoformat(r[5]), _datetime(r[6]))
                for r in rows]

    async def prune(self, *, before: dt.datetime) -> None:
        """Forget what only grows: the fetch log, and the bytes of mail sent or failed, before ``before``.

        The outbox rows stay (they record which digest carried which paper); only their
        message bytes go, so a database serving many readers for years stays small."""
        stamp = before.isoformat()
        async with self._transaction():
            await self._db.execute("DELETE FROM fetches WHERE at < ?", (stamp,))
            await self._db.execute("UPDATE outbox_data SET data = x'' WHERE length(data) > 0 AND outbox_id IN "
                                   "(SELECT id FROM outbox WHERE status != 'pending' AND done_at < ?)", (stamp,))

    # -- the daemon's own state ---------------------------------------------------------

    async def get_state(self, key: str) -> str | None:
        """A value the daemon keeps across restarts (last successful poll, alert state...)."""
        value = await self._scalar("SELECT value FROM state WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def set_state(self, key: str, value: str) -> None:
        await self._write("INSERT INTO state (key, value) VALUES (?, ?) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    async def _write(self, sql: str, params: Sequence[Any]) -> None:
        try:
            await self._write_in_thread(_execute, sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed: {sqlite_cause(exc)}") from exc

    async def adopt_reader(self, name: str) -> None:
        """Carry a reader's history over to ``name`` when only the case of their name changed
        (alice → Alice): names ignore case, so the papers they had are not mailed again."""
        if await self._scalar("SELECT 1 FROM readers WHERE name = ?", (name,)):
            return  # the usual case, known without a write
        async with self._transaction():
            if await self._scalar("SELECT 1 FROM readers WHERE name = ?", (name,)):
                return
            old = await self._scalar("SELECT name FROM readers WHERE name = ? COLLATE NOCASE", (name,))
            if old is None:
                return
            for table, column in (("readers", "name"), ("delivered", "reader"), ("outbox", "reader"),
                                  ("reader_searches", "reader")):
                await self._db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (name, old))
        log.info("reader %r is now named %r: their history goes with them", old, name)


def sqlite_cause(exc: sqlite3.Error) -> str:
    """SQLite's words, with what an operator can act on said plainly."""
    text = str(exc)
    if "database or disk is full" in text:
        return f"{text} (free some space on its file system; nothing was lost, the write is retried later)"
    if "malformed" in text or "not a database" in text:
        return f"{text} (restore it from a backup, or move it aside to start afresh)"
    return text


class DatabaseLock:
    """One daemon per database: an advisory lock on ``DATABASE.lock`` naming the process that holds it.

    Commands (``digest``, ``fetch``...) do not take it: they run beside a daemon safely. The
    kernel drops the lock when its process ends, however it ends."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._file: Any = None

    def acquire(self) -> None:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # held for the process's life
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the lock file: {exc.strerror}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StoreError(f"{self.path.with_suffix('')}: another paperwatch daemon is running on this database "
                             f"(pid {holder}); stop it first, or give this one another paperwatch.database") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# Who holds a claimed outbox message: this machine and process.
_ME = f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(owner: str | None) -> bool:
    """Whether a claim's holder is a process of this machine that no longer runs."""
    if owner is None:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's: wait for its claim to run out
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


# -- one day's write, run in the database thread ----------------------------------------


def _atomically(conn: sqlite3.Connection, fn: Callable[..., _T], *args: Any) -> _T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        # A full disk ends the transaction itself: then the error to raise is that one, not
        # "cannot rollback - no transaction is active".
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> None:
    conn.execute(sql, params)


def _queue_digest(conn: sqlite3.Connection, reader: str, recipient: str, sender: str, message_id: str, data: bytes,
                  rules: Sequence[tuple[str, str]], stamp: str) -> int:
    cursor = conn.execute(
        "INSERT INTO outbox (reader, recipient, sender, message_id, papers, status, created_at, next_attempt_at) "
        "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)", (reader, recipient, sender, message_id, len(rules), stamp, stamp))
    outbox_id = cursor.lastrowid
    assert outbox_id is not None
    conn.execute("INSERT INTO outbox_data (outbox_id, data) VALUES (?, ?)", (outbox_id, data))
    conn.executemany("INSERT INTO delivered (reader, paper_id, outbox_id, rules) VALUES (?, ?, ?, ?)",
                     [(reader, paper_id, outbox_id, names) for paper_id, names in rules])
    conn.execute("UPDATE readers SET last_digest_at = ? WHERE name = ?", (stamp, reader))
    return outbox_id


def _claim(conn: sqlite3.Connection, message_id: int, until: str, stamp: str) -> bool:
    row = conn.execute("SELECT next_attempt_at, claimed_by FROM outbox WHERE id = ? AND status = 'pending'",
                       (message_id,)).fetchone()
    if row is None or (row[0] > stamp and not _abandoned(row[1])):
        return False
    conn.execute("UPDATE outbox SET next_attempt_at = ?, claimed_by = ? WHERE id = ?", (until, _ME, message_id))
    return True


def _record_days(conn: sqlite3.Connection, fetches: Sequence[DayFetch], now: str) -> list[int]:
    return [_record_day(conn, fetch, now) for fetch in fetches]


def _record_day(conn: sqlite3.Connection, fetch: DayFetch, now: str) -> int:
    new = 0
    if fetch.page is not None:
        new = len(_upsert_papers(conn, fetch.page.papers, now, fetch.page.day))
        if fetch.validators is not None:
            conn.execute(
                "INSERT INTO validators (url, etag, last_modified) VALUES (?, ?, ?) "
                "ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified",
                (fetch.url, fetch.validators.etag, fetch.validators.last_modified),
            )
    _save_day_state(conn, fetch, now)
    _log_fetch(conn, fetch, now, new)
    return new


def _upsert_papers(conn: sqlite3.Connection, papers: Sequence[Paper], now: str, day: dt.date | None) -> set[str]:
    """Write each paper merged with what is stored, with its featured day (``day``, else its
    own); return the ids that were new. One statement list per table; a paper fetched again
    unchanged only has its ``last_seen`` moved, and only a changed text is indexed again."""
    papers = list({p.id: p for p in papers}.values())  # a page listing a paper twice stores it once
    old = _read_rows(conn, [p.id for p in papers])
    next_key = int(conn.execute("SELECT coalesce(max(fts_key), 0) FROM papers").fetchone()[0]) + 1
    added: list[tuple[Any, ...]] = []
    changed: list[tuple[Any, ...]] = []
    seen_again: list[tuple[str, str]] = []
    unindex: list[tuple[Any, ...]] = []  # the full-text rows to take out, as they were indexed
    index: list[tuple[Any, ...]] = []  # and to put in
    for paper in papers:
        row = old.get(paper.id)
        if row is None:
            values = _values(paper)
            added.append((*values, now, now, next_key))
            index.append(_text(next_key, values))
            next_key += 1
            continue
        before = _paper(row)
        merged = merge(before, paper)
        if merged == before:
            seen_again.append((now, paper.id))
            continue
        values = _values(merged)
        changed.append((*values[1:], now, paper.id))
        if (merged.title, merged.summary, merged.authors) != (before.title, before.summary, before.authors):
            unindex.append(_text(row[-1], row))
            index.append(_text(row[-1], values))
    conn.executemany(_INSERT_PAPER, added)
    conn.executemany(_UPDATE_PAPER, changed)
    conn.executemany("UPDATE papers SET last_seen = ? WHERE id = ?", seen_again)
    # External content: FTS5 takes a row out of its index by the very values it indexed.
    conn.executemany("INSERT INTO papers_fts (papers_fts, rowid, title, summary, authors) "
                     "VALUES ('delete', ?, ?, ?, ?)", unindex)
    conn.executemany("INSERT INTO papers_fts (rowid, title, summary, authors) VALUES (?, ?, ?, ?)", index)
    featured = [(p.id, f.isoformat()) for p in papers if (f := day or p.daily_date) is not None]
    conn.executemany("INSERT OR IGNORE INTO features (paper_id, day) VALUES (?, ?)", featured)
    return {row[0] for row in added}


_COLUMN_NAMES = [c.strip() for c in _PAPER_COLUMNS.split(",")]
_INSERT_PAPER = (f"INSERT INTO papers ({_PAPER_COLUMNS}, first_seen, last_seen, fts_key) "
                 f"VALUES ({', '.join('?' * (len(_COLUMN_NAMES) + 3))})")
_UPDATE_PAPER = f"UPDATE papers SET {', '.join(f'{c} = ?' for c in _COLUMN_NAMES[1:])}, last_seen = ? WHERE id = ?"
_AUTHORS = _COLUMN_NAMES.index("authors")


def _text(key: int, values: Sequence[Any]) -> tuple[Any, ...]:
    """A full-text row: the paper's key, and its title, abstract and authors as stored."""
    return key, values[1], values[2], values[_AUTHORS]


def _values(p: Paper) -> tuple[Any, ...]:
    """The row of ``_PAPER_COLUMNS`` for ``p``."""
    return (
        p.id, p.title, p.summary, p.published_at, _iso(p.daily_date), p.upvotes, p.comments,
        p.github_repo, p.github_stars, p.project_page, p.organization,
        _json_texts(p.ai_keywords), int(p.complete), p.ai_summary, _json_texts(p.authors),
    )


def _json_texts(texts: Sequence[str]) -> str:
    """``json.dumps(list(texts), ensure_ascii=False)``, made without a JSONEncoder per call (a
    third of the time): the full-text index reads the authors' names in it as they are."""
    return "[" + ", ".join(map(encode_basestring, texts)) + "]"


def _read_rows(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """The stored rows of ``ids``: ``_PAPER_COLUMNS``, then the full-text key."""
    rows: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks(ids, 500):
        sql = f"SELECT {_PAPER_COLUMNS}, fts_key FROM papers WHERE id IN ({_marks(chunk)})"
        rows.update((row[0], row) for row in conn.execute(sql, chunk))
    return rows


def _save_day_state(conn: sqlite3.Connection, fetch: DayFetch, now: str) -> None:
    if fetch.error is not None:
        # A failure is news about the day, but the papers and ok_at it had stay as they were.
        conn.execute(
            "INSERT INTO days (day, outcome, detail, checked_at) VALUES (?, 'failed', ?, ?) "
            "ON CONFLICT (day) DO UPDATE SET outcome = 'failed', detail = excluded.detail, "
            "checked_at = excluded.checked_at",
            (fetch.day.isoformat(), fetch.error, now),
        )
        return
    if fetch.page is None:  # 304: what we stored is still what the site has, and the day is fine again
        conn.execute(
            "UPDATE days SET checked_at = ?, ok_at = ?, "
            "detail = CASE WHEN outcome = 'failed' THEN NULL ELSE detail END, "
            "outcome = CASE WHEN outcome != 'failed' THEN outcome WHEN papers > 0 THEN 'ok' ELSE 'empty' END "
            "WHERE day = ?", (now, now, fetch.day.isoformat())
        )
        return
    page = fetch.page
    outcome = "empty" if page.empty_reason is not None else "ok"
    count = conn.execute("SELECT count(*) FROM features WHERE day = ?", (page.day.isoformat(),)).fetchone()[0]
    conn.execute(
        "INSERT INTO days (day, outcome, papers, source, detail, checked_at, ok_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (day) DO UPDATE SET outcome = excluded.outcome, papers = excluded.papers, "
        "source = excluded.source, detail = excluded.detail, checked_at = excluded.checked_at, "
        "ok_at = excluded.ok_at",
        (page.day.isoformat(), outcome, count, page.source.value, page.empty_reason, now, now),
    )


def _log_fetch(conn: sqlite3.Connection, fetch: DayFetch, now: str, new: int) -> None:
    if fetch.error is not None:
        outcome = "failed"
    elif fetch.not_modified:
        outcome = "not_modified"
    else:
        outcome = "empty" if fetch.page is not None and fetch.page.empty_reason else "ok"
    page = fetch.page
    conn.execute(
        "INSERT INTO fetches (at, day, url, status, outcome, source, papers_seen, papers_new, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now, fetch.day.isoformat(), fetch.url, fetch.status, outcome,
         page.source.value if page else None, len(page.papers) if page else 0, new,
         fetch.error or (page.empty_reason if page else None)),
    )


def merge(old: Paper, new: Paper) -> Paper:
    """What to store when ``new`` is fetched for a paper already stored as ``old``.

    Counts and links follow the site; a value the new record lacks keeps the old one; a
    partial record (cards) never replaces a complete author list; the paper keeps the first
    day it was featured.
    """
    # The site's JSON names authors; cards and flat search results may name HF accounts or none.
    if new.complete:
        authors = new.authors or old.authors
    else:
        authors = new.authors if not old.complete and len(new.authors) > len(old.authors) else old.authors
    days = [d for d in (old.daily_date, new.daily_date) if d is not None]
    return replace(
        new,
        title=new.title if new.complete or not old.complete else old.title,
        summary=new.summary or old.summary,
        authors=authors,
        daily_date=min(days) if days else None,
        published_at=new.published_at or old.published_at,
        upvotes=_first(new.upvotes, old.upvotes),
        comments=_first(new.comments, old.comments),
        github_repo=new.github_repo or old.github_repo,
        github_stars=_first(new.github_stars, old.github_stars),
        project_page=new.project_page or old.project_page,
        organization=new.organization or old.organization,
        ai_keywords=new.ai_keywords or old.ai_keywords,
        ai_summary=new.ai_summary or old.ai_summary,
        complete=old.complete or new.complete,
    )


def fts_query(text: str) -> str:
    """Turn a user's words into an FTS5 query: every word must appear; ``word*`` is a prefix."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*")
        word = word.rstrip("*").replace('"', '""')
        if word:
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    if not terms:
        raise StoreError(f"nothing to search for in {text!r}")
    return " AND ".join(terms)


def _first(a: int | None, b: int | None) -> int | None:
    return a if a is not None else b


def _paper(row: Sequence[Any]) -> Paper:
    """The paper of a row that starts with ``_PAPER_COLUMNS``."""
    return Paper(
        id=row[0], title=row[1], summary=row[2], published_at=row[3], daily_date=_date(row[4]),
        upvotes=row[5], comments=row[6], github_repo=row[7], github_stars=row[8], project_page=row[9],
        organization=row[10], ai_keywords=tuple(json.loads(row[11])), complete=bool(row[12]),
        ai_summary=row[13], authors=tuple(json.loads(row[14])),
    )


_READER_COLUMNS = "name, started_at, last_digest_at"


def _reader(row: Sequence[Any]) -> ReaderState:
    return ReaderState(row[0], dt.datetime.fromisoformat(row[1]), _datetime(row[2]))


_OUTBOX = "outbox JOIN outbox_data ON outbox_id = id"
_OUTBOX_COLUMNS = ("id, reader, recipient, sender, message_id, data, papers, status, created_at, attempts, "
                   "next_attempt_at, last_error, done_at")


def _message(row: Sequence[Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row[0], reader=row[1], recipient=row[2], sender=row[3], message_id=row[4], data=bytes(row[5]),
        papers=row[6], status=row[7], created_at=dt.datetime.fromisoformat(row[8]), attempts=row[9],
        next_attempt_at=dt.datetime.fromisoformat(row[10]), last_error=row[11], done_at=_datetime(row[12]),
    )


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _datetime(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _marks(items: Sequence[object]) -> str:
    return ", ".join("?" * len(items))


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
