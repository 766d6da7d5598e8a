"""The real ``paperwatch run`` process against the fake site and a real SMTP server, in seconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from fakehf import FakeHF, Fault
from paperwatch.config import load_config
from smtpserver import Recorder, SmtpServer
from support import (
    BROKEN,
    COSMOLOGY,
    FAST,
    LINEAR,
    YESTERDAY,
    Daemon,
    Notifications,
    delivered,
    expected,
    lines,
    maildir_messages,
    outcomes_after,
    stored_papers,
    until,
    write_config,
)

pytestmark = pytest.mark.e2e











async def test_the_daemon_end_to_end(tmp_path: Path) -> None:
    recorder, notify = Recorder(), Notifications(tmp_path / "notify.sock")
    samples = FakeHF.sample_items()
    collector = asyncio.create_task(notify.collect())
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = samples[:10]
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp, readers=FAST, mail={})
            path.write_text(path.read_text().replace("[source]", '[source]\npoll = "2s"'))
            daemon = Daemon(path, notify, tmp_path / "daemon.log")
            try:
                await scenario(daemon, hf, recorder, path, samples)
            finally:
                daemon.kill()
    collector.cancel()
    notify.sock.close()

    config = load_config(path)
    want = expected(config, await stored_papers(config))
    assert want["alice"] >= LINEAR | {"2503.26493"} and len(want["alice"]) >= len(LINEAR) + 5
    for reader in ("alice", "bob"):
        got = delivered(recorder, reader)
        assert set(got) == want[reader], reader
        assert not [p for p, n in got.items() if n > 1], reader
    log = daemon.log.read_text()
    assert "Unclosed" not in log and "Traceback" not in log
    assert "config not reloaded (SIGHUP)" in log and "keywords[3]: invalid regular expression" in log


async def scenario(daemon: Daemon, hf: FakeHF, recorder: Recorder, path: Path, samples: list[Any]) -> None:
    await daemon.start()
    # The first poll runs at start; the first digests within a schedule period.
    await until(lambda: set(delivered(recorder, "alice")) >= {"2503.63197", "2503.20711"}, 30, "first digest")

    hf.days[YESTERDAY] = samples  # the day grows between polls
    await until(lambda: set(delivered(recorder, "alice")) >= LINEAR, 30, "the grown day")

    path.write_text(path.read_text().replace(FAST, COSMOLOGY))
    daemon.signal(signal.SIGHUP)
    await until(lambda: "2503.26493" in delivered(recorder, "alice"), 30, "the new rule's paper")

    before = len(recorder.received)
    path.write_text(path.read_text().replace(COSMOLOGY, BROKEN))
    daemon.signal(signal.SIGHUP)
    await until(lambda: "config not reloaded" in daemon.log.read_text(), 15, "the rejection")
    await until(lambda: outcomes_after(daemon, "config not reloaded") >= 2, 30, "two digests with the old rules")
    assert "2503.42331" not in delivered(recorder, "alice")  # "brain*" never took effect
    assert len(recorder.received) == before

    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(25) == 0
    assert "cancelled" not in daemon.log.read_text(), "SIGTERM let the jobs under way finish"
    seen = daemon.notify.drain()
    assert seen.count("WATCHDOG=1") >= 3 and "STOPPING=1" in seen

    # Killed and restarted, with more papers meanwhile: nothing lost, nothing repeated.
    path.write_text(path.read_text().replace(BROKEN, COSMOLOGY))
    today = YESTERDAY + dt.timedelta(days=1)
    hf.days[today] = [FakeHF.make_item(today, n, title=f"Linear attention, part {n}") for n in range(5)]
    requests = len(hf.requests)
    await daemon.start()
    await until(lambda: len(hf.requests) > requests, 15, "the restarted daemon's first poll under way")
    daemon.signal(signal.SIGKILL)
    assert await daemon.wait(10) == -signal.SIGKILL
    await daemon.start()
    await until(lambda: len(delivered(recorder, "alice")) >= len(LINEAR) + 6, 40, "catch-up")
    caught_up = len(lines(daemon))
    # two more digest periods: nothing is sent again
    await until(lambda: sum(" alice: " in line for line in lines(daemon)[caught_up:]) >= 2, 30, "two more digests")
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(25) == 0




async def test_the_operator_hears_once_when_polls_keep_failing_and_once_when_they_recover(tmp_path: Path) -> None:
    from paperwatch.daemon import Daemon as InProcess
    from paperwatch.runtime import Loaded
    from paperwatch.store import Store

    async with FakeHF() as hf:
        hf.days[YESTERDAY] = FakeHF.sample_items()[:3]
        path = write_config(tmp_path, hf, readers="", mail={})
        path.write_text(path.read_text().replace("[source]", '[source]\npoll = "0.2s"'))
        # retries = 3: each failing poll takes 4 faults; 6 polls fail, then the site is back.
        hf.fail(f"/papers/date/{YESTERDAY}", *[Fault.status(500)] * 24)
        hf.fail(f"/api/daily_papers?date={YESTERDAY}", *[Fault.status(500)] * 24)  # and its fallback
        daemon = InProcess(Loaded.load(path))
        running = asyncio.create_task(daemon.run())
        mail = tmp_path / "mail"
        await until(lambda: len(maildir_messages(mail)) >= 2, 30, "the failure and the recovery notes")
        polled = len(hf.requests)  # two more good polls (two days each): no more notes
        await until(lambda: len(hf.requests) >= polled + 4, 30, "two more polls")
        daemon.stop()
        assert await asyncio.wait_for(running, 25) == 0

    notes = maildir_messages(mail)
    assert [n["Subject"] for n in notes] == ["paperwatch: source failing (3 polls in a row had failing days)",
                                             "paperwatch: source recovered"]
    assert all(n["To"] == "ops@example.org" and n["Auto-Submitted"] == "auto-generated" for n in notes)
    assert "HTTP 500" in notes[0].get_content()
    code, out, _ = await run_cli("-c", str(path), "status", "--json")
    poll = json.loads(out)["poll"]
    assert code == 0 and poll["failing_in_a_row"] == 0 and poll["operator_alerted"] is False
    assert poll["summary"].startswith("poll: 2 days") and poll["next"] > poll["last"]
    async with await Store.open(load_config(path).database) as store:
        assert len(await store.messages(status="pending")) == 0


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "paperwatch", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_sigterm_lets_a_poll_under_way_finish_before_exiting(tmp_path: Path) -> None:
    notify = Notifications(tmp_path / "notify.sock")
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = FakeHF.sample_items()[:3]
        path = write_config(tmp_path, hf, readers="", mail={})
        path.write_text(path.read_text().replace("[source]", '[source]\npoll = "1s"').replace("timeout = 2", "timeout = 10"))
        daemon = Daemon(path, notify, tmp_path / "daemon.log")
        try:
            await daemon.start()
            await until(lambda: "poll: 2 days" in daemon.log.read_text(), 20, "the first poll")
            hf.fail(f"/papers/date/{YESTERDAY}", Fault.hang(3))
            await until(lambda: any(r.fault == "hang" and r.ended is None for r in hf.requests), 10, "a hanging page")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(25) == 0
        finally:
            daemon.kill()
    notify.sock.close()
    log = daemon.log.read_text()
    assert all(r.ended is not None for r in hf.requests if r.fault == "hang"), "the hanging page was waited for"
    assert "CancelledError" not in log and "raised an exception" not in log and "Traceback" not in log
    assert log.count("poll: 2 days") >= 2  # the interrupted poll finished and logged its summary
