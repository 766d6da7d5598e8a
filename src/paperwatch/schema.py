"""The database's schema, as the migrations that build it: one entry per version, in order.

``Store.open`` runs the ones a database has not had yet, each in its own transaction, so a
database made by any earlier release is brought up to date in place and keeps every row.
"""

from __future__ import annotations

# Each entry moves the schema from version i to i+1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE papers (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        summary TEXT,
        published_at TEXT,
        daily_date TEXT,
        upvotes INTEGER,
        comments INTEGER,
        github_repo TEXT,
        github_stars INTEGER,
        project_page TEXT,
        organization TEXT,
        ai_keywords TEXT NOT NULL DEFAULT '[]',
        complete INTEGER NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL
    );
    CREATE INDEX papers_daily_date ON papers(daily_date);
    CREATE TABLE authors (
        paper_id TEXT NOT NULL REFERENCES papers(id),
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (paper_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX authors_name ON authors(name COLLATE NOCASE);
    CREATE TABLE features (
        paper_id TEXT NOT NULL REFERENCES papers(id),
        day TEXT NOT NULL,
        PRIMARY KEY (paper_id, day)
    ) WITHOUT ROWID;
    CREATE INDEX features_day ON features(day);
    CREATE VIRTUAL TABLE papers_fts USING fts5(
        id UNINDEXED, title, summary, authors, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TABLE days (
        day TEXT PRIMARY KEY,
        outcome TEXT NOT NULL,
        papers INTEGER NOT NULL DEFAULT 0,
        source TEXT,
        detail TEXT,
        checked_at TEXT NOT NULL,
        ok_at TEXT
    );
    CREATE TABLE fetches (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        day TEXT,
        url TEXT NOT NULL,
        status INTEGER,
        outcome TEXT NOT NULL,
        source TEXT,
        papers_seen INTEGER NOT NULL DEFAULT 0,
        papers_new INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX fetches_day ON fetches(day, at);
    CREATE TABLE validators (
        url TEXT PRIMARY KEY,
        etag TEXT,
        last_modified TEXT
    );
    """,
    """
    CREATE TABLE readers (
        name TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        last_digest_at TEXT
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        reader TEXT NOT NULL,
        recipient TEXT NOT NULL,
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL UNIQUE,
        data BLOB NOT NULL,
        papers INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        done_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
    CREATE TABLE delivered (
        reader TEXT NOT NULL,
        paper_id TEXT NOT NULL REFERENCES papers(id),
        outbox_id INTEGER NOT NULL REFERENCES outbox(id),
        rules TEXT NOT NULL,
        PRIMARY KEY (reader, paper_id)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE searches (
        query TEXT PRIMARY KEY,
        outcome TEXT NOT NULL,
        source TEXT,
        results INTEGER NOT NULL DEFAULT 0,
        detail TEXT,
        checked_at TEXT NOT NULL,
        ok_at TEXT
    ) WITHOUT ROWID;
    CREATE TABLE search_results (
        query TEXT NOT NULL,
        paper_id TEXT NOT NULL REFERENCES papers(id),
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (query, paper_id)
    ) WITHOUT ROWID;
    CREATE INDEX papers_first_seen ON papers(first_seen);
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    CREATE TABLE reader_searches (
        reader TEXT NOT NULL,
        query TEXT NOT NULL,
        started_at TEXT,
        PRIMARY KEY (reader, query)
    ) WITHOUT ROWID;
    """,
    # The full-text rows were keyed by an UNINDEXED arXiv id: replacing one scanned the whole
    # index. Now each paper has a stable integer key (a column of its own: VACUUM may renumber
    # the implicit rowid) and its full-text row is the FTS table's rowid, found by the B-tree.
    # Nothing queried authors by name.
    """
    ALTER TABLE papers ADD COLUMN fts_key INTEGER;
    UPDATE papers SET fts_key = rowid;
    CREATE UNIQUE INDEX papers_fts_key ON papers(fts_key);
    CREATE VIRTUAL TABLE papers_fts_keyed USING fts5(
        title, summary, authors, tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO papers_fts_keyed (rowid, title, summary, authors)
        SELECT p.fts_key, f.title, f.summary, f.authors FROM papers_fts f JOIN papers p ON p.id = f.id;
    DROP TABLE papers_fts;
    ALTER TABLE papers_fts_keyed RENAME TO papers_fts;
    DROP INDEX authors_name;
    """,
    # A message's bytes in a table of their own: claiming a message and marking it sent rewrote
    # its whole row, 100 KB of digest each time, when only its state changed.
    """
    CREATE TABLE outbox_data (
        outbox_id INTEGER PRIMARY KEY REFERENCES outbox(id),
        data BLOB NOT NULL
    );
    INSERT INTO outbox_data (outbox_id, data) SELECT id, data FROM outbox;
    ALTER TABLE outbox DROP COLUMN data;
    """,
    # Each paper's authors were rows of a table of their own, written and read beside every
    # paper although only ever wanted whole and in order: now a JSON array in the paper's row.
    # The full-text index kept a second copy of every title and abstract: now it indexes the
    # papers table itself (external content), rebuilt here from it. The store writes both in
    # one transaction. Not by triggers: a trigger's statement savepoint makes FTS5 flush its
    # pending entries for every row, each flush a segment to merge later (a backfill took
    # four times as long to index).
    """
    ALTER TABLE papers ADD COLUMN authors TEXT NOT NULL DEFAULT '[]';
    UPDATE papers SET authors = (
        SELECT json_group_array(name) FROM (SELECT name FROM authors a WHERE a.paper_id = papers.id ORDER BY position)
    );
    DROP TABLE authors;
    DROP TABLE papers_fts;
    CREATE VIRTUAL TABLE papers_fts USING fts5(
        title, summary, authors, content = 'papers', content_rowid = 'fts_key',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO papers_fts (papers_fts) VALUES ('rebuild');
    """,
)

# Columns added in place when missing, whatever the schema version: no migration number to
# collide with, and an existing database keeps every row.
ADDED_COLUMNS = (("papers", "ai_summary", "TEXT"),)
