"""The store: a real SQLite file; papers are merged, never lost, and every fetch is recorded."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from paperwatch.errors import StoreError
from paperwatch.models import DayFetch, DayPage, PageSource, Paper, QueuedPaper, Validators
from paperwatch.schema import MIGRATIONS
from paperwatch.store import FTS_AUTOMERGE, Store, merge

DAY = dt.date(2025, 3, 5)


def paper(paper_id: str = "2503.00001", **fields: object) -> Paper:
    base: dict[str, object] = {
        "title": "Grokking at the edge", "summary": "We study grokking.", "authors": ("Ada Lovelace", "Alan Turing"),
        "daily_date": DAY, "upvotes": 3, "comments": 1, "github_repo": "https://github.com/x/y",
        "ai_keywords": ("grokking",),
    }
    base.update(fields)
    return Paper(id=paper_id, **base)  # type: ignore[arg-type]


def ok(day: dt.date, *papers: Paper, source: PageSource = PageSource.JSON,
       validators: Validators | None = None) -> DayFetch:
    return DayFetch(day, f"http://site/papers/date/{day}", 200, page=DayPage(day, papers, source),
                    validators=validators)


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with await Store.open(tmp_path / "state" / "paperwatch.db") as opened:
        yield opened


async def test_schema_is_created_with_durable_settings(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    async with await Store.open(path):
        pass
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_a_database_from_a_newer_paperwatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer paperwatch"):
        await Store.open(path)


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(path)):
        await Store.open(path)


async def test_papers_round_trip_with_authors_in_order(store: Store) -> None:
    authors = tuple(f"Author {n}" for n in range(12))
    assert await store.record_day(ok(DAY, paper(authors=authors), paper("2503.00002"))) == 2
    stored = {p.id: p for p in await store.papers()}
    assert stored["2503.00001"] == paper(authors=authors)
    assert len(stored) == 2


async def test_refetch_updates_counts_and_keeps_first_seen_and_counts_nothing_new(store: Store, tmp_path: Path) -> None:
    await store.record_day(ok(DAY, paper(upvotes=3)))
    first_seen = _column(store, "first_seen")
    assert await store.record_day(ok(DAY, paper(upvotes=40, comments=9, github_stars=120))) == 0
    (p,) = await store.papers()
    assert (p.upvotes, p.comments, p.github_stars) == (40, 9, 120)
    assert _column(store, "first_seen") == first_seen


async def test_a_paper_featured_again_later_is_still_one_paper(store: Store) -> None:
    later = DAY + dt.timedelta(days=6)
    await store.record_day(ok(DAY, paper()))
    assert await store.record_day(ok(later, paper(daily_date=later))) == 0
    (p,) = await store.papers()
    assert p.daily_date == DAY
    assert [x.id for x in await store.papers(date=later)] == ["2503.00001"]
    assert [x.id for x in await store.papers(date=DAY)] == ["2503.00001"]


async def test_a_cards_only_fetch_never_overwrites_with_less(store: Store) -> None:
    full = paper(authors=tuple(f"A{n}" for n in range(9)), project_page="https://p.example")
    await store.record_day(ok(DAY, full))
    thin = Paper(id=full.id, title="Grokking at the…", authors=full.authors[:5], daily_date=DAY,
                 upvotes=50, comments=4, complete=False)
    await store.record_day(ok(DAY, thin, source=PageSource.CARDS))
    (p,) = await store.papers()
    assert p == merge(full, thin)
    assert p.authors == full.authors and p.summary == full.summary and p.title == full.title
    assert p.project_page == "https://p.example" and p.upvotes == 50 and p.complete


async def test_a_failed_day_keeps_what_was_stored(store: Store) -> None:
    await store.record_day(ok(DAY, paper()))
    await store.record_day(DayFetch(DAY, "http://site/x", 503, error="http://site/x: HTTP 503"))
    assert [p.id for p in await store.papers()] == ["2503.00001"]
    (state,) = (await store.day_states([DAY])).values()
    assert state.outcome == "failed" and state.papers == 1 and state.ok_at is not None
    fetch = (await store.recent_fetches())[0]
    assert (fetch.outcome, fetch.status, fetch.error) == ("failed", 503, "http://site/x: HTTP 503")


async def test_validators_are_remembered_per_url(store: Store) -> None:
    await store.record_day(ok(DAY, paper(), validators=Validators('"abc"', "Wed, 05 Mar 2025 10:00:00 GMT")))
    assert await store.validators_of([f"http://site/papers/date/{DAY}"]) == {
        f"http://site/papers/date/{DAY}": Validators('"abc"', "Wed, 05 Mar 2025 10:00:00 GMT")}
    assert await store.validators_of(["http://site/other"]) == {}
    later = DAY + dt.timedelta(days=1)
    await store.record_day(ok(later, paper(), validators=Validators(None, "Thu, 06 Mar 2025 10:00:00 GMT")))
    urls = [f"http://site/papers/date/{day}" for day in (DAY, later)]
    assert await store.validators_of([*urls, "http://site/other"]) == {
        urls[0]: Validators('"abc"', "Wed, 05 Mar 2025 10:00:00 GMT"),
        urls[1]: Validators(None, "Thu, 06 Mar 2025 10:00:00 GMT"),
    }


async def test_not_modified_writes_no_papers(store: Store) -> None:
    await store.record_day(ok(DAY, paper()))
    last_seen = _column(store, "last_seen")
    await store.record_day(DayFetch(DAY, f"http://site/papers/date/{DAY}", 304, not_modified=True))
    assert _column(store, "last_seen") == last_seen
    assert (await store.recent_fetches())[0].outcome == "not_modified"


async def test_a_failed_day_that_answers_304_is_fine_again(store: Store) -> None:
    url = f"http://site/papers/date/{DAY}"
    await store.record_day(ok(DAY, paper()))
    await store.record_day(DayFetch(DAY, url, 500, error=f"{url}: HTTP 500"))
    assert [s.day for s in await store.failed_days()] == [DAY]
    await store.record_day(DayFetch(DAY, url, 304, not_modified=True))
    assert await store.failed_days() == []
    state = (await store.day_states([DAY]))[DAY]
    assert (state.outcome, state.papers, state.detail) == ("ok", 1, None) and state.ok_at is not None
    assert (await store.summary()).days_ok == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("grokking", {"2503.00001"}),
        ("GROKKING edge", {"2503.00001"}),
        ("turing", {"2503.00001"}),
        ("lovel*", {"2503.00001"}),
        ("naive", {"2503.00002"}),  # stored as "naïve": diacritics don't matter
        ('diffusion "unbalanced', {"2503.00002"}),  # quotes in user text are not syntax
        ("grokking diffusion", set()),
    ],
)
async def test_full_text_search_over_title_abstract_and_authors(store: Store, query: str, expected: set[str]) -> None:
    await store.record_day(ok(DAY, paper(), paper("2503.00002", title='Naïve diffusion "unbalanced',
                                                  summary="Other", authors=("Grace Hopper",))))
    assert {p.id for p in await store.papers(search=query)} == expected


async def test_listing_is_newest_first_and_filtered(store: Store) -> None:
    days = [DAY + dt.timedelta(days=n) for n in range(3)]
    for n, day in enumerate(days):
        await store.record_day(ok(day, paper(f"2503.0000{n}", daily_date=day)))
    assert [p.id for p in await store.papers()] == ["2503.00002", "2503.00001", "2503.00000"]
    assert [p.id for p in await store.papers(since=days[1])] == ["2503.00002", "2503.00001"]
    assert [p.id for p in await store.papers(limit=1)] == ["2503.00002"]


async def test_summary_counts_days_by_outcome(store: Store) -> None:
    await store.record_day(ok(DAY, paper()))
    weekend = DAY + dt.timedelta(days=3)
    await store.record_day(DayFetch(weekend, "u", 200, page=DayPage(weekend, (), PageSource.JSON, "page shows x")))
    await store.record_day(DayFetch(DAY + dt.timedelta(days=1), "u", None, error="timed out"))
    summary = await store.summary()
    assert (summary.papers, summary.days_ok, summary.days_empty, summary.days_failed) == (1, 1, 1, 1)


def _column(store: Store, column: str) -> str:
    db = sqlite3.connect(store.path)
    try:
        return str(db.execute(f"SELECT {column} FROM papers").fetchone()[0])
    finally:
        db.close()


async def test_a_queued_digest_takes_its_papers_out_of_the_readers_pending_set(store: Store) -> None:
    await store.record_day(ok(DAY, paper(), paper("2503.00002")))
    await store.reader_state("alice")
    assert {p.id for p in await store.undelivered("alice", featured_since=DAY)} == {"2503.00001", "2503.00002"}
    outbox_id = await store.queue_digest(reader="alice", recipient="alice@example.org", sender="pw@localhost",
                                         message_id="<m1@pw>", data=b"bytes",
                                         papers=[QueuedPaper("2503.00001", ("grokking",))])
    assert {p.id for p in await store.undelivered("alice", featured_since=DAY)} == {"2503.00002"}
    assert {p.id for p in await store.undelivered("bob", featured_since=DAY)} == {"2503.00001", "2503.00002"}
    (due,) = await store.due_messages()
    assert (due.id, due.message_id, due.data, due.status, due.papers) == (outbox_id, "<m1@pw>", b"bytes", "pending", 1)


async def test_a_paper_is_queued_for_a_reader_at_most_once(store: Store) -> None:
    await store.record_day(ok(DAY, paper()))
    queued = [QueuedPaper("2503.00001", ("r",))]
    await store.queue_digest(reader="alice", recipient="a@x", sender="s@x", message_id="<1@x>", data=b"1", papers=queued)
    # A second process queueing the same papers (two digest runs at once) queues nothing.
    assert await store.queue_digest(reader="alice", recipient="a@x", sender="s@x", message_id="<2@x>", data=b"2",
                                    papers=queued) == 0
    assert [m.message_id for m in await store.due_messages()] == ["<1@x>"], "the failed queueing left nothing behind"


async def test_outbox_retries_are_scheduled_and_sent_or_failed_messages_leave_the_queue(store: Store) -> None:
    now = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    for n in range(3):
        await store.queue_digest(reader=f"r{n}", recipient="a@x", sender="s@x", message_id=f"<{n}@x>",
                                 data=b"x", papers=[], now=now)
    first, second, third = await store.due_messages(now=now)
    await store.mark_sent(first.id, now=now)
    await store.mark_retry(second.id, "451 try later", next_attempt_at=now + dt.timedelta(minutes=5))
    await store.mark_failed(third.id, "550 no such user", now=now)
    assert await store.due_messages(now=now) == []
    (retry,) = await store.due_messages(now=now + dt.timedelta(minutes=5))
    assert (retry.id, retry.attempts, retry.last_error) == (second.id, 1, "451 try later")
    (failed,) = await store.messages(status="failed")
    assert failed.last_error == "550 no such user"


async def test_a_reader_start_is_recorded_once(store: Store) -> None:
    first = await store.reader_state("alice", now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    again = await store.reader_state("alice", now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert first.started_at == again.started_at == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def test_pruning_forgets_old_fetch_logs_and_sent_mail_bytes_but_nothing_pending(store: Store) -> None:
    long_ago, now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    await store.record_day(ok(DAY, paper()))
    for n, _status in enumerate(["sent", "failed", "pending"]):
        await store.queue_digest(reader=f"r{n}", recipient="a@x", sender="s@x", message_id=f"<{n}@x>",
                                 data=b"digest bytes", papers=[QueuedPaper("2503.00001", ("rule",))], now=long_ago)
    sent, failed, _ = await store.due_messages(now=long_ago)
    await store.mark_sent(sent.id, now=long_ago)
    await store.mark_failed(failed.id, "550", now=long_ago)

    await store.prune(before=now)
    assert await store.recent_fetches() == []
    kept = {m.message_id: m.data for m in await store.messages()}
    assert kept == {"<0@x>": b"", "<1@x>": b"", "<2@x>": b"digest bytes"}
    assert await store.undelivered("r0", featured_since=DAY) == []  # what was delivered stays delivered
    assert len(await store.papers()) == 1

    await store.prune(before=long_ago)  # nothing that recent is touched
    assert (await store.messages(status="pending"))[0].data == b"digest bytes"


@pytest.mark.e2e
async def test_a_message_being_sent_is_not_taken_by_another_process_unless_it_died(store: Store) -> None:
    import os
    import socket
    import subprocess

    now = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    lease = now + dt.timedelta(minutes=15)
    await store.queue_digest(reader="r", recipient="a@x", sender="s@x", message_id="<1@x>", data=b"x",
                             papers=[], now=now)
    (message,) = await store.due_messages(now=now)
    assert await store.claim(message.id, until=lease, now=now)
    assert not await store.claim(message.id, until=lease, now=now)  # held: not due again
    assert await store.due_messages(now=now) == []

    async def held_by(pid: int) -> None:
        """As if process ``pid`` on this machine had claimed it."""
        db = sqlite3.connect(store.path, timeout=5)
        with db:
            db.execute("UPDATE outbox SET claimed_by = ? WHERE id = ?", (f"{socket.gethostname()}:{pid}", message.id))
        db.close()

    await held_by(os.getppid())  # alive
    assert await store.due_messages(now=now) == [] and not await store.claim(message.id, until=lease, now=now)
    dead = subprocess.Popen(["true"])
    dead.wait()
    await held_by(dead.pid)  # died mid-attempt: taken over at once, not after the lease
    assert [m.id for m in await store.due_messages(now=now)] == [message.id]
    assert await store.claim(message.id, until=lease, now=now)
    await store.mark_sent(message.id, now=now)
    assert await store.due_messages(now=lease) == []


async def test_a_digest_after_the_first_only_looks_at_what_can_be_news(store: Store) -> None:
    old, later_old, recent = dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date.today() - dt.timedelta(days=1)
    await store.record_day(ok(old, paper("2501.00001", daily_date=old)))
    last_digest = dt.datetime.now(dt.UTC)
    await store.record_day(ok(later_old, paper("2501.00002", daily_date=later_old)))  # stored after it: a late day
    await store.record_day(ok(recent, paper("2511.00003", daily_date=recent)))
    fresh = (last_digest, recent - dt.timedelta(days=3))
    got = await store.undelivered("alice", featured_since=dt.date(2024, 12, 1), fresh=fresh)
    assert {p.id for p in got} == {"2501.00002", "2511.00003"}
    every = await store.undelivered("alice", featured_since=dt.date(2024, 12, 1))
    assert {p.id for p in every} == {"2501.00001", "2501.00002", "2511.00003"}
    assert await store.featured_between(old, recent) == ((old, later_old, recent), 3)


# -- the keyed full-text index, one call per day, and the migration to it --------------------

OLD_RELEASE = Path(__file__).parent / "data" / "stores" / "schema-4.db"  # written by the release of schema 4
OLD_MESSAGE = b"mail"  # the digest it had queued


def _fts_rows(path: Path) -> int:
    """How many papers the full-text index holds, having checked that it indexes each as stored."""
    db = sqlite3.connect(path)
    try:
        # rank 1: the index is compared with the papers table it indexes, not only with itself
        db.execute("INSERT INTO papers_fts (papers_fts, rank) VALUES ('integrity-check', 1)")
        return int(db.execute("SELECT count(*) FROM papers_fts_docsize").fetchone()[0])
    finally:
        db.close()


async def test_a_database_of_the_previous_release_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "paperwatch.db"
    path.write_bytes(OLD_RELEASE.read_bytes())
    async with await Store.open(path) as store:
        stored = {p.id: p for p in await store.papers()}
        assert set(stored) == {"2503.00001", "2503.00002", "2503.00003"}
        assert stored["2503.00001"].authors == ("Ada Lovelace", "Alan Turing") and stored["2503.00001"].upvotes == 4
        assert {p.id for p in await store.papers(search="muller")} == {"2503.00002"}
        assert {p.id for p in await store.papers(search="turing grokking")} == {"2503.00001"}
        assert await store.undelivered("alice", featured_since=DAY) == [stored["2503.00003"], stored["2503.00001"]]
        # The digest it had queued is still there to send, bytes and all, and can be claimed and sent.
        [queued] = await store.due_messages(now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        assert (queued.message_id, queued.data, queued.status) == ("<1@example.org>", OLD_MESSAGE, "pending")
        assert await store.claim(queued.id, until=dt.datetime(2030, 1, 1, 0, 5, tzinfo=dt.UTC),
                                 now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        await store.mark_sent(queued.id)
        assert [m.status for m in await store.messages()] == ["sent"]
        # Written after the migration: a changed paper replaces its own row, a new one gets a new key.
        later = DAY + dt.timedelta(days=2)
        changed = paper("2503.00003", title="Diffusion for enzymes", summary="Enzymes.", authors=("Grace Hopper",),
                        daily_date=DAY + dt.timedelta(days=1))
        assert await store.record_day(ok(later, changed, paper("2503.00004", title="Brand new"))) == 1
        assert {p.id for p in await store.papers(search="proteins")} == set()
        assert {p.id for p in await store.papers(search="enzymes")} == {"2503.00003"}
        assert {p.id for p in await store.papers(search="grokking")} == {"2503.00001", "2503.00004"}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'authors_name'").fetchone()[0] == 0
    assert db.execute("SELECT count(DISTINCT fts_key) FROM papers").fetchone()[0] == 4
    # Authors live in the paper's row; the index holds no second copy of the texts.
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert not names & {"authors", "papers_fts_content"}
    db.close()
    assert _fts_rows(path) == 4


SCHEMA_5 = Path(__file__).parent / "data" / "stores" / "schema-5.db"  # authors in a table of their own


async def test_a_database_of_schema_5_keeps_its_authors_and_its_search(tmp_path: Path) -> None:
    path = tmp_path / "paperwatch.db"
    path.write_bytes(SCHEMA_5.read_bytes())
    async with await Store.open(path) as store:
        stored = {p.id: p for p in await store.papers()}
        assert {i: p.authors for i, p in stored.items()} == {
            "2503.00001": ("Ada Lovelace", "Alan Turing", 'Grace "Amazing" Hopper'),
            "2503.00002": ("José Müller",), "2503.00003": ("李 小龙", "Émile Borel"), "2503.00004": (),
        }
        assert (stored["2503.00001"].upvotes, stored["2503.00001"].ai_summary) == (6, "Grokking, summarised.")
        for query, found in [("amazing", {"2503.00001"}), ("muller", {"2503.00002"}), ("emile", {"2503.00003"}),
                             ("proteins", {"2503.00003"}), ("nobody", {"2503.00004"})]:
            assert {p.id for p in await store.papers(search=query)} == found, query
        assert [p.id for p in await store.undelivered("alice", featured_since=DAY)] == [
            "2503.00003", "2503.00001", "2503.00004"]
        # A migrated row's text replaced: its old words leave the index with it.
        await store.record_day(ok(DAY, paper("2503.00001", title="Grokking anew", authors=("Ada Lovelace",))))
        assert await store.papers(search="amazing") == []
        assert {p.id for p in await store.papers(search="lovelace anew")} == {"2503.00001"}
    assert _fts_rows(path) == 4


async def test_a_refetched_paper_replaces_its_full_text_row(store: Store) -> None:
    await store.record_day(ok(DAY, paper(), paper("2503.00002", title="Other", summary="Else.")))
    await store.record_day(ok(DAY, paper(title="Grokking beyond the edge", summary="We revisit it.")))
    await store.record_day(ok(DAY, paper(title="Grokking beyond the edge", summary="We revisit it.")))  # unchanged
    assert {p.id for p in await store.papers(search="revisit")} == {"2503.00001"}
    assert {p.id for p in await store.papers(search="study")} == set()
    assert _fts_rows(store.path) == 2


async def test_a_paper_whose_authors_change_is_found_by_its_new_authors_only(store: Store) -> None:
    await store.record_day(ok(DAY, paper(authors=("Ada Lovelace",))))
    await store.record_day(ok(DAY, paper(upvotes=9)))  # counts only: the index is left as it is
    authors = ('Grace "Amazing" Hopper', "Émile Borel", "Back\\slash", "李 小龙")
    await store.record_day(ok(DAY, paper(authors=authors)))
    (stored,) = await store.papers()
    assert stored.authors == authors and stored.upvotes == 3
    for name in ("hopper", "amazing", "emile", "slash", "李"):
        assert {p.id for p in await store.papers(search=name)} == {"2503.00001"}, name
    assert await store.papers(search="lovelace") == []
    assert _fts_rows(store.path) == 1


async def test_full_text_keys_hold_after_vacuum(store: Store) -> None:
    await store.record_day(ok(DAY, *(paper(f"2503.0000{n}", title=f"Paper number{n}") for n in range(1, 6))))
    db = sqlite3.connect(store.path)
    with db:  # a gap in the implicit rowids, which VACUUM may close by renumbering them
        db.execute("DELETE FROM features WHERE paper_id = '2503.00002'")
        db.execute("DELETE FROM papers WHERE id = '2503.00002'")
    db.execute("VACUUM")
    db.close()
    await store.record_day(ok(DAY, paper("2503.00004", title="Renamed paper")))
    assert {p.id for p in await store.papers(search="renamed")} == {"2503.00004"}
    assert {p.id for p in await store.papers(search="number5")} == {"2503.00005"}
    assert {p.id for p in await store.papers(search="number4")} == set()


async def test_a_day_that_cannot_be_written_leaves_nothing_of_itself(store: Store) -> None:
    await store.record_day(ok(DAY, paper()))
    broken = paper("2503.00009", title=None)  # NOT NULL: the database refuses the day mid-way
    with pytest.raises(StoreError, match="could not store 2025-03-06"):
        await store.record_day(ok(DAY + dt.timedelta(days=1), paper("2503.00008"), broken))
    assert [p.id for p in await store.papers()] == ["2503.00001"]
    assert _fts_rows(store.path) == 1
    assert DAY + dt.timedelta(days=1) not in await store.day_states([DAY + dt.timedelta(days=1)])


async def test_days_stored_together_keep_a_refused_day_out_and_the_others_in(store: Store) -> None:
    thu, fri = DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    broken = paper("2503.00009", title=None)  # NOT NULL: the database refuses this day
    results = await store.record_days([ok(DAY, paper()), ok(thu, paper("2503.00008"), broken),
                                       ok(fri, paper("2503.00007"), paper())])
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], StoreError) and f"could not store {thu}" in str(results[1])
    assert {p.id for p in await store.papers()} == {"2503.00001", "2503.00007"}
    assert _fts_rows(store.path) == 2
    assert set(await store.day_states([DAY, thu, fri])) == {DAY, fri}


async def test_a_page_listing_a_paper_twice_stores_it_once(store: Store) -> None:
    assert await store.record_day(ok(DAY, paper(upvotes=1), paper(upvotes=2))) == 1
    (p,) = await store.papers()
    assert p.upvotes == 2 and _fts_rows(store.path) == 1


async def test_full_text_search_finds_every_paper_after_many_daily_segments_merged(store: Store) -> None:
    # A day per commit leaves an index segment each; 40 of them go through several merges.
    for n in range(40):
        day = DAY + dt.timedelta(days=n)
        await store.record_day(ok(day, paper(f"2503.{n:05d}", title=f"Study topic{n}", daily_date=day)))
    assert {p.id for p in await store.papers(search="study")} == {f"2503.{n:05d}" for n in range(40)}
    assert {p.id for p in await store.papers(search="topic17")} == {"2503.00017"}


async def test_an_existing_database_gets_the_full_text_merge_setting_once(tmp_path: Path) -> None:
    path = tmp_path / "paperwatch.db"
    path.write_bytes(OLD_RELEASE.read_bytes())
    for _ in range(2):
        async with await Store.open(path) as store:
            assert {p.id for p in await store.papers(search="muller")} == {"2503.00002"}
    db = sqlite3.connect(path)
    assert db.execute("SELECT v FROM papers_fts_config WHERE k = 'automerge'").fetchall() == [(FTS_AUTOMERGE,)]
    db.close()
