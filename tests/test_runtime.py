"""One runtime for every command: ``run --once`` polls as the daemon does, catching up and alerting."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from fakehf import FakeHF
from paperwatch.config import load_config
from paperwatch.runtime import LAST_POLL, Loaded, Runtime
from paperwatch.store import Store
from support import TODAY, maildir_messages, paperwatch, write_config


def days_fetched(out: str) -> list[str]:
    return sorted(set(re.findall(r"^(\d{4}-\d\d-\d\d): ", out, flags=re.M)))


@pytest.mark.e2e
async def test_run_once_after_days_down_fetches_the_missed_days_and_alerts_like_the_daemon(tmp_path: Path) -> None:
    missed = [TODAY - dt.timedelta(days=n) for n in range(5, -1, -1)]
    async with FakeHF() as hf:
        for day in missed:
            hf.days[day] = FakeHF.sample_items()[:3]
        path = write_config(tmp_path, hf, readers="", mail={})
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
        assert code == 0, out + err
        assert days_fetched(out) == [str(d) for d in missed[-2:]], "the first run reads the lookback days only"
        # paperwatch was down: the last good poll was five days ago, and one of the days it missed
        # now comes in a shape the parser does not know.
        async with await Store.open(load_config(path).database) as store:
            await store.set_state(LAST_POLL, str(missed[0]))
        hf.page_mode[missed[1]] = "changed"
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, out + err
    assert days_fetched(out) == [str(d) for d in missed], "every day since the last good poll"
    notes = maildir_messages(tmp_path / "mail")
    assert [n["Subject"] for n in notes] == ["paperwatch: source failing (the page changed shape)"]
    assert notes[0]["To"] == "ops@example.org" and str(missed[1]) in notes[0].get_content()


async def test_the_runtime_swaps_its_fetcher_when_the_source_changes(tmp_path: Path) -> None:
    async with FakeHF() as hf, FakeHF() as other:
        hf.days[TODAY] = FakeHF.sample_items()[:2]
        other.days[TODAY] = FakeHF.sample_items()[2:5]
        path = write_config(tmp_path, hf, readers="", mail={})
        async with Runtime.open(Loaded.load(path)) as runtime:
            first = await runtime.poll()
            path.write_text(path.read_text().replace(hf.base_url, other.base_url))
            await runtime.replace(Loaded.load(path))
            second = await runtime.poll()
    assert [r.papers for r in first.days if r.day == TODAY] == [2]
    assert [r.papers for r in second.days if r.day == TODAY] == [3]
    assert other.requests and first.summary.startswith("poll: ")


async def test_readers_are_recorded_when_first_served_and_keep_that_start(tmp_path: Path) -> None:
    """A reader's digests start from the day paperwatch first served them: recorded when the
    runtime starts, before any digest; a reader recorded before keeps their start, and one only
    renamed in case takes the old name's."""
    async with FakeHF() as hf:
        path = write_config(tmp_path, hf)
        async with Runtime.open(Loaded.load(path)) as runtime:
            await runtime.record_readers()
            started = {name: (await runtime.store.reader_state(name, record=False)).started_at
                       for name in ("alice", "bob")}
            assert set(await runtime.store.last_digests()) == {"alice", "bob", "carol"}
        path.write_text(path.read_text().replace('name = "bob"', 'name = "Bob"'))
        async with Runtime.open(Loaded.load(path)) as runtime:
            await runtime.record_readers()
            assert set(await runtime.store.last_digests()) == {"alice", "Bob", "carol"}
            again = {name: (await runtime.store.reader_state(name, record=False)).started_at
                     for name in ("alice", "Bob")}
    assert again == {"alice": started["alice"], "Bob": started["bob"]}
