"""Nothing wedges the daemon: not a reader's regex, a page, a clock step, a reload, a second
copy of itself, or a name; and every fault it meets is one line an operator can act on."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from fakehf import FakeHF, Fault
from paperwatch.cli import main
from paperwatch.config import MailConfig, SmtpConfig, load_config
from paperwatch.daemon import Daemon as InProcess
from paperwatch.delivery import Outcome, prepare, queue_digests
from paperwatch.errors import ConfigError, ParseError, StoreError
from paperwatch.mail import unsafe_config_file
from paperwatch.parse import parse_daily_page
from paperwatch.runtime import Loaded
from paperwatch.store import Store, utcnow
from smtpserver import Recorder, SmtpServer
from support import (
    YESTERDAY,
    Daemon,
    Notifications,
    delivered,
    ids,
    maildir_messages,
    paperwatch,
    serve_samples,
    until,
    write_config,
)

NESTED = b"<!doctype html><html><body>" + b"<div>" * 200_000  # 1 MB, 200,000 elements open at once
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def fast_polls(path: Path, poll: str = "2s") -> Path:
    path.write_text(path.read_text().replace("[source]", f'[source]\npoll = "{poll}"', 1))
    return path


# --- 1. a reader's regex ----------------------------------------------------------------------

BACKTRACKING = """
[[readers]]
name = "slow"
email = "slow@example.org"
schedule = "3s"
[[readers.rules]]
name = "runs of a"
keywords = ['re:(a+)+$']
fields = ["abstract"]

[[readers]]
name = "bob"
email = "bob@example.org"
schedule = "3s"
[[readers.rules]]
name = "deep learning"
keywords = ["deep learning"]
"""


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_backtracking_regex_neither_silences_the_watchdog_nor_delays_another_reader(tmp_path: Path) -> None:
    """``(a+)+$`` against 40 a's and a ``!`` takes a backtracking engine 2**40 steps."""
    recorder, notify = Recorder(), Notifications(tmp_path / "notify.sock")
    collector = asyncio.create_task(notify.collect())
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = [FakeHF.make_item(YESTERDAY, 0, summary="a" * 40 + "!"),
                              FakeHF.make_item(YESTERDAY, 1, title="Deep learning, part one")]
        with SmtpServer(recorder) as smtp:
            path = fast_polls(write_config(tmp_path, hf, smtp=smtp, readers=BACKTRACKING, mail={}))
            daemon = Daemon(path, notify, tmp_path / "daemon.log")
            try:
                await daemon.start()
                first = hf.days[YESTERDAY][1]["paper"]["id"]
                await until(lambda: first in delivered(recorder, "bob"), 30, "bob's first digest")
                ticks = notify.seen.count("WATCHDOG=1")
                hf.days[YESTERDAY] = [*hf.days[YESTERDAY], FakeHF.make_item(YESTERDAY, 2, summary="a" * 40),
                                      FakeHF.make_item(YESTERDAY, 3, title="Deep learning, part two")]
                second, runs = hf.days[YESTERDAY][3]["paper"]["id"], hf.days[YESTERDAY][2]["paper"]["id"]
                await until(lambda: second in delivered(recorder, "bob"), 30, "bob's next digest")
                await until(lambda: runs in delivered(recorder, "slow"), 30, "the regex's own match")
                await until(lambda: notify.seen.count("WATCHDOG=1") >= ticks + 3, 10, "the watchdog ticking on")
                daemon.signal(signal.SIGTERM)
                assert await daemon.wait(25) == 0
            finally:
                daemon.kill()
    collector.cancel()
    notify.sock.close()
    assert first not in delivered(recorder, "slow")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("pattern", "words"), [
    (r"(\w+) \1", "backreference"), (r"(?P<w>a)(?P=w)", "backreference"),
    (r"deep(?= learning)", "lookahead or lookbehind"), (r"(?<!un)supervised", "lookahead or lookbehind"),
])
def test_check_refuses_what_a_linear_time_engine_cannot_run_naming_the_key(tmp_path: Path, pattern: str,
                                                                            words: str) -> None:
    path = tmp_path / "paperwatch.toml"
    path.write_text(f'[[readers]]\nname = "bob"\nemail = "bob@example.org"\n[[readers.rules]]\nname = "r"\n'
                    f"keywords = ['re:{pattern}']\n")
    with pytest.raises(ConfigError) as caught:
        Loaded.load(path)
    [problem] = caught.value.problems
    assert "readers.bob.rules.r.keywords[0]" in problem and words in problem
    assert "match the words themselves" in problem  # the hint


# --- 2. a page that would take the HTML parser minutes ------------------------------------------

@pytest.mark.timeout(30)
def test_a_page_nested_200000_deep_is_refused_before_the_html_parser() -> None:
    with pytest.raises(ParseError, match="nested over"):
        parse_daily_page(NESTED, day=YESTERDAY, url="https://huggingface.co/papers/date/x")


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_nested_page_fails_its_day_once_and_sigterm_still_exits_within_20_s(tmp_path: Path) -> None:
    notify = Notifications(tmp_path / "notify.sock")
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = FakeHF.sample_items()[:3]
        hf.fail(f"/papers/date/{YESTERDAY}",
                *[Fault.status(200, {"Content-Type": "text/html; charset=utf-8"}, body=NESTED)] * 50)
        path = fast_polls(write_config(tmp_path, hf, readers="", mail={}))
        daemon = Daemon(path, notify, tmp_path / "daemon.log")
        try:
            await daemon.start()
            await until(lambda: "nested over" in daemon.log.read_text(), 30, "the nested page refused")
            await until(lambda: daemon.log.read_text().count("poll: 2 days") >= 2, 30, "the polls going on")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(20) == 0
        finally:
            daemon.kill()
    notify.sock.close()
    assert "took over" not in daemon.log.read_text()  # the page cost no parse budget at all


# --- 3. the wall clock steps ------------------------------------------------------------------

def faketime() -> Path:
    if not LIBFAKETIME.exists():
        if os.environ.get("PAPERWATCH_REQUIRE_SYSTEM") == "1":
            pytest.fail("libfaketime is missing: CI installs the faketime package")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    return LIBFAKETIME


@pytest.mark.e2e
@pytest.mark.slow
async def test_polls_resume_after_the_clock_steps_back(tmp_path: Path) -> None:
    """Ahead 400 days, then corrected: polls go on at their interval, not 400 days later. (The
    wait allows a few intervals: a loaded machine may start the next one late.)"""
    interval = 20.0
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": str(faketime()), "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
           "DONT_FAKE_MONOTONIC": "1"}
    notify = Notifications(tmp_path / "notify.sock")
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = FakeHF.sample_items()[:3]
        path = fast_polls(write_config(tmp_path, hf, readers="", mail={}), f"{interval:g}s")
        daemon = Daemon(path, notify, tmp_path / "daemon.log", env=env)
        try:
            await daemon.start()
            await until(lambda: "poll: " in daemon.log.read_text(), 30, "the first poll")
            offset.write_text("+400d\n")
            await until(lambda: "the clock jumped" in daemon.log.read_text(), 60, "the jump ahead noticed")
            offset.write_text("+0\n")
            seen = len(hf.requests)
            await until(lambda: len(hf.requests) > seen, 3 * interval, "a poll soon after the step back")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(25) == 0
        finally:
            daemon.kill()
    notify.sock.close()


async def test_a_retry_planned_while_the_clock_ran_ahead_is_due_now(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        path = write_config(tmp_path, hf, readers="", mail={})
        config = load_config(path)
        async with await Store.open(config.database) as store:
            message = email.message_from_string("Subject: held\n\nheld since a clock ran ahead\n",
                                                policy=email.policy.SMTP)
            queued = await store.queue_digest(reader="ops", recipient="ops@example.org", sender="pw@example.org",
                                              message_id="<held@example.org>", data=bytes(message),
                                              papers=[])
            await store.mark_retry(queued, "451 later", next_attempt_at=utcnow() + dt.timedelta(days=400))
        daemon = InProcess(Loaded.load(path))
        running = asyncio.create_task(daemon.run())
        try:
            await until(lambda: len(maildir_messages(tmp_path / "mail")) >= 1, 30, "the held message sent")
        finally:
            daemon.stop()
            assert await asyncio.wait_for(running, 25) == 0
    assert maildir_messages(tmp_path / "mail")[0]["Subject"] == "held"


# --- 4. reloads take turns ---------------------------------------------------------------------

def readers_with_rules(name: str, count: int) -> str:
    rules = "".join(f'[[readers.rules]]\nname = "r{n}"\nkeywords = ["topic{n} word{n}"]\n' for n in range(count))
    return f'[[readers]]\nname = "{name}"\nemail = "{name}@example.org"\n{rules}'


@pytest.mark.e2e
@pytest.mark.slow
async def test_two_reloads_end_on_the_newest_file_and_each_ends_in_ready(tmp_path: Path) -> None:
    notify = Notifications(tmp_path / "notify.sock")
    collector = asyncio.create_task(notify.collect())
    async with FakeHF() as hf:
        path = write_config(tmp_path, hf, readers=readers_with_rules("alice", 1), mail={})
        base = path.read_text().split("[[readers]]")[0]
        daemon = Daemon(path, notify, tmp_path / "daemon.log")
        try:
            await daemon.start()
            path.write_text(base + readers_with_rules("alice", 3000))  # seconds to validate and compile
            daemon.signal(signal.SIGHUP)
            await until(lambda: "RELOADING=1" in notify.seen, 10, "the slow reload under way")
            path.write_text(base + readers_with_rules("bob", 2))
            daemon.signal(signal.SIGHUP)

            def settled() -> bool:
                lines = [line for line in daemon.log.read_text().splitlines() if "config reloaded" in line]
                pairs = notify.seen.count("RELOADING=1") == notify.seen.count("READY=1") - 1
                return pairs and bool(lines) and "1 reader, 2 rules" in lines[-1]

            await until(settled, 90, "the newest file running, every RELOADING=1 followed by READY=1")

            path.write_text(base + "[x]\ny = " + "[" * 5000 + "]" * 5000 + "\n")
            reloads = notify.seen.count("RELOADING=1")
            daemon.signal(signal.SIGHUP)
            await until(lambda: notify.seen.count("RELOADING=1") > reloads
                        and notify.seen.count("READY=1") == notify.seen.count("RELOADING=1") + 1,
                        30, "the deep file's reload failing with READY=1 sent")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(25) == 0
        finally:
            daemon.kill()
    collector.cancel()
    notify.sock.close()
    log = daemon.log.read_text()
    assert "nested too deeply" in log and "Traceback" not in log


def test_a_config_nested_5000_deep_exits_78_with_one_line_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "paperwatch.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["-c", str(path), "check"]) == 78
    err = capsys.readouterr().err
    assert err.strip() == f"{path}: arrays or tables nested too deeply to read"


# --- 5. one daemon per database, and a sentence for every fault ----------------------------------

@pytest.mark.e2e
@pytest.mark.slow
async def test_a_second_daemon_on_one_database_exits_1_naming_the_first(tmp_path: Path) -> None:
    notify = Notifications(tmp_path / "notify.sock")
    async with FakeHF() as hf:
        path = fast_polls(write_config(tmp_path, hf, mail={}))
        daemon = Daemon(path, notify, tmp_path / "daemon.log")
        try:
            await daemon.start()
            assert daemon.proc is not None
            code, out, err = await paperwatch("-c", str(path), "run")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(25) == 0
        finally:
            daemon.kill()
    notify.sock.close()
    database = load_config(path).database
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [f"paperwatch: {database}: another paperwatch daemon is running on this "
                                        f"database (pid {daemon.proc.pid}); stop it first, or give this one another "
                                        "paperwatch.database"]


@pytest.mark.e2e
@pytest.mark.slow
async def test_ten_digests_at_once_send_each_paper_once_without_a_traceback(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        assert (await paperwatch("-c", str(path), "fetch"))[0] == 0
        runs = await asyncio.gather(*(paperwatch("-c", str(path), "digest") for _ in range(10)))
    assert [err for _code, _out, err in runs if "Traceback" in err or "Error" in err] == []
    assert all(code == 0 for code, _out, _err in runs)
    messages = maildir_messages(tmp_path / "mail")
    for reader in ("alice", "bob"):
        papers = [p for m in messages if m["To"] == f"{reader}@example.org" for p in ids(m)]
        assert papers and len(papers) == len(set(papers)), reader


@pytest.mark.e2e
async def test_ten_digests_composed_at_once_queue_each_paper_once(tmp_path: Path) -> None:
    """Ten processes' worth of connections, each composing before any has queued: the race
    ``digest`` runs beside each other (or beside the daemon) meet."""
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        assert (await paperwatch("-c", str(path), "fetch"))[0] == 0
    config = load_config(path)
    matcher, templates = prepare(config)

    async def one() -> list[Outcome]:
        async with await Store.open(config.database) as store:
            return await queue_digests(store, config, matcher, templates, list(config.readers))

    await asyncio.gather(*(one() for _ in range(10)))
    async with await Store.open(config.database) as store:
        pending = await store.messages(status="pending")
    by_reader = [m.reader for m in pending]
    assert sorted(by_reader) == ["alice", "bob"]


async def test_a_full_disk_is_named_with_its_cause(tmp_path: Path) -> None:
    database = tmp_path / "paperwatch.db"
    async with await Store.open(database) as store:
        pages = await store._scalar("PRAGMA page_count")  # a file system with no room left beyond these
        await store._db.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StoreError) as caught:
            await store.queue_digest(reader="alice", recipient="a@example.org", sender="pw@example.org",
                                     message_id="<m@example.org>", data=os.urandom(200_000), papers=[])
    assert str(caught.value).startswith(f"{database}: digest for alice not queued: database or disk is full (free")
    async with await Store.open(database) as store:
        assert await store.messages() == []


@pytest.mark.e2e
async def test_digest_on_a_malformed_database_says_so_in_one_line(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        assert (await paperwatch("-c", str(path), "fetch"))[0] == 0
    database = load_config(path).database
    data = bytearray(database.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    half = len(data) // page // 2 * page
    data[half:] = b"\xa5" * (len(data) - half)  # the schema and the header intact: found only when read
    database.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    code, out, err = await paperwatch("-c", str(path), "digest")
    assert code == 1 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"paperwatch: {database}: ") and "malformed" in line


# --- 6. names stay names, the site's text stays text ----------------------------------------------

def toml_name(name: str) -> str:
    return '"' + name.replace("\0", "\\u0000") + '"'


HOSTILE_NAMES = ("../outside/x", "/abs/x", "team/alice", "nul\0name", "r" * 300)


@pytest.mark.e2e
async def test_preview_file_names_stay_inside_the_folder_distinct_and_stable(tmp_path: Path) -> None:
    readers = "".join(f'[[readers]]\nname = {toml_name(n)}\nemail = "r{i}@example.org"\n'
                      '[[readers.rules]]\nname = "deep"\nkeywords = ["deep learning"]\n'
                      for i, n in enumerate(HOSTILE_NAMES))
    preview = tmp_path / "preview"
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf, readers=readers)
        assert (await paperwatch("-c", str(path), "fetch"))[0] == 0
        listings = []
        for _ in range(2):
            code, out, err = await paperwatch("-c", str(path), "digest", "--preview", str(preview))
            assert code == 0, err
            listings.append(sorted(p.relative_to(preview) for p in preview.rglob("*")))
            shutil.rmtree(preview)
    assert listings[0] == listings[1]
    assert len(listings[0]) == 3 * len(HOSTILE_NAMES) and all(len(p.parts) == 1 for p in listings[0])
    assert not (tmp_path / "outside").exists() and not Path("/abs/x.html").exists()


@pytest.mark.e2e
async def test_escape_sequences_from_the_site_never_reach_the_terminal(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        hostile = b"gone \x1b]0;owned\x07 \x1b[2J\x9b31m away"
        hf.fail(f"/papers/date/{YESTERDAY}", *[Fault.status(404, {"Content-Type": "text/plain"}, body=hostile)] * 9)
        path = write_config(tmp_path, hf)
        code, out, err = await paperwatch("-v", "-c", str(path), "fetch")
    assert f"{YESTERDAY}: failed" in out and "\\x1b]0;owned\\x07" in out + err
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out + err)


# --- 7. a reader's identity, the poll floor, who may rewrite the config ----------------------------

@pytest.mark.e2e
async def test_a_reader_renamed_only_in_case_is_not_mailed_again(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        assert (await paperwatch("-c", str(path), "run", "--once"))[0] == 0
        first = len(maildir_messages(tmp_path / "mail"))
        path.write_text(path.read_text().replace('name = "alice"', 'name = "Alice"'))
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    assert "Alice: nothing new matched" in out
    assert len(maildir_messages(tmp_path / "mail")) == first


def test_reader_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "paperwatch.toml"
    path.write_text("".join(f'[[readers]]\nname = "{n}"\nemail = "x@example.org"\n' for n in ("alice", "Alice")))
    with pytest.raises(ConfigError, match="'alice' and 'Alice' differ only by case"):
        load_config(path)


def test_polls_more_often_than_once_a_minute_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAPERWATCH_POLL_FLOOR", raising=False)
    path = tmp_path / "paperwatch.toml"
    path.write_text('[source]\npoll = "0.2s"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}:2:8: source.poll: polling every 0.2s is too often: at least 60 s apart "
                                     "(say 1m)"]
    path.write_text('[source]\npoll = "1m"\n')
    assert load_config(path).source.poll == "1m"


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user takes root")
def test_a_config_owned_by_another_user_cannot_hold_an_smtp_login(tmp_path: Path) -> None:
    path = tmp_path / "paperwatch.toml"
    path.write_text("")
    os.chmod(path, 0o644)
    os.chown(path, 65534, -1)
    problem = unsafe_config_file(path, MailConfig(smtp=SmtpConfig(host="mail.example.org", username="pw")))
    assert problem is not None and "belongs to another user (uid 65534)" in problem


def test_a_config_in_a_folder_others_may_write_cannot_hold_an_smtp_login(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "paperwatch.toml"
    path.write_text("")
    os.chmod(path, 0o644)
    os.chmod(folder, 0o777)
    smtp = MailConfig(smtp=SmtpConfig(host="mail.example.org", username="pw"))
    problem = unsafe_config_file(path, smtp)
    assert problem is not None and f"is in {folder}, which others can write" in problem
    os.chmod(folder, 0o1777)  # sticky, like /tmp: nobody else can replace the file
    assert unsafe_config_file(path, smtp) is None
