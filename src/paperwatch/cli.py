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
import re
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from paperwatch import __version__, collector
from paperwatch.config import Config, Reader, find_config_file, load_config
from paperwatch.errors import ConfigError, PaperwatchError
from paperwatch.fetch import Fetcher
from paperwatch.models import Paper
from paperwatch.pipeline import (
    DayReport,
    day_range,
    fetch_days,
    is_settled,
    recent_days,
    today_utc,
)
from paperwatch.store import Store, sqlite_cause
from paperwatch.words import plural

# Matching, digests, mail and the daemon are imported by the commands that use them: a
# backfill or a listing does not pay for jinja2, the matcher's engines or the scheduler.
# (`paperwatch run` imports them all at start, before its first poll or digest.)
if TYPE_CHECKING:
    from paperwatch.match import Match, Matcher

log = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    # Text from the site (an error page, a title) reaches the terminal and the log only as text.
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Printable(sys.stdout), Printable(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


class Printable:
    """A text stream that writes control and escape characters as ``\\x1b``-style escapes:
    nothing printed or logged can move the cursor, set a terminal's title or ring its bell."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        # A write of ours may start with \r (the progress bar redrawing its line); nothing else may.
        start = "\r" if text.startswith("\r") else ""
        self._stream.write(start + _UNPRINTABLE.sub(_escaped, text[len(start):]))
        return len(text)

    def write_json(self, text: str) -> int:
        """``write`` for JSON text, which holds no C0 control character (the encoder escapes
        them): when it is all ASCII without DEL, as almost all is, nothing needs escaping, and
        ``match --json`` writes a hundred megabytes without a pass over each character."""
        if text.isascii() and "\x7f" not in text:
            return self._stream.write(text)
        return self.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# C0 but tab and newline, DEL, C1 (CSI is \x9b), and the bidi controls that reorder a line.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(found: re.Match[str]) -> str:
    return repr(found.group())[1:-1] if ord(found.group()) < 0x100 else f"\\u{ord(found.group()):04x}"


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The daemon's log is its record (poll summaries, digests sent, failures): INFO by default.
    _configure_logging(args.verbose + (args.command is _run and not args.once))
    try:
        if args.command in (_check, _init):
            local: Callable[[argparse.Namespace], int] = args.command
            return local(args)
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
    except sqlite3.DatabaseError as exc:  # damage Store.open cannot see: met in the middle of the file
        log.debug("details", exc_info=True)
        print(f"paperwatch: {config.database}: {sqlite_cause(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("paperwatch: interrupted; every day finished so far is stored", file=sys.stderr)
        return 130


class UsageError(PaperwatchError):
    """A command asked for something that does not exist (an unknown reader): exit 2, as argparse does."""

    exit_code = 2


EPILOG = """\
config: the first of -c FILE, $PAPERWATCH_CONFIG, ./paperwatch.toml,
$XDG_CONFIG_HOME/paperwatch/paperwatch.toml (~/.config/...), /etc/paperwatch/paperwatch.toml;
with none, the embedded defaults (no reader: `paperwatch init` writes a starter config).
Dates are YYYY-MM-DD (UTC days, as the site buckets them).
exit codes: 0 success, 1 a runtime failure, 2 usage error, 78 config error."""


def _common() -> argparse.ArgumentParser:
    """-c and -v, accepted after the command too; SUPPRESS keeps a subcommand from resetting them."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                        help="the config file to use (default: the search order below)")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="say more: each request and where each day was read from (-vv: debug)")
    return common


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="paperwatch", description="Watch Hugging Face Daily Papers.",
                                     epilog=EPILOG, formatter_class=fmt, parents=[_common()])
    parser.set_defaults(config=None, verbose=0)
    parser.add_argument("--version", action="version", version=f"paperwatch {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, parents=[_common()],
                                   epilog=EPILOG, formatter_class=fmt)

    for add in (_setup_commands, _fetch_commands, _reading_commands, _mail_commands):
        add(command)
    return parser


_Adder = Callable[[str, str], argparse.ArgumentParser]  # adds a subcommand: name, help text


def _setup_commands(command: _Adder) -> None:
    """init and check: writing and validating the config."""
    check = command("check", "validate the config, every rule, the templates and the password; print a summary")
    check.add_argument("--credentials", type=Path, metavar="DIR",
                       help="read the systemd credential smtp-password from DIR (default: $CREDENTIALS_DIRECTORY)")
    check.add_argument("--smtp", action="store_true",
                       help="also connect to the SMTP server, negotiate TLS and log in, then quit without sending")
    check.set_defaults(command=_check)

    init = command("init", "write a starter config for one reader where paperwatch will find it, then check it")
    init.add_argument("--email", metavar="ADDRESS", help="the reader's address (asked for on a terminal)")
    init.add_argument("--keywords", metavar="WORDS",
                      help='comma-separated words and phrases to watch for, e.g. "grokking, linear attention"')
    init.add_argument("--name", metavar="NAME", help="the reader's name (default: the address before the @)")
    init.add_argument("--timezone", metavar="ZONE", help="when the 08:00 digest goes out (default: UTC)")
    init.set_defaults(command=_init)


def _fetch_commands(command: _Adder) -> None:
    """fetch and backfill: reading the site into the store."""
    fetch = command("fetch", "fetch and store days (default: the last lookback_days days, UTC, today included)")
    fetch.add_argument("dates", nargs="*", type=_date, metavar="DATE", help="days as YYYY-MM-DD")
    fetch.set_defaults(command=_fetch)

    backfill = command("backfill", "fetch and store every day in a range, resumably")
    backfill.add_argument("--since", type=_date, required=True, metavar="DATE", help="first day, YYYY-MM-DD")
    backfill.add_argument("--until", type=_date, metavar="DATE", help="last day, YYYY-MM-DD (default: today, UTC)")
    backfill.set_defaults(command=_backfill)


def _reading_commands(command: _Adder) -> None:
    """papers and match: what is stored, and what each reader's rules make of it."""
    papers = command("papers", "list stored papers, newest first")
    papers.add_argument("--date", type=_date, metavar="DATE", help="featured on that day (YYYY-MM-DD)")
    papers.add_argument("--since", type=_date, metavar="DATE", help="featured on that day (YYYY-MM-DD) or later")
    papers.add_argument("--search", metavar="TEXT", help="full text over title, abstract and authors")
    papers.add_argument("--limit", type=_count_arg, metavar="N", default=PAPERS_SHOWN,
                        help=f"at most N papers (default: {PAPERS_SHOWN}; 0: all)")
    papers.add_argument("--json", action="store_true", help="print a JSON array")
    papers.set_defaults(command=_papers)

    match = command("match", "dry run: which stored papers each reader's rules match, and why")
    match.add_argument("--reader", metavar="NAME", help="only this reader (default: every reader)")
    match.add_argument("--since", type=_date, metavar="DATE",
                       help="papers featured on that day (YYYY-MM-DD) or later (default: every stored paper)")
    match.add_argument("--json", action="store_true", help="print a JSON array, one object per reader and paper")
    match.set_defaults(command=_match)


def _mail_commands(command: _Adder) -> None:
    """digest, run and status: delivering, the daemon, and how it all went."""
    digest = command("digest", "deliver each reader's pending digest now")
    digest.add_argument("--reader", metavar="NAME", help="only this reader (default: every reader)")
    digest.add_argument("--since", type=_date, metavar="DATE",
                        help="also the stored papers featured from DATE (YYYY-MM-DD) on that the reader never received")
    digest.add_argument("--preview", type=Path, metavar="DIR",
                        help="write NAME.html, NAME.txt and NAME.eml there instead of sending; changes nothing")
    digest.set_defaults(command=_digest)

    run = command("run", "the daemon: poll, match and deliver on schedule until stopped")
    run.add_argument("--once", action="store_true",
                     help="one full cycle now, ignoring schedules: fetch, match, deliver, then exit")
    run.set_defaults(command=_run)

    status = command("status", "what has been fetched and delivered, and how it went")
    status.add_argument("--json", action="store_true", help="print a JSON object")
    status.add_argument("--check", action="store_true",
                        help="for monitoring: exit 1 when polls are stale or failing or deliveries are failing")
    status.set_defaults(command=_status)


PAPERS_SHOWN = 20


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


def _count_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0: no limit)")
    return int(text)


def _readers(config: Config, name: str | None) -> tuple[Reader, ...]:
    if name is None:
        return config.readers
    chosen = tuple(r for r in config.readers if r.name == name)
    if not chosen:
        known = ", ".join(r.name for r in config.readers) or "none configured"
        raise UsageError(f"no reader named {name!r} (readers: {known})")
    return chosen


def _check(args: argparse.Namespace) -> int:
    """Every mistake and warning in one pass, then (if there is no mistake) a summary."""
    from paperwatch.check import inspect_config
    from paperwatch.mail import mail_warnings, probe, utf8_addresses

    path = find_config_file(args.config)
    found = inspect_config(path, credentials=args.credentials)
    for line in found.errors + found.warnings:
        print(line, file=sys.stderr)
    if found.errors or found.warnings:
        print(f"{path or 'defaults'}: {plural(len(found.errors), 'problem')}, "
              f"{plural(len(found.warnings), 'warning')}", file=sys.stderr)
    if found.config is None:
        return ConfigError.exit_code
    for warning in mail_warnings(found.config):
        print(f"warning: {warning}", file=sys.stderr)
    _summary(found.config)
    if args.smtp:
        for step in asyncio.run(probe(found.config.mail, smtputf8=utf8_addresses(found.config))):
            print(f"  {step}")
    return 0


def _summary(config: Config) -> None:
    from paperwatch.mail import describe

    where = config.path or "no config file: embedded defaults"
    rules = sum(len(r.rules) for r in config.readers)
    print(f"config: {where}")
    print(f"database: {config.database}")
    print(f"source: {config.source.base_url}, poll {config.source.poll}, "
          f"lookback {plural(config.source.lookback_days, 'day')}")
    print(f"readers: {len(config.readers)}, rules: {rules}")
    for reader in config.readers:
        searches = f", {plural(len(reader.searches), 'saved search', 'saved searches')}" if reader.searches else ""
        zone = reader.timezone or config.paperwatch.timezone
        print(f"  {reader.name} <{reader.email}>: {plural(len(reader.rules), 'rule')}{searches}, "
              f"schedule {reader.schedule!r} ({zone})")
    if not config.readers:
        print(NO_READER)
    print(f"mail: {describe(config.mail)}")


NO_READER = ("no reader is configured, so nothing will be mailed: "
             "`paperwatch init` writes a starter config for one")


def _say_if_no_reader(config: Config) -> None:
    if not config.readers:
        where = f" in {config.path}" if config.path else " (no config file found)"
        print(f"paperwatch: no reader is configured{where}, so nothing will be mailed: "
              "`paperwatch init` writes a starter config for one", file=sys.stderr, flush=True)


def _init(args: argparse.Namespace) -> int:
    """Write a starter config for one reader where the lookup order finds it; never overwrite one."""
    target = args.config or (Path(os.environ["PAPERWATCH_CONFIG"]) if os.environ.get("PAPERWATCH_CONFIG")
                             else user_config_path())
    if target.exists():
        print(f"paperwatch: {target} exists: not overwriting it (edit it, or give another file with -c)",
              file=sys.stderr)
        return 1
    email = args.email or _ask("Your e-mail address: ")
    if not email:
        raise UsageError("init needs the reader's address: give --email ADDRESS")
    keywords = args.keywords if args.keywords is not None else _ask(
        "Words or phrases to watch for, separated by commas (e.g. grokking, linear attention): ")
    words = [w.strip() for w in (keywords or "").split(",") if w.strip()]
    name = args.name or email.rsplit("<", 1)[-1].split("@")[0].strip() or "me"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("x", encoding="utf-8") as out:  # "x": never clobber a file made meanwhile
        out.write(starter_config(name, email, words, args.timezone or "UTC"))
    print(f"wrote {target}; checking it:")
    found = find_config_file(None) if not args.config else target
    if found is not None and found.resolve() != target.resolve():
        print(f"note: {found} comes first in the lookup order and will be read instead", file=sys.stderr)
    args.config, args.credentials, args.smtp = target, None, False
    return _check(args)


def user_config_path() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "paperwatch" / "paperwatch.toml"


def _ask(prompt: str) -> str | None:
    if not sys.stdin.isatty():
        return None
    try:
        return input(prompt).strip() or None
    except EOFError:
        return None


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def starter_config(name: str, email: str, words: list[str], timezone: str) -> str:
    keywords = ", ".join(_toml(w) for w in words) or _toml("grokking")
    return f"""\
# paperwatch: one reader, one rule. Every key and its default: config.example.toml in the
# source; check this file with `paperwatch check` after each edit.

[paperwatch]
timezone = {_toml(timezone)}   # the zone reader schedules are read in unless they name their own

[source]
poll = "30m"          # fetch the recent days this often (or a 5-field cron expression)
lookback_days = 3     # each poll re-fetches today and the 2 days before (UTC): days keep growing

[mail]
# With no [mail.smtp], digests are written to a local Maildir beside the database.
# To send them, uncomment and fill in (the password never goes in this file):
# [mail.smtp]
# host = "smtp.example.org"
# username = "you@example.org"
# password_file = "smtp-password"   # beside this file, chmod 600; or password_env = "VAR"

[[readers]]
name = {_toml(name)}
email = {_toml(email)}
schedule = "0 8 * * *"   # daily at 08:00 (cron), in the zone above
send_empty = false       # true: a short note even when nothing matched

[[readers.rules]]
name = "keywords"
keywords = [{keywords}]   # any of these, whole words, case and plurals aside
# exclude = ["survey"]     # and none of these
# authors = ["Yann LeCun"] # or any paper by these authors
"""


async def _fetch(args: argparse.Namespace, config: Config) -> int:
    failed = await _fetch_and_report(config, sorted(set(args.dates)) or recent_days(config.source.lookback_days))
    return 1 if failed else 0


async def _run(args: argparse.Namespace, config: Config) -> int:
    from paperwatch.runtime import Loaded, Runtime

    _say_if_no_reader(config)
    if not args.once:
        from paperwatch.daemon import serve  # with the scheduler: 0.1 s of imports --once does without

        return await serve(config)
    # The daemon's own operations, once: the days missed since the last poll are fetched too,
    # old records pruned, and the operator told if the source keeps failing.
    with collector.kept():  # the config and all it compiled to, until the process ends
        loaded = Loaded.of(config)
    async with Runtime.open(loaded) as runtime:
        await runtime.record_readers()
        polled = await runtime.poll()
        for line in [r.line() for r in polled.days] + [r.line() for r in polled.searches]:
            print(line)
        outcomes = await runtime.queue(config.readers)
        outcomes += await runtime.deliver()
    for outcome in outcomes:
        print(f"{outcome.reader}: {outcome.text}")
    return 1 if polled.failed or not all(o.ok for o in outcomes) else 0


async def _match(args: argparse.Namespace, config: Config) -> int:
    chosen = _readers(config, args.reader)
    if args.json and not any(r.searches for r in chosen):  # nothing to fold in: straight to JSON
        # What compiling, loading and matching make lives until the process ends: the collector
        # would only walk it again and again (0.2 s of 8 for 200 readers over 10,000 papers).
        with collector.paused():
            return await _match_json(args, config, chosen)
    return await _match_all(args, config, chosen)


def _matcher(config: Config, chosen: Sequence[Reader], reader: str | None) -> Matcher:
    from paperwatch.match import Matcher
    from paperwatch.ruleset import compile_rules, rule_specs

    matcher = compile_rules(config)  # every reader's rules checked; the templates are no concern here
    # Only that reader's terms to look for in every paper.
    return matcher if reader is None else Matcher.compile(rule_specs(chosen))


async def _match_json(args: argparse.Namespace, config: Config, chosen: Sequence[Reader]) -> int:
    matcher = _matcher(config, chosen, args.reader)
    async with await Store.open(config.database) as store:
        papers = await store.papers(since=args.since)
    encoded = matcher.encoded(papers, {r.name for r in chosen})
    _write_encoded_array((line for r in chosen for line in encoded.get(r.name, ())),
                         getattr(sys.stdout, "write_json", sys.stdout.write))
    return 0


async def _match_all(args: argparse.Namespace, config: Config, chosen: Sequence[Reader]) -> int:
    matcher = _matcher(config, chosen, args.reader)
    readers = {r.name for r in chosen}
    async with await Store.open(config.database) as store:
        papers = await store.papers(since=args.since)
        matches = [m for m in matcher.match_all(papers) if m.reader in readers]
        matches, found = await _with_search_hits(store, config, matches, readers, args.since)
        ran = {state.query for state in await store.search_states() if state.ok_at is not None}
    papers += found
    titles = {p.id: p.title for p in papers}
    if args.json:
        _write_json_array(({**m.as_json(), "title": titles.get(m.paper_id)} for m in matches), sys.stdout)
        return 0
    for reader in chosen:
        _print_matches(reader, [m for m in matches if m.reader == reader.name], titles)
    since = f"since {args.since}" if args.since else f"among the {plural(len(papers), 'stored paper')}"
    print()
    for reader in chosen:
        for line in _match_counts(reader, matches, since, ran, args.since):
            print(line)
    return 0


def _print_matches(reader: Reader, matches: list[Match], titles: dict[str, str]) -> None:
    from paperwatch.delivery import SEARCH

    print(f"{reader.name} <{reader.email}>: {plural(len(matches), 'paper')}")
    for m in matches:
        print(f"  {m.paper_id}  {titles[m.paper_id]}")
        for hit in m.why:
            where = hit.text if hit.field == SEARCH else \
                f"“{hit.term.strip(chr(34))}” in the {hit.field.replace('_', ' ')}: {hit.text}"
            print(f"      {hit.rule}: {where}")


def _match_counts(reader: Reader, matches: list[Match], since: str, ran: set[str],
                  after: dt.date | None) -> list[str]:
    lines = []
    for rule in reader.rules:
        count = sum(1 for m in matches if m.reader == reader.name and rule.name in m.rules)
        lines.append(f"{reader.name} / {rule.name}: would have matched {plural(count, 'paper')} {since}")
    for search in reader.searches:
        if search.query not in ran:
            lines.append(f"{reader.name} / {search.name}: the search {search.query!r} has not run yet "
                         "(a fetch or a poll runs it)")
            continue
        count = sum(1 for m in matches if m.reader == reader.name and search.name in m.rules)
        when = f"since {after}" if after else "since it was saved"
        lines.append(f"{reader.name} / {search.name}: the search {search.query!r} found "
                     f"{plural(count, 'new paper')} {when}")
    return lines


def _write_json_array(items: Iterable[object], out: TextIO) -> None:
    """A JSON array, one object a line, written as it is encoded: the C encoder (no indent)
    and one write per thousand objects instead of millions of small ones."""
    _write_encoded_array(map(json.JSONEncoder(ensure_ascii=False).encode, items), out.write)


def _write_encoded_array(lines: Iterable[str], write: Callable[[str], object]) -> None:
    """``_write_json_array`` of objects already encoded, one a line."""
    start, chunk = "[", []
    for line in lines:
        chunk.append(line)
        if len(chunk) == 1000:
            write(start + "\n" + ",\n".join(chunk))
            start, chunk = ",", []
    if chunk:
        write(start + "\n" + ",\n".join(chunk))
        start = ","
    write("[]\n" if start == "[" else "\n]\n")


async def _with_search_hits(store: Store, config: Config, matches: list[Match], readers: set[str],
                            since: dt.date | None) -> tuple[list[Match], list[Paper]]:
    """The matches with each reader's saved-search results folded in (a paper once per reader),
    and the papers only a search found."""
    from paperwatch.delivery import with_search_hits

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
    from paperwatch.delivery import compose, deliver_due, prepare, queue_digests, write_preview

    _say_if_no_reader(config)
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
    print(f"backfill {args.since} .. {until}: {plural(len(days), 'day')}, {len(days) - len(todo)} already "
          f"complete, {len(todo)} to fetch; {_estimate(len(todo), config)}", flush=True)
    progress = Progress(len(todo), sys.stdout)
    reports = await _fetch_and_store(config, todo, on_day=progress.step)
    progress.finish()
    failed = [r for r in reports if r.failed]
    stored = sum(r.papers for r in reports)
    print(f"backfill done: {plural(len(reports) - len(failed), 'day')} stored ({plural(stored, 'paper')}, "
          f"{sum(r.new for r in reports)} new), {len(failed)} failed", flush=True)
    for report in failed:
        print(report.line(), file=sys.stderr)
    return 1 if failed else 0


def _estimate(days: int, config: Config) -> str:
    """How long ``days`` take at the configured pace: a day is one page request when all goes well."""
    seconds = max(round(days * 60 / config.source.requests_per_minute), 1 if days else 0)
    if seconds < 90:
        took = plural(seconds, "second")
    elif seconds < 5400:
        took = plural(round(seconds / 60), "minute")
    else:
        took = f"{seconds / 3600:.1f} hours"
    return f"about {took} at {config.source.requests_per_minute:g} requests a minute (source.requests_per_minute)"


async def _fetch_and_store(config: Config, days: list[dt.date],
                           *, on_day: Callable[[DayReport], None] | None = None) -> list[DayReport]:
    async with await Store.open(config.database) as store, Fetcher(config.source) as fetcher:
        return await fetch_days(fetcher, store, config.source.base_url, days, on_day=on_day)


async def _papers(args: argparse.Namespace, config: Config) -> int:
    async with await Store.open(config.database) as store:
        papers = await store.papers(date=args.date, since=args.since, search=args.search,
                                    limit=args.limit or None)
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
    elif len(papers) == args.limit:
        print(f"(the newest {args.limit}; --limit N for more, --limit 0 for all)", file=sys.stderr)
    return 0


async def _status(args: argparse.Namespace, config: Config) -> int:
    from paperwatch.status import status_report

    async with await Store.open(config.database) as store:
        report = await status_report(store, config)
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=2)
        print()
    else:
        print("\n".join(report.lines()))
    if not args.check:
        return 0
    for problem in report.problems():
        print(f"paperwatch: {problem}", file=sys.stderr)
    return 1 if report.problems() else 0


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
