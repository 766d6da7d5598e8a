"""A run composing many readers' digests reads the store once for all: same answers as per reader."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from paperwatch.delivery import RunMemo
from paperwatch.match import Matcher
from paperwatch.models import DayPage, PageSource, Paper
from paperwatch.store import DayFetch, QueuedPaper, Store

DAY = dt.date(2026, 3, 10)


def paper(number: int, day: dt.date) -> Paper:
    return Paper(id=f"2603.{number:05d}", title=f"Paper {number}", summary="An abstract.", authors=("A. Author",),
                 daily_date=day, upvotes=number % 7)


async def test_shared_reads_answer_as_each_reader_alone(tmp_path: Path) -> None:
    path, start = tmp_path / "p.db", dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    async with await Store.open(path) as store:
        for offset in range(10):
            day = DAY - dt.timedelta(days=9 - offset)
            await store.record_day(DayFetch(day, f"http://hf/{day}", 200, page=DayPage(
                day, tuple(paper(offset * 10 + n, day) for n in range(10)), PageSource.JSON)))
    # Papers seen at different moments, so each reader's "fresh since" picks a different set.
    with sqlite3.connect(path) as database:
        for offset in range(10):
            database.execute("UPDATE papers SET first_seen = ? WHERE id LIKE ?",
                             ((start + dt.timedelta(days=offset)).isoformat(), f"2603.{offset:04d}%"))
    database.close()
    async with await Store.open(path) as store:
        await store.queue_digest(reader="b", recipient="b@x.org", sender="p@x.org", message_id="<1@x>", data=b"x",
                                 papers=[QueuedPaper(f"2603.{n:05d}", ("r",)) for n in range(50, 95, 3)])
        memo = RunMemo(Matcher.compile([]))
        window = DAY - dt.timedelta(days=8)
        # Later bounds first, then earlier ones (which load again), then none at all.
        asks: list[tuple[str, tuple[dt.datetime, dt.date] | None]] = [
            ("a", (start + dt.timedelta(days=6), DAY - dt.timedelta(days=1))),
            ("b", (start + dt.timedelta(days=7, hours=1), DAY)),
            ("b", (start + dt.timedelta(days=2), DAY - dt.timedelta(days=5))),
            ("a", (start + dt.timedelta(days=4), DAY)),
            ("a", None), ("b", None),
        ]
        for reader, fresh in asks:
            alone = await store.undelivered(reader, featured_since=window, fresh=fresh)
            shared = await memo.undelivered(store, reader, featured_since=window, fresh=fresh)
            assert [p.id for p in shared] == [p.id for p in alone] and shared == alone, (reader, fresh)
            assert alone, (reader, fresh)  # each case has papers to compare
        assert await memo.featured_between(store, window, DAY) == await store.featured_between(window, DAY)


async def test_reader_states_read_at_once_are_each_readers_own(tmp_path: Path) -> None:
    """Recorded, never recorded, with a digest, and with one stamped while the clock ran ahead."""
    now = dt.datetime(2026, 3, 10, 8, tzinfo=dt.UTC)
    async with await Store.open(tmp_path / "p.db") as store:
        for name, started in (("a", now - dt.timedelta(days=9)), ("b", now - dt.timedelta(days=3)),
                              ("c", now + dt.timedelta(days=2))):
            await store.reader_state(name, now=started)
        await store.queue_digest(reader="b", recipient="b@x.org", sender="p@x.org", message_id="<1@x>", data=b"x",
                                 papers=[], now=now - dt.timedelta(days=1))
        await store.queue_digest(reader="c", recipient="c@x.org", sender="p@x.org", message_id="<2@x>", data=b"x",
                                 papers=[], now=now + dt.timedelta(days=3))
        memo = RunMemo(Matcher.compile([]))
        for name in ("a", "b", "c", "never seen"):
            for at in (now, now + dt.timedelta(days=5)):
                assert await memo.reader_state(store, name, at) == await store.reader_state(name, now=at, record=False)
        assert (await memo.reader_state(store, "c", now)).last_digest_at == now  # the future stamp reads as now
