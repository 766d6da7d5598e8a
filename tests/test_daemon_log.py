"""The daemon's log: one line per event, in the order things happened; one edit is one reload."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from fakehf import FakeHF
from support import (
    BROKEN,
    COSMOLOGY,
    FAST,
    YESTERDAY,
    Daemon,
    Notifications,
    lines,
    maildir_messages,
    outcomes_after,
    until,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.e2e
async def test_queued_before_sent_once_and_one_reload_per_edit(tmp_path: Path) -> None:
    notify = Notifications(tmp_path / "notify.sock")
    collector = asyncio.create_task(notify.collect())
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = FakeHF.sample_items()[:10]
        path = write_config(tmp_path, hf, readers=FAST, mail={"maildir": "mail"})
        daemon = Daemon(path, notify, tmp_path / "daemon.log")
        try:
            await daemon.start()
            await until(lambda: any("alice: sent to alice@example.org" in line for line in lines(daemon)), 30,
                        "a digest sent")
            log = lines(daemon)
            queued = next(n for n, line in enumerate(log) if "alice: queued: " in line)
            sent = next(n for n, line in enumerate(log) if "alice: sent to alice@example.org" in line)
            assert queued < sent, "\n".join(log)

            # the file watcher and the signal both see this one edit
            path.write_text(path.read_text().replace(FAST, COSMOLOGY))
            daemon.signal(signal.SIGHUP)
            await until(lambda: "config reloaded" in daemon.log.read_text(), 15, "the reload")
            # two digest periods (3 s each) later the watcher has looked at the file again
            await until(lambda: outcomes_after(daemon, "config reloaded") >= 2, 30, "two digests after the reload")
            assert daemon.log.read_text().count("config reloaded") == 1

            path.write_text(path.read_text().replace(COSMOLOGY, BROKEN))
            daemon.signal(signal.SIGHUP)
            await until(lambda: "config not reloaded" in daemon.log.read_text(), 15, "the rejection")
            await until(lambda: outcomes_after(daemon, "config not reloaded") >= 2, 30, "two digests after it")
            text = daemon.log.read_text()
            assert text.count("config not reloaded") == 1 and text.count("invalid regular expression") == 1
            assert "config not reloaded (SIGHUP), the running config stays: 1 problem" in text \
                or "config not reloaded (file changed), the running config stays: 1 problem" in text
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(25) == 0
        finally:
            daemon.kill()
    collector.cancel()
    notify.sock.close()
    text = daemon.log.read_text()
    mailed = [m for m in maildir_messages(tmp_path / "mail") if m["To"] == "alice@example.org"]
    said = [line for line in text.splitlines() if " DEBUG " not in line and "sent to alice@example.org" in line]
    assert len(said) == len(mailed) > 0  # once each: the daemon's line, not the delivery's too
    assert all("paperwatch.daemon: alice: sent to alice@example.org" in line for line in said)
