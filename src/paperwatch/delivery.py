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
import email.policy
import email.utils
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path

from paperwatch.config import Config, Reader, located
from paperwatch.digest import (
    DigestInfo,
    DigestItem,
    Highlight,
    Rendered,
    Templates,
    build_message,
    make_message_id,
    message_domain,
)
from paperwatch.errors import ConfigError, MailError, TemplateError
from paperwatch.mail import Envelope, Transport, open_transport, unsafe_config_file
from paperwatch.match import Hit, Match, Matcher, RuleSpec
from paperwatch.models import Paper
from paperwatch.store import OutboxMessage, QueuedPaper, SearchHit, Store, utcnow

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


class MatchMemo:
    """Each paper matched once for every reader: one run composes many readers' digests of
    mostly the same fresh papers. Lives for one run; a paper whose text changed is matched again."""

    __slots__ = ("_found", "_matcher")

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher
        self._found: dict[str, tuple[Paper, dict[str, Match]]] = {}

    def match(self, paper: Paper, reader: str) -> Match | None:
        known = self._found.get(paper.id)
        if known is None or (known[0] is not paper and known[0] != paper):
            known = self._found[paper.id] = (paper, {m.reader: m for m in self._matcher.match(paper)})
        return known[1].get(reader)


def rule_specs(readers: Iterable[Reader]) -> list[RuleSpec]:
    """The config's rules as the matcher takes them."""
    return [
        RuleSpec(reader=reader.name, name=rule.name, keywords=rule.keywords, all=rule.all, exclude=rule.exclude,
                 authors=rule.authors, organizations=rule.organizations, fields=rule.fields, query=rule.query,
                 min_upvotes=rule.min_upvotes)
        for reader in readers for rule in reader.rules
    ]


def compile_rules(config: Config) -> Matcher:
    """Every reader's rules compiled; a ConfigError names each mistake with its file line."""
    try:
        return Matcher.compile(rule_specs(config.readers))
    except ConfigError as exc:
        raise ConfigError([_locate(config, problem) for problem in exc.problems]) from None


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


def _locate(config: Config, problem: str) -> str:
    for r, reader in enumerate(config.readers):
        for n, rule in enumerate(reader.rules):
            prefix = f"readers.{reader.name}.rules.{rule.name}"
            if problem.startswith(prefix + ".") or problem.startswith(prefix + ":"):
                key = problem[len(prefix) + 1:].partition(":")[0].partition("[")[0]
                return located(config, ("readers", r, "rules", n, *([key] if key else [])), problem)
    return located(config, (), problem)


async def compose(store: Store, config: Config, matcher: Matcher, templates: Templates, reader: Reader,
                  *, since: dt.date | None = None, now: dt.datetime | None = None,
                  preview: bool = False, memo: MatchMemo | None = None) -> Composed | None:
    """Render the reader's digest of every matched paper they never received; None when
    there is nothing to send (and the reader did not ask for empty notes)."""
    now = now or utcnow()
    state = await store.reader_state(reader.name, now=now, record=False)
    # Only a reader not stored yet is written: a write per reader per digest was a transaction
    # (and a sync to disk) that changed nothing.
    if not preview and state.last_digest_at is None and state.started_at == now:
        state = await store.reader_state(reader.name, now=now, record=True)
    lookback = dt.timedelta(days=config.source.lookback_days)
    # A new reader starts with what the polls find, never with the history a backfill stored.
    window = since or state.started_at.date() - lookback
    # Later digests match again only what can be news since the last one: papers stored since
    # then, or featured on the days the polls still re-fetch (a rule edit reaches back that far;
    # `digest --since` reaches further). So a digest costs the same after a year as on day one.
    fresh = None
    if since is None and state.last_digest_at is not None:
        fresh = (state.last_digest_at - FRESH_MARGIN, state.last_digest_at.date() - lookback)
    papers = await store.undelivered(reader.name, featured_since=window, fresh=fresh)
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
    days, seen = await store.featured_between(start, end)
    info = DigestInfo(reader=reader.name, email=reader.email, days=days, papers_seen=seen,
                      period_start=start, period_end=end)
    rendered = templates.render(info, items)
    kept = items[: len(items) - rendered.omitted]  # the rest stay pending, for the next digest
    domain = message_domain(config.mail.from_)
    message_id = make_message_id(reader.name, now.isoformat(), domain=domain)
    message = build_message(
        rendered, sender=config.mail.from_, to=reader.email, message_id=message_id, date=now,
        list_id=list_id(reader.name, domain), unsubscribe=config.paperwatch.admin or _address(config.mail.from_),
    )
    return Composed(reader, rendered, message, message_id, tuple(kept))


def list_id(reader: str, domain: str) -> str:
    """``paperwatch digest for NAME <LABEL.digest.DOMAIN>``: LABEL is the name when it is one word
    (letters, digits, ``-``, ``_``), else a slug of it and a short hash, so that no two readers share one."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", reader):
        label = reader
    else:
        label = re.sub(r"[^a-z0-9]+", "-", reader.lower()).strip("-")[:40].strip("-") or "reader"
        label += "-" + hashlib.sha256(reader.encode()).hexdigest()[:8]
    name = re.sub(r'[<>"\\()]', "", reader)  # the phrase must not look like the id or a comment
    return f"paperwatch digest for {name} <{label}.digest.{domain}>"


def digest_items(reader: Reader, papers: Sequence[Paper], matcher: Matcher,
                 hits: Sequence[SearchHit] = (), *, memo: MatchMemo | None = None) -> tuple[DigestItem, ...]:
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
    rules = tuple(sorted(match.rules, key=lambda name: order.get(name, len(order))))
    highlights = tuple(dict.fromkeys(Highlight(hit.field, hit.text) for hit in match.why))
    return DigestItem(paper=paper, rules=rules, highlights=highlights, why=_why(match.why, rules))


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
    memo = MatchMemo(matcher) if len(readers) > 1 else None
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
    """Send every due message in the outbox over one connection; record what happened."""
    due = await store.due_messages(now=now, reader=reader)
    if not due:
        return []
    outcomes = []
    try:
        async with open_transport(config.mail) as transport:
            for message in due:
                moment = now or utcnow()
                if not await store.claim(message.id, until=moment + CLAIM, now=moment):
                    continue  # another paperwatch process is sending it
                outcomes.append(await _deliver(store, config, transport, message, now=now))
    except MailError as exc:  # the transport could not even be opened: every message waits
        for message in due[len(outcomes):]:
            outcomes.append(await _failed(store, config, message, exc, now=now))
    return outcomes


async def _deliver(store: Store, config: Config, transport: Transport, message: OutboxMessage,
                   *, now: dt.datetime | None) -> Outcome:
    envelope = Envelope(sender=message.sender, recipients=(message.recipient,), message_id=message.message_id,
                        data=message.data)
    try:
        await transport.send(envelope)
    except MailError as exc:
        return await _failed(store, config, message, exc, now=now)
    await store.mark_sent(message.id, now=now)
    log.info("digest %s sent to %s (%d papers)", message.message_id, message.recipient, message.papers)
    return Outcome(message.reader, True, f"sent to {message.recipient} ({message.papers} papers)")


async def _failed(store: Store, config: Config, message: OutboxMessage, exc: MailError,
                  *, now: dt.datetime | None) -> Outcome:
    now = now or utcnow()
    reason = exc.reply or str(exc)
    age = now - message.created_at
    if not exc.temporary or age >= dt.timedelta(seconds=config.mail.give_up):
        verdict = "refused" if not exc.temporary else f"given up after {message.attempts + 1} tries"
        await store.mark_failed(message.id, f"{verdict}: {reason}", now=now)
        log.error("digest %s to %s failed, %s: %s", message.message_id, message.recipient, verdict, reason)
        return Outcome(message.reader, False, f"failed ({verdict}): {reason}")
    wait = min(RETRY_LONGEST, RETRY_FIRST * 2 ** message.attempts)
    await store.mark_retry(message.id, reason, next_attempt_at=now + wait)
    log.warning("digest %s to %s not delivered yet (%s); retry in %s", message.message_id, message.recipient,
                reason, wait)
    return Outcome(message.reader, False, f"will retry in {wait}: {reason}")


async def queue_notice(store: Store, config: Config, subject: str, text: str,
                       *, now: dt.datetime | None = None) -> None:
    """A plain note to the operator (``paperwatch.admin``), through the outbox like any digest."""
    admin = config.paperwatch.admin
    if admin is None:
        return
    now = now or utcnow()
    message = EmailMessage(policy=email.policy.SMTP)
    message_id = make_message_id("operator", now.isoformat(), domain=message_domain(config.mail.from_))
    message["From"], message["To"], message["Subject"] = config.mail.from_, admin, subject
    message["Date"], message["Message-ID"] = email.utils.format_datetime(now), message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    await store.queue_digest(reader=OPERATOR, recipient=_address(admin), sender=_address(config.mail.from_),
                             message_id=message_id, data=bytes(message), papers=[], now=now)


def write_preview(directory: Path, composed: Composed) -> list[Path]:
    """``NAME.html``, ``NAME.txt`` and ``NAME.eml`` of a composed digest, for ``digest --preview``."""
    directory.mkdir(parents=True, exist_ok=True)
    name = composed.reader.name
    files = {f"{name}.html": composed.rendered.html.encode(), f"{name}.txt": composed.rendered.text.encode(),
             f"{name}.eml": composed.message}
    for file, data in files.items():
        (directory / file).write_bytes(data)
    return [directory / file for file in files]


def _address(header: str) -> str:
    return email.utils.parseaddr(header)[1] or header

