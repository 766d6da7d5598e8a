"""A new user's first hour: init, check, fetch, match, digest, status, as the commands say them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_config
from fakehf import FakeHF
from paperwatch.cli import main
from paperwatch.config import load_config
from paperwatch.delivery import compose, prepare
from paperwatch.fetch import Fetcher
from paperwatch.pipeline import fetch_days
from paperwatch.runtime import LAST_POLL_AT
from paperwatch.store import Store
from support import paperwatch

DAYS = [dt.date(2025, 3, 5), dt.date(2025, 3, 6), dt.date(2025, 3, 7)]


@pytest.fixture(autouse=True)
def own_logging() -> Iterator[None]:
    """main() configures logging for the process: give later tests theirs back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("aiosqlite", "asyncio")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("PAPERWATCH_CONFIG", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / ".local" / "share"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_init_writes_a_checked_starter_config_where_lookup_finds_it(home: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--email", "ann@example.org", "--keywords", "grokking, linear attention",
                 "--timezone", "Europe/Berlin"]) == 0
    path = home / ".config" / "paperwatch" / "paperwatch.toml"
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {path}; checking it:\n") and "ann <ann@example.org>: 1 rule" in out
    (reader,) = load_config(path).readers
    assert (reader.name, reader.email, reader.timezone) == ("ann", "ann@example.org", None)
    assert reader.rules[0].keywords == ("grokking", "linear attention")
    before = path.read_text()
    assert main(["init", "--email", "bob@example.org"]) == 1
    assert "exists: not overwriting it" in capsys.readouterr().err and path.read_text() == before


def test_init_without_an_address_off_a_terminal_is_a_usage_error(home: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 2
    assert "give --email ADDRESS" in capsys.readouterr().err
    assert not (home / ".config" / "paperwatch" / "paperwatch.toml").exists()


def test_digest_says_first_that_no_reader_is_configured(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["digest"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert "no reader is configured" in first and "nothing will be mailed" in first and "paperwatch init" in first


def test_global_options_work_after_the_command(home: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[source]\nlookback_days = 1\n')
    assert main(["check", "-c", str(path), "-v"]) == 0
    out = capsys.readouterr().out
    assert f"config: {path}" in out and "lookback 1 day\n" in out and "no reader is configured" in out


def test_check_exits_78_with_a_count_and_0_with_only_warnings(home: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[[readers]]\nname = "a"\nemail = "a@example"\nsend_empty = "no"\n')
    assert main(["-c", str(path), "check"]) == 78
    assert capsys.readouterr().err.splitlines()[-1] == f"{path}: 1 problem, 2 warnings"
    path.write_text('[[readers]]\nname = "a"\nemail = "a@example"\n[[readers.rules]]\nname = "r"\nkeywords = ["x"]\n')
    assert main(["-c", str(path), "check"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == f"{path}: 0 problems, 1 warning"


def test_help_gives_the_search_order_formats_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "$PAPERWATCH_CONFIG, ./paperwatch.toml" in top and "78 config error" in top
    with pytest.raises(SystemExit):
        main(["papers", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 20; 0: all" in text and "YYYY-MM-DD" in text


READERS = """
[[readers]]
name = "alice"
email = "alice@example.org"
timezone = "Europe/Berlin"
send_empty = true
[[readers.rules]]
name = "one"
keywords = ["grokking"]
[[readers.searches]]
name = "never run"
query = "nothing here"

[[readers]]
name = "bob"
email = "bob@example.org"
[[readers.rules]]
name = "all"
keywords = ["model*"]
"""


def serve(fake_hf: FakeHF) -> None:
    for day in DAYS:
        fake_hf.days[day] = [FakeHF.make_item(day, n) for n in range(9)]
    fake_hf.days[DAYS[0]][0] = FakeHF.make_item(DAYS[0], 0, id="2503.00001", title="Grokking Explained")


@pytest.mark.e2e
@pytest.mark.slow
async def test_match_status_papers_and_backfill_read_true(tmp_path: Path, fake_hf: FakeHF) -> None:
    serve(fake_hf)
    path = write_config(tmp_path / "pw.toml", fake_hf.base_url)
    path.write_text(path.read_text() + READERS)
    code, out, err = await paperwatch("fetch", *map(str, DAYS), "-c", str(path), "-v")
    assert code == 0, err
    assert "2025-03-05: 9 papers, 9 new" in out
    assert re.search(r"GET \S+/papers/date/2025-03-05: 200", err), err
    assert re.search(r"2025-03-05: read from the page's JSON", err), err

    # a cards-only page: the day's line says so, and nothing in another format comes with it
    fake_hf.page_mode[DAYS[1]] = "cards"
    code, out, err = await paperwatch("-c", str(path), "fetch", str(DAYS[1]))
    assert (code, err) == (0, "") and out == "2025-03-06: 9 papers, 0 new (read from the cards)\n"

    code, out, err = await paperwatch("-c", str(path), "match")
    assert code == 0, err
    alice, bob = out.index("alice <alice@example.org>: 1 paper\n"), out.index("bob <bob@example.org>: ")
    assert alice < out.index("2503.00001  Grokking Explained") < bob
    assert "alice / one: would have matched 1 paper among the 27 stored papers" in out
    assert "alice / never run: the search 'nothing here' has not run yet" in out
    code, out, err = await paperwatch("-c", str(path), "match", "--json", "--reader", "alice")
    assert code == 0 and json.loads(out)[0]["title"] == "Grokking Explained"
    code, out, err = await paperwatch("-c", str(path), "match", "--reader", "carol")
    assert code == 2 and "no reader named 'carol' (readers: alice, bob)" in err

    code, out, err = await paperwatch("-c", str(path), "papers")
    assert code == 0 and len([line for line in out.splitlines() if line.startswith("2025-03-0")]) == 20
    assert "--limit 0 for all" in err

    code, out, err = await paperwatch("-c", str(path), "status")
    assert code == 0 and "<10" not in out
    assert re.search(r"^  \d{4}-\d\d-\d\d \d\d:\d\d UTC  2025-03-0\d  ok", out, re.MULTILINE), out
    assert re.search(r"reader alice: last digest sent never, next \S+ \d\d:\d\d Europe/Berlin", out), out
    code, out, err = await paperwatch("-c", str(path), "status", "--check")
    assert code == 1 and "no poll recorded" in err

    code, out, err = await paperwatch("-c", str(path), "backfill", "--since", "2025-03-01", "--until", "2025-03-04")
    assert code == 0, err
    assert out.splitlines()[0].startswith("backfill 2025-03-01 .. 2025-03-04: 4 days, 0 already complete, "
                                          "4 to fetch; about 1 second at 6000 requests a minute")


async def test_the_first_digest_names_exactly_the_days_the_polls_fetched(tmp_path: Path, fake_hf: FakeHF) -> None:
    serve(fake_hf)
    path = write_config(tmp_path / "pw.toml", fake_hf.base_url, lookback_days=3)
    path.write_text(path.read_text() + READERS.replace('keywords = ["grokking"]', 'keywords = ["kestrel owl"]'))
    config = load_config(path)
    matcher, templates = prepare(config)
    now = dt.datetime(2025, 3, 7, 18, 0, tzinfo=dt.UTC)
    async with await Store.open(config.database) as store, Fetcher(config.source) as fetcher:
        # a backfill stored 4 Mar too; the polls of a reader starting on 7 Mar fetch 5-7 Mar
        fake_hf.days[dt.date(2025, 3, 4)] = [FakeHF.make_item(dt.date(2025, 3, 4), 0)]
        await fetch_days(fetcher, store, config.source.base_url, [dt.date(2025, 3, 4), *DAYS])
        composed = await compose(store, config, matcher, templates, config.readers[0], now=now, preview=True)
    assert composed is not None and composed.items == ()
    assert "5–7 Mar 2025" in composed.rendered.text and "4–7 Mar" not in composed.rendered.text
    assert "from 5 to 7 Mar 2025" in composed.rendered.text


STATUS_CONFIG = """\
[paperwatch]
database = "pw.db"
[[readers]]
name = "alice"
email = "alice@example.org"
timezone = "Europe/Berlin"
[[readers.rules]]
name = "r"
keywords = ["grokking"]
"""


async def _record(path: Path, *, polled: dt.datetime, retrying: bool) -> None:
    config = load_config(path)
    sent_at = dt.datetime(2025, 3, 7, 7, 0, tzinfo=dt.UTC)
    async with await Store.open(config.database) as store:
        await store.reader_state("alice", now=sent_at - dt.timedelta(days=1))
        first = await store.queue_digest(reader="alice", recipient="alice@example.org", sender="pw@localhost",
                                         message_id="<1@localhost>", data=b"x", papers=[], now=sent_at)
        await store.mark_sent(first, now=sent_at)
        await store.mark_digested("alice", now=sent_at + dt.timedelta(days=1))  # a run with nothing to send
        await store.set_state(LAST_POLL_AT, polled.isoformat())
        if retrying:
            second = await store.queue_digest(reader="alice", recipient="alice@example.org", sender="pw@localhost",
                                              message_id="<2@localhost>", data=b"y", papers=[], now=polled)
            await store.mark_retry(second, "421 try later", next_attempt_at=polled + dt.timedelta(minutes=1))


@pytest.mark.parametrize(("ago", "retrying", "code", "said"), [
    (dt.timedelta(minutes=5), False, 0, ""),
    (dt.timedelta(days=2), False, 1, "paperwatch: polls are stale: the last was "),
    (dt.timedelta(minutes=5), True, 1, "paperwatch: deliveries failing: 1 being retried, 0 failed in the last day"),
])
def test_status_names_zones_and_the_last_digest_sent_and_check_says_when_to_worry(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        ago: dt.timedelta, retrying: bool, code: int, said: str) -> None:
    path = tmp_path / "pw.toml"
    path.write_text(STATUS_CONFIG)
    asyncio.run(_record(path, polled=dt.datetime.now(dt.UTC) - ago, retrying=retrying))
    assert main(["-c", str(path), "status"]) == 0
    out = capsys.readouterr().out
    assert "reader alice: last digest sent 2025-03-07 08:00 Europe/Berlin, next " in out
    assert main(["-c", str(path), "status", "--check"]) == code
    assert capsys.readouterr().err.startswith(said)


def test_check_reads_the_password_from_a_credentials_folder(home: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pw.toml"
    path.write_text(STATUS_CONFIG + '[mail]\nfrom = "paperwatch@example.org"\n[mail.smtp]\nhost = "smtp.example.org"\nusername = "me"\n')
    path.chmod(0o600)
    assert main(["-c", str(path), "check"]) == 0
    assert "warning: no password to check here" in capsys.readouterr().err
    creds = tmp_path / "creds"
    creds.mkdir()
    assert main(["check", "-c", str(path), "--credentials", str(creds)]) == 78
    assert f"{creds} has no credential smtp-password" in capsys.readouterr().err
    (creds / "smtp-password").write_text("secret")
    (creds / "smtp-password").chmod(0o600)
    assert main(["check", "-c", str(path), "--credentials", str(creds)]) == 0
    assert capsys.readouterr().err == ""


def test_init_asks_on_a_terminal(home: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["ann@example.org", "grokking, state space model"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert main(["init"]) == 0
    (reader,) = load_config(home / ".config" / "paperwatch" / "paperwatch.toml").readers
    assert reader.email == "ann@example.org" and reader.rules[0].keywords == ("grokking", "state space model")


def test_run_once_says_first_that_nothing_will_be_mailed(home: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "pw.toml", "http://127.0.0.1:9", retries=0)  # nothing listens there
    main(["-c", str(path), "run", "--once"])
    first = capsys.readouterr().err.splitlines()[0]
    assert first == (f"paperwatch: no reader is configured in {path}, so nothing will be mailed: "
                     "`paperwatch init` writes a starter config for one")
