"""Matches → queued digests → delivered mail, through the outbox.

Queueing renders a reader's digest once and commits its bytes, its Message-ID and its papers
(now delivered-to-that-reader) in one transaction, before any delivery attempt. Delivery
then sends what is due and marks it sent; temporary failures are retried with backoff until
``mail.give_up``, permanent ones are marked failed with the server's reply. A crash between
the server's 250 and "sent" repeats that one message, with the same bytes and Message-ID;
nothing else can repeat, and nothing committed is lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import starmap
from pathlib import Path

from paperwatch.address import parse_mailbox
from paperwatch.blocks import BlockMemo
from paperwatch.config import Config, Reader, located
from paperwatch.digest import (
    DigestInfo,
    DigestItem,
    Highlight,
    Rendered,
    Templates,
)
from paperwatch.errors import ConfigError, MailError, TemplateError
from paperwatch.mail import (
    AuthError,
    Envelope,
    SessionError,
    Transport,
    login_key,
    open_transport,
    unsafe_config_file,
)
from paperwatch.match import Hit, Match, Matcher
from paperwatch.message import QpLines, build_message, build_notice, list_id, make_message_id, message_domain
from paperwatch.models import FeaturedPaper, OutboxMessage, Paper, QueuedPaper, ReaderState, SearchHit
from paperwatch.ruleset import compile_rules
from paperwatch.store import Store, utcnow

log = logging.getLogger(__name__)

OPERATOR = "(operator)"  # the outbox's name for notes to paperwatch.admin
SEARCH = "search"  # the field of a Hit saying that a saved search found the paper
RETRY_FIRST = dt.timedelta(minutes=1)
# Papers stored this long before the last digest still count as possibly news for the next:
# a poll's transaction may commit just after a digest read the store.
FRESH_MARGIN = dt.timedelta(days=1)
# How long a delivery attempt holds its message: if the process dies, it is due again after this.
CLAIM = dt.timedelta(minutes=15)
RETRY_LONGEST = dt.timedelta(hours=1)
# After a refused login: most providers lock an account after a handful of failures.
AUTH_BACKOFF = dt.timedelta(minutes=30)
MAIL_PROBLEM = "mail.problem"  # state: the operator has been told of this refusal about us
AUTH_HOLD = "mail.auth_hold"  # state: "UNTIL KEY", no login before UNTIL while the login is KEY


@dataclass(frozen=True, slots=True)
class Composed:
    """A reader's digest, rendered and ready to queue (or to preview)."""

    reader: Reader
    rendered: Rendered
    message: bytes
    message_id: str
    items: tuple[DigestItem, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One line of news about a reader's digest or a delivery."""

    reader: str
    ok: bool
    text: str


class RunMemo:
    """What one run's digests share, as it composes many readers' digests of mostly the same
    fresh papers: each paper matched once for every reader (a paper whose text changed is
    matched again), the store's answers that are the same for all (every reader's state among
    them, read at once), the template blocks rendered for one digest that another would render
    alike (``blocks``) and the lines encoded for sending (``lines``)."""

    __slots__ = ("_featured", "_found", "_matcher", "_papers", "_states", "blocks", "lines")

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher
        self.blocks = BlockMemo()
        self.lines = QpLines()
        self._found: dict[str, tuple[Paper, dict[str, Match]]] = {}
        # The store's answers that are the same for every reader, loaded once per run: the papers
        # featured since a window, fresh since the earliest last digest asked for yet, and each
        # reader's narrowed to theirs. A paper stored meanwhile waits for the next digest:
        # FRESH_MARGIN reaches back for it.
        self._papers: dict[tuple[dt.date, bool], tuple[tuple[dt.datetime, dt.date] | None, list[FeaturedPaper]]] = {}
        self._featured: dict[tuple[dt.date, dt.date], tuple[tuple[dt.date, ...], int]] = {}
        self._states: dict[str, ReaderState] | None = None

    async def undelivered(self, store: Store, reader: str, *, featured_since: dt.date,
                          fresh: tuple[dt.datetime, dt.date] | None) -> list[Paper]:
        """``store.undelivered``, from the papers loaded once for every reader."""
        key = (featured_since, fresh is None)
        loaded = self._papers.get(key)
        if loaded is None or not _covers(loaded[0], fresh):
            bound = fresh if loaded is None or fresh is None or loaded[0] is None else (
                min(fresh[0], loaded[0][0]), min(fresh[1], loaded[0][1]))
            loaded = self._papers[key] = (bound, await store.featured_papers(featured_since=featured_since, fresh=bound))
        if fresh is None:
            candidates = [f.paper for f in loaded[1]]
        else:
            since, day = fresh[0].isoformat(), fresh[1].isoformat()
            candidates = [f.paper for f in loaded[1] if f.fresh(since, day)]
        had = await store.delivered_among(reader, [paper.id for paper in candidates])
        return [paper for paper in candidates if paper.id not in had]

    async def reader_state(self, store: Store, name: str, now: dt.datetime) -> ReaderState:
        """``store.reader_state(name, now=now, record=False)``, from the states read once for every
        reader: a reader's own digest is the only one of the run that changes theirs."""
        if self._states is None:
            self._states = await store.reader_states()
        state = self._states.get(name)
        return ReaderState(name, now, None) if state is None else state.as_of(now)

    async def featured_between(self, store: Store, first: dt.date, last: dt.date) -> tuple[tuple[dt.date, ...], int]:
        if (first, last) not in self._featured:
            self._featured[first, last] = await store.featured_between(first, last)
        return self._featured[first, last]

    def match(self, paper: Paper, reader: str) -> Match | None:
        known = self._found.get(paper.id)
        if known is None or (known[0] is not paper and known[0] != paper):
            known = self._found[paper.id] = (paper, {m.reader: m for m in self._matcher.match(paper)})
        return known[1].get(reader)


def _covers(bound: tuple[dt.datetime, dt.date] | None, fresh: tuple[dt.datetime, dt.date] | None) -> bool:
    """Whether papers loaded fresh since ``bound`` hold all those fresh since ``fresh``."""
    return bound is None or (fresh is not None and bound[0] <= fresh[0] and bound[1] <= fresh[1])


def prepare(config: Config) -> tuple[Matcher, Templates]:
    """Compile every rule, load the templates and check that the config file is safe to take an
    SMTP login from, reporting every mistake at once."""
    problems: list[str] = []
    matcher = templates = None
    try:
        matcher = compile_rules(config)
    except ConfigError as exc:
        problems += exc.problems
    try:
        templates = Templates.load(config.mail.templates)
    except TemplateError as exc:
        problems.append(located(config, ("mail", "templates"), f"mail.templates: {exc}"))
    if (unsafe := unsafe_config_file(config.path, config.mail)) is not None:
        problems.append(located(config, ("mail", "smtp", "username"), f"mail.smtp.username: {unsafe}"))
    if problems or matcher is None or templates is None:
        raise ConfigError(problems)
    return matcher, templates


async def compose(store: Store, config: Config, matcher: Matcher, templates: Templates, reader: Reader,
                  *, since: dt.date | None = None, now: dt.datetime | None = None,
                  preview: bool = False, memo: RunMemo | None = None) -> Composed | None:
    """Render the reader's digest of every matched paper they never received; None when
    there is nothing to send (and the reader did not ask for empty notes)."""
    now = now or utcnow()
    state = await (memo.reader_state(store, reader.name, now) if memo else store.reader_state(
        reader.name, now=now, record=False))
    # Only a reader not stored yet is written: a write per reader per digest was a transaction
    # (and a sync to disk) that changed nothing.
    if not preview and state.last_digest_at is None and state.started_at == now:
        state = await store.reader_state(reader.name, now=now, record=True)
    lookback = dt.timedelta(days=config.source.lookback_days)
    # A new reader starts with what the polls find, never with the history a backfill stored:
    # the lookback_days a poll fetches end today, so the first of them is lookback_days - 1 ago.
    window = since or state.started_at.date() - (lookback - dt.timedelta(days=1))
    # Later digests match again only what can be news since the last one: papers stored since
    # then, or featured on the days the polls still re-fetch (a rule edit reaches back that far;
    # `digest --since` reaches further). So a digest costs the same after a year as on day one.
    fresh = None
    if since is None and state.last_digest_at is not None:
        fresh = (state.last_digest_at - FRESH_MARGIN, state.last_digest_at.date() - lookback)
    if memo is None:
        papers = await store.undelivered(reader.name, featured_since=window, fresh=fresh)
    else:
        papers = await memo.undelivered(store, reader.name, featured_since=window, fresh=fresh)
    # A paper read from the cards alone has no abstract yet: an `exclude` could not see it.
    # It waits while the polls may still complete it, and goes as it is after that.
    papers = [p for p in papers if p.complete or not p.daily_date or p.daily_date <= now.date() - lookback]
    hits = await store.search_hits(reader.name, [(s.query, s.min_upvotes) for s in reader.searches])
    items = digest_items(reader, papers, matcher, hits, memo=memo)
    if not items and not reader.send_empty:
        return None
    # The period covered: since the last digest (the first one: since the window), reaching back
    # to the oldest paper in it; "papers seen" are those published on the period's days.
    end = now.date()
    start = since or (state.last_digest_at.date() if state.last_digest_at else window)
    # (A search result can be years old: the period is that of the days the polls read.)
    polled = {paper.id for paper in papers}
    start = min([start, end, *(i.paper.daily_date for i in items if i.paper.daily_date and i.paper.id in polled)])
    days, seen = await (memo.featured_between(store, start, end) if memo else store.featured_between(start, end))
    info = DigestInfo(reader=reader.name, email=reader.email, days=days, papers_seen=seen,
                      period_start=start, period_end=end)
    lines = memo.lines if memo else QpLines()
    rendered = templates.render(info, items, memo=memo.blocks if memo else None, lines=lines)
    kept = items[: len(items) - rendered.omitted]  # the rest stay pending, for the next digest
    return _composed(config, reader, rendered, tuple(kept), now, lines)


def _composed(config: Config, reader: Reader, rendered: Rendered, kept: tuple[DigestItem, ...],
              now: dt.datetime, lines: QpLines) -> Composed:
    """The rendered digest as the message the outbox keeps, with its Message-ID."""
    sender, to = parse_mailbox(config.mail.from_), parse_mailbox(reader.email)
    domain = message_domain(sender.address)
    message_id = make_message_id(reader.name, now.isoformat(), domain=domain)
    message = build_message(
        rendered, sender=sender.header(), to=to.header(), message_id=message_id, date=now,
        list_id=list_id(reader.name, domain), unsubscribe=_address(config.paperwatch.admin or config.mail.from_),
        utf8=sender.needs_smtputf8 or to.needs_smtputf8, encode=lines.encode,
    )
    return Composed(reader, rendered, message, message_id, kept)


def digest_items(reader: Reader, papers: Sequence[Paper], matcher: Matcher,
                 hits: Sequence[SearchHit] = (), *, memo: RunMemo | None = None) -> tuple[DigestItem, ...]:
    """The reader's matched papers and new search results, each once, under its best rule or
    search (the reader's own order: rules, then searches), best-voted first."""
    names = [rule.name for rule in reader.rules] + [search.name for search in reader.searches]
    order = {name: n for n, name in enumerate(names)}
    matches = {}
    for paper in papers:
        match = memo.match(paper, reader.name) if memo else next(iter(matcher.match(paper, reader=reader.name)), None)
        if match is not None:
            matches[paper.id] = match
    by_id = {hit.paper.id: hit.paper for hit in hits} | {paper.id: paper for paper in papers}
    items = [_item(by_id[paper_id], match, order) for paper_id, match in with_search_hits(reader, matches, hits).items()]
    items.sort(key=lambda item: (order.get(item.rules[0], len(order)), -(item.paper.upvotes or 0)))
    return tuple(items)


def with_search_hits(reader: Reader, matches: Mapping[str, Match], hits: Iterable[SearchHit]) -> dict[str, Match]:
    """The reader's matches by paper id, with the new results of their saved searches folded in:
    a paper a rule and a search both found is one match naming both."""
    folded = dict(matches)
    for hit in hits:
        for search in (s for s in reader.searches if s.query == hit.query):
            old = folded.get(hit.paper.id) or Match(reader.name, hit.paper.id, (), ())
            if search.name not in old.rules:
                why = Hit(search.name, hit.query, SEARCH, f"new result of the search {hit.query!r}")
                folded[hit.paper.id] = replace(old, rules=(*old.rules, search.name), why=(*old.why, why))
    return folded


def _item(paper: Paper, match: Match, order: dict[str, int]) -> DigestItem:
    rules = match.rules if len(match.rules) == 1 else tuple(
        sorted(match.rules, key=lambda name: order.get(name, len(order))))
    highlights = tuple(starmap(_highlight, dict.fromkeys((hit.field, hit.text) for hit in match.why)))
    return DigestItem(paper, rules, highlights, _why(match.why, rules))


# A paper's highlights are those of its hits, and hits are shared (``Match``): so are these.
_highlight = lru_cache(maxsize=4096)(Highlight)


_FIELD_NAMES = {"ai_keywords": "AI keywords"}
WHY_TERMS = 4  # terms named per rule; more would bury the paper under its reasons


def _why(hits: Sequence[Hit], rules: Sequence[str]) -> tuple[str, ...]:
    """One phrase per rule, in ``rules`` order, naming each term once with the fields it was found in:
    ``grokking: “grok*” in the title and abstract, “Nanda” in the authors``."""
    found: dict[str, dict[str, list[str]]] = {}
    for hit in hits:
        fields = found.setdefault(hit.rule, {}).setdefault(hit.term, [])
        name = _FIELD_NAMES.get(hit.field, hit.field.replace("_", " "))
        if name not in fields:
            fields.append(name)
    phrases = []
    for rule in sorted(found, key=lambda name: rules.index(name) if name in rules else len(rules)):
        terms = [f"a new result of your search “{_unquoted(term)}”" if fields == [SEARCH]
                 else f"“{_unquoted(term)}” in the {_and(fields)}" for term, fields in found[rule].items()]
        more = f", … ({len(terms) - WHY_TERMS} more)" if len(terms) > WHY_TERMS else ""
        phrases.append(f"{rule}: {', '.join(terms[:WHY_TERMS])}{more}")
    return tuple(phrases)


def _unquoted(term: str) -> str:
    """A phrase as the rule quoted it (``"black box"``), without its quotes: ours go around it."""
    quoted = len(term) > 2 and term[0] == term[-1] and term[0] in "\"'" and term.count(term[0]) == 2
    return term[1:-1] if quoted else term  # not '"a" OR "b"', whose quotes are not around it all


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


async def queue(store: Store, composed: Composed, config: Config, *, now: dt.datetime | None = None) -> int:
    return await store.queue_digest(
        reader=composed.reader.name, recipient=_address(composed.reader.email), sender=_address(config.mail.from_),
        message_id=composed.message_id, data=composed.message,
        papers=[QueuedPaper(item.paper.id, item.rules) for item in composed.items], now=now,
    )


async def queue_digests(store: Store, config: Config, matcher: Matcher, templates: Templates,
                        readers: Sequence[Reader], *, since: dt.date | None = None,
                        now: dt.datetime | None = None) -> list[Outcome]:
    """Compose and queue each reader's digest; a failing reader never stops the others."""
    outcomes = []
    memo = RunMemo(matcher) if len(readers) > 1 else None
    for reader in readers:
        try:
            composed = await compose(store, config, matcher, templates, reader, since=since, now=now, memo=memo)
        except TemplateError as exc:
            log.error("digest for %s not composed: %s; their papers stay pending", reader.name, exc)
            outcomes.append(Outcome(reader.name, False, f"digest not composed: {exc}"))
            continue
        if composed is None:
            await store.mark_digested(reader.name, now=now)
            outcomes.append(Outcome(reader.name, True, "nothing new matched"))
            continue
        await queue(store, composed, config, now=now)
        outcomes.append(Outcome(reader.name, True, f"queued: {composed.rendered.subject}"))
    return outcomes


async def deliver_due(store: Store, config: Config, *, reader: str | None = None,
                      now: dt.datetime | None = None) -> list[Outcome]:
    """Send every due message in the outbox over one connection; record what happened.

    A refusal about one recipient fails that digest; a refusal about us (connection, TLS,
    login, our sender, or a 5xx to every recipient of the run) fails none: they all wait,
    and the operator is told once."""
    await _release_for_new_login(store, config, now=now)
    due = await store.due_messages(now=now, reader=reader)
    if not due:
        return []
    if (held := await _auth_held(store, config, due, now=now)) is not None:
        return held
    outcomes: list[Outcome] = []
    done: set[int] = set()
    refused: list[tuple[OutboxMessage, MailError]] = []
    try:
        async with open_transport(config.mail) as transport:
            for message in due:
                moment = now or utcnow()
                if not await store.claim(message.id, until=moment + CLAIM, now=moment):
                    done.add(message.id)
                    continue  # another paperwatch process is sending it
                error = await _deliver(store, config, transport, message, now=now)
                done.add(message.id)
                if error is None:
                    papers = f"{message.papers} paper{'' if message.papers == 1 else 's'}"
                    outcomes.append(Outcome(message.reader, True, f"sent to {message.recipient} ({papers})"))
                elif not error.temporary:
                    refused.append((message, error))  # judged once the run shows whether it is everyone
                else:
                    outcomes.append(await _failed(store, config, message, error, now=now))
    except SessionError as exc:
        waiting = [m for m in due if m.id not in done] + [m for m, _ in refused]
        return outcomes + await _hold(store, config, waiting, exc, now=now)
    if any(o.ok for o in outcomes):
        await store.set_state(MAIL_PROBLEM, "")  # mail flows again: a new refusal is news
    if len({m.recipient for m, _ in refused}) > 1 and not any(o.ok for o in outcomes):
        reply = refused[0][1].reply or str(refused[0][1])
        everyone = SessionError(f"every recipient of this run was refused, so it is about us: {reply}", reply=reply)
        return outcomes + await _hold(store, config, [m for m, _ in refused], everyone, now=now)
    return outcomes + [await _failed(store, config, m, error, now=now) for m, error in refused]


async def _deliver(store: Store, config: Config, transport: Transport, message: OutboxMessage,
                   *, now: dt.datetime | None) -> MailError | None:
    """Send one message; None once it is marked sent. A SessionError stops the whole run."""
    # The sender is the config's now, not the one at queueing: fixing `from` releases held digests.
    envelope = Envelope(sender=parse_mailbox(config.mail.from_).address, recipients=(message.recipient,),
                        message_id=message.message_id, data=message.data)
    try:
        await transport.send(envelope)
    except SessionError:
        raise
    except MailError as exc:
        return exc
    await store.mark_sent(message.id, now=now)
    # The caller reports the outcome (printed, or the daemon's log line): the id is for -vv only.
    log.debug("digest %s sent to %s", message.message_id, message.recipient)
    return None


async def _hold(store: Store, config: Config, messages: Sequence[OutboxMessage], exc: SessionError,
                *, now: dt.datetime | None) -> list[Outcome]:
    """Keep every message pending (never given up: the fix is the operator's), back off, and
    tell the operator once, with the server's own words."""
    now = now or utcnow()
    reason = exc.reply or str(exc)
    outcomes = []
    for message in messages:
        wait = min(RETRY_LONGEST, RETRY_FIRST * 2 ** message.attempts)
        if isinstance(exc, AuthError):
            wait = max(wait, AUTH_BACKOFF)
        await store.mark_retry(message.id, reason, next_attempt_at=now + wait)
        outcomes.append(Outcome(message.reader, False, f"will retry in {wait}: {reason}"))
    if isinstance(exc, AuthError):
        await store.set_state(AUTH_HOLD, f"{(now + AUTH_BACKOFF).isoformat()} {login_key(config.mail)}")
    await _tell_operator(store, config, exc, now=now)
    return outcomes


async def _auth_held(store: Store, config: Config, due: Sequence[OutboxMessage],
                     *, now: dt.datetime | None) -> list[Outcome] | None:
    """After a refused login, no new attempt for AUTH_BACKOFF unless the login settings changed."""
    until, _, key = (await store.get_state(AUTH_HOLD) or "").partition(" ")
    now = now or utcnow()
    if not until or key != login_key(config.mail) or dt.datetime.fromisoformat(until) <= now:
        return None
    for message in due:
        await store.mark_retry(message.id, message.last_error or "login refused",
                               next_attempt_at=dt.datetime.fromisoformat(until))
    log.warning("the SMTP login was refused: not trying again before %s (or until the login settings change)",
                until)
    return [Outcome(m.reader, False, f"waits for the login until {until}: {m.last_error}") for m in due]


async def _release_for_new_login(store: Store, config: Config, *, now: dt.datetime | None) -> None:
    """The login settings changed since one was refused: what waits for it is due at once."""
    until, _, key = (await store.get_state(AUTH_HOLD) or "").partition(" ")
    if not until or key == login_key(config.mail):
        return
    now = now or utcnow()
    await store.set_state(AUTH_HOLD, "")
    for message in await store.messages(status="pending", limit=1_000_000):
        if message.next_attempt_at > now:
            await store.mark_retry(message.id, message.last_error or "", next_attempt_at=now)
    log.info("the SMTP login settings changed since the server refused them: trying them now")


async def _tell_operator(store: Store, config: Config, exc: SessionError, *, now: dt.datetime) -> None:
    if await store.get_state(MAIL_PROBLEM):
        log.warning("mail still refused (the operator was told): %s", exc)
        return
    await store.set_state(MAIL_PROBLEM, now.isoformat())
    log.error("mail refused, every digest waits until this is fixed: %s", exc)
    await queue_notice(store, config, "paperwatch: mail is refused, digests are waiting",
                       "\n".join(["The mail server refused paperwatch's mail for a reason that is not about any one",
                                  "reader, so every digest waits (none is lost) and is retried with backoff:", "",
                                  f"    {exc}", "", "Check the [mail] settings (`paperwatch check --smtp` tries them).",
                                  "You will not hear of it again until mail has gone out once."]), now=now)


async def _failed(store: Store, config: Config, message: OutboxMessage, exc: MailError,
                  *, now: dt.datetime | None) -> Outcome:
    now = now or utcnow()
    reason = exc.reply or str(exc)
    age = now - message.created_at
    if not exc.temporary or age >= dt.timedelta(seconds=config.mail.give_up):
        verdict = "refused" if not exc.temporary else f"given up after {message.attempts + 1} tries"
        await store.mark_failed(message.id, f"{verdict}: {reason}", now=now)
        log.debug("digest %s to %s failed, %s: %s", message.message_id, message.recipient, verdict, reason)
        return Outcome(message.reader, False, f"failed ({verdict}): {reason}")
    wait = min(RETRY_LONGEST, RETRY_FIRST * 2 ** message.attempts)
    await store.mark_retry(message.id, reason, next_attempt_at=now + wait)
    log.debug("digest %s to %s not delivered yet (%s); retry in %s", message.message_id, message.recipient,
                reason, wait)
    return Outcome(message.reader, False, f"will retry in {wait}: {reason}")


async def queue_notice(store: Store, config: Config, subject: str, text: str,
                       *, now: dt.datetime | None = None) -> None:
    """A plain note to the operator (``paperwatch.admin``), through the outbox like any digest."""
    admin = config.paperwatch.admin
    if admin is None:
        return
    now = now or utcnow()
    message_id = make_message_id("operator", now.isoformat(), domain=message_domain(config.mail.from_))
    sender, to = parse_mailbox(config.mail.from_), parse_mailbox(admin)
    data = build_notice(subject, text, sender=sender.header(), to=to.header(), message_id=message_id, date=now,
                        utf8=sender.needs_smtputf8 or to.needs_smtputf8)
    await store.queue_digest(reader=OPERATOR, recipient=to.address, sender=sender.address, message_id=message_id,
                             data=data, papers=[], now=now)


def write_preview(directory: Path, composed: Composed) -> list[Path]:
    """``NAME.html``, ``NAME.txt`` and ``NAME.eml`` of a composed digest, for ``digest --preview``."""
    directory.mkdir(parents=True, exist_ok=True)
    name = preview_name(composed.reader.name)
    files = {f"{name}.html": composed.rendered.html.encode(), f"{name}.txt": composed.rendered.text.encode(),
             f"{name}.eml": composed.message}
    for file, data in files.items():
        (directory / file).write_bytes(data)
    return [directory / file for file in files]


_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def preview_name(reader: str) -> str:
    """A file name for the reader's preview: the name itself when it is a plain one, else a slug of
    it and a short hash of the whole name. Never a path (no ``/``, no ``..``, no NUL), never long,
    the same on every run, and distinct for distinct names (case aside: the config refuses those)."""
    if _FILE_NAME.fullmatch(reader) and not reader.endswith((".html", ".txt", ".eml")):
        return reader
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", reader).strip("._-")[:48]
    digest = hashlib.sha256(reader.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug}-{digest}" if slug else f"reader-{digest}"


def _address(header: str) -> str:
    return parse_mailbox(header).address

