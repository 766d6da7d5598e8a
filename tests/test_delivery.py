"""Digests from fetched papers to a real SMTP server or a Maildir, through the outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import os
import re
import signal
import sys
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST_SOURCE, toml_value
from fakehf import FakeHF
from paperwatch.config import Config, load_config
from paperwatch.delivery import compile_rules, deliver_due, queue_digests
from paperwatch.digest import Templates
from paperwatch.match import Matcher
from paperwatch.pipeline import recent_days
from paperwatch.store import Store
from smtpserver import Recorder, SmtpServer
from test_cli import paperwatch

TODAY = dt.datetime.now(dt.UTC).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
HEADERS = {"From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "Auto-Submitted",
           "MIME-Version", "Content-Type"}
LINEAR = {"2503.63197", "2503.20711", "2503.71116"}  # the samples' linear transformer/attention titles

READERS = """
[[readers]]
name = "alice"
email = "alice@example.org"
[[readers.rules]]
name = "linear attention"
keywords = ["linear transformer", "linear attention"]
[[readers.rules]]
name = "brains"
keywords = ["brain*"]

[[readers]]
name = "bob"
email = "bob@example.org"
[[readers.rules]]
name = "deep learning"
keywords = ["deep learning"]

[[readers]]
name = "carol"
email = "carol@example.org"
[[readers.rules]]
name = "gravity"
keywords = ["quantum gravity"]
"""


def write_config(tmp_path: Path, hf: FakeHF, *, smtp: SmtpServer | None = None, readers: str = READERS,
                 mail: dict[str, Any] | None = None) -> Path:
    source = {**FAST_SOURCE, "base_url": hf.base_url, "lookback_days": 2}
    lines = ["[paperwatch]", 'database = "paperwatch.db"', 'admin = "ops@example.org"', "", "[source]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in source.items()]
    lines += ["", "[mail]", 'from = "paperwatch <pw@example.org>"', 'give_up = "1h"']
    lines += [f"{key} = {toml_value(value)}" for key, value in (mail or {}).items()]
    if smtp is not None:
        lines += ["", "[mail.smtp]", 'host = "127.0.0.1"', f"port = {smtp.port}", 'security = "none"', "timeout = 5"]
    path = tmp_path / "paperwatch.toml"
    path.write_text("\n".join(lines) + "\n" + readers)
    return path


def serve_samples(hf: FakeHF, count: int = 26) -> list[dict[str, Any]]:
    items = FakeHF.sample_items()[:count]
    hf.days[YESTERDAY] = items
    return items


def ids(message: EmailMessage) -> list[str]:
    """The arXiv ids a digest links to, once per paper (its huggingface.co page link)."""
    text = message.get_body(("plain",))
    assert text is not None
    return re.findall(r"huggingface\.co/papers/(\d{4}\.\d{4,5})\b(?!\S*\.pdf)", text.get_content())


def expected(config: Config, papers: list[Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for match in compile_rules(config).match_all(papers):
        found.setdefault(match.reader, set()).add(match.paper_id)
    return found


async def stored_papers(config: Config) -> list[Any]:
    async with await Store.open(config.database) as store:
        return await store.papers()


async def test_run_once_delivers_each_matched_paper_once_as_a_proper_message(tmp_path: Path) -> None:
    recorder = Recorder()
    async with FakeHF() as hf:
        serve_samples(hf, 13)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
            assert code == 0, err
            serve_samples(hf)  # the day grew
            assert (await paperwatch("-c", str(path), "run", "--once"))[0] == 0
            assert (await paperwatch("-c", str(path), "run", "--once"))[0] == 0
    config = load_config(path)
    want = expected(config, await stored_papers(config))
    assert want["alice"] >= LINEAR and want["bob"] and "carol" not in want
    got: dict[str, list[str]] = {}
    for received in recorder.received:
        assert len(received.recipients) == 1
        message = received.message
        assert set(message.keys()) == HEADERS and message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["List-Unsubscribe"] == "<mailto:ops@example.org>"
        assert message["Auto-Submitted"] == "auto-generated"
        got.setdefault(received.recipients[0].split("@")[0], []).extend(ids(message))
    assert {reader: Counter(papers) for reader, papers in got.items()} == {
        reader: Counter(papers) for reader, papers in want.items()}
    assert len(recorder.received) == 4  # alice and bob, each after the first run and after the day grew


async def test_hostile_paper_fields_stay_inert_through_the_whole_pipeline(tmp_path: Path) -> None:
    recorder = Recorder()
    hostile = FakeHF.make_item(YESTERDAY, 1, title="Linear attention <script>alert(1)</script> & {{ 7*7 }}\r\nBcc: x@evil.test",
                               summary="A linear attention study.\nBcc: y@evil.test\n<img src=x onerror=alert(2)> $\\frac{a}{b}$",
                               githubRepo="javascript:alert(3)", projectPage="data:text/html,<b>x</b>")
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = [hostile]
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    [received] = recorder.received
    message = received.message
    assert set(message.keys()) == HEADERS and received.recipients == ["alice@example.org"]
    head = received.data.split(b"\r\n\r\n")[0].decode()
    assert not re.search(r"^bcc", head, re.IGNORECASE | re.MULTILINE) and "\r" not in head.replace("\r\n", "")
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html and "<img" not in html
    assert "{{ 7*7 }}" in text and "49" not in text
    links = re.findall(r'href="([^"]*)"', html)
    assert links and all(link.startswith(("https://", "http://", "mailto:")) for link in links)
    assert "javascript:" not in html and "data:text" not in html


async def test_451_three_times_then_250_is_one_message(tmp_path: Path) -> None:
    recorder = Recorder(data_replies=["451 4.3.0 busy"] * 3)
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            config = load_config(write_config(tmp_path, hf, smtp=smtp, readers=READERS.split("[[readers]]\nname = \"bob\"")[0]))
            assert (await paperwatch("-c", str(config.path), "fetch"))[0] == 0
            now = dt.datetime.now(dt.UTC)
            async with await Store.open(config.database) as store:
                matcher, templates = compile_rules(config), Templates.load(None)
                await queue_digests(store, config, matcher, templates, config.readers, now=now)
                tries = []
                for minutes in (0, 1, 3, 7, 8):
                    tries.append(await deliver_due(store, config, now=now + dt.timedelta(minutes=minutes)))
                [message] = await store.messages()
    assert [len(t) for t in tries] == [1, 1, 1, 1, 0]
    assert [o.ok for t in tries for o in t] == [False, False, False, True]
    assert "retry in 0:01:00" in tries[0][0].text and "retry in 0:02:00" in tries[1][0].text
    assert len(recorder.received) == 1 and message.status == "sent" and message.attempts == 4


async def test_550_fails_only_that_reader_with_the_servers_reply(tmp_path: Path) -> None:
    recorder = Recorder(refuse={"alice@example.org": "550 5.1.1 mailbox unavailable"})
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
            code2, out2, _ = await paperwatch("-c", str(path), "run", "--once")
            _, status, _ = await paperwatch("-c", str(path), "status")
    assert code == 1 and "alice: failed (refused): 550 5.1.1 mailbox unavailable" in out
    assert "bob: sent to bob@example.org" in out
    assert [r.recipients for r in recorder.received] == [["bob@example.org"]]
    assert code2 == 0 and "alice" not in out2.replace("alice: nothing new matched", "")
    assert "550 5.1.1 mailbox unavailable" in status


async def test_a_template_error_fails_that_digest_and_keeps_the_papers_pending(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    for name in ("digest.html.j2", "digest.txt.j2", "subject.txt.j2"):
        source = (Path(__file__).parents[1] / "src/paperwatch/templates" / name).read_text()
        (templates / name).write_text(source)
    (templates / "subject.txt.j2").write_text('{{ count }} papers\n{% if info.reader == "alice" %}'
                                              '{{ 1 // 0 }}{% endif %}\n')
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf, mail={"maildir": "mail", "templates": "templates"})
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
        assert code == 1 and re.search(r"alice: digest not composed: .*subject\.txt\.j2:2: ZeroDivisionError", out), out
        assert "bob: queued" in out and len(os.listdir(tmp_path / "mail" / "new")) == 1
        (templates / "subject.txt.j2").write_text("{{ count }} papers\n")
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0 and "alice: queued" in out and "bob: nothing new matched" in out
    delivered = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                 for p in (tmp_path / "mail" / "new").iterdir()]
    assert sorted(m["To"] for m in delivered) == ["alice@example.org", "bob@example.org"]


async def test_maildir_is_the_default_and_two_runs_deliver_once(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        for _ in range(2):
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
            assert code == 0, err
    new = sorted((tmp_path / "mail" / "new").iterdir())
    assert len(new) == 2
    first = email.message_from_bytes(new[0].read_bytes(), policy=email.policy.default)
    assert set(first.keys()) == HEADERS


async def test_digest_preview_writes_files_and_changes_nothing(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        assert (await paperwatch("-c", str(path), "fetch"))[0] == 0
        code, out, err = await paperwatch("-c", str(path), "digest", "--preview", str(tmp_path / "preview"))
        assert code == 0, err
        assert sorted(os.listdir(tmp_path / "preview")) == [f"{r}.{x}" for r in ("alice", "bob") for x in ("eml", "html", "txt")]
        assert "carol: nothing to send" in out
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0 and "alice: queued" in out and "bob: queued" in out


# -- crashes: the delivering process killed at each step of the outbox -----------------------------


class KillingRecorder(Recorder):
    """Kills the paperwatch process at a chosen SMTP step, once."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step
        self.pid: int | None = None

    def _kill(self, step: str) -> None:
        if step == self.step and self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self.pid = None

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self._kill("mail")  # the digest is committed, no byte of it has left
        await asyncio.sleep(0.5)
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        self._kill("data")  # the server has the message; our "sent" is never written
        await asyncio.sleep(0.5)
        return reply


async def run_killed(tmp_path: Path, recorder: KillingRecorder) -> tuple[Path, int]:
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "paperwatch", "-c", str(path), "run", "--once",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            recorder.pid = proc.pid
            killed = await asyncio.wait_for(proc.wait(), 60)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
            assert code == 0, err
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
            assert code == 0 and "sent" not in out
    return path, killed


@pytest.mark.parametrize("step", ["mail", "data"])
async def test_killed_while_delivering_loses_nothing_and_repeats_at_most_that_message(tmp_path: Path, step: str) -> None:
    recorder = KillingRecorder(step)
    path, killed = await run_killed(tmp_path, recorder)
    assert killed == -signal.SIGKILL
    config = load_config(path)
    want = expected(config, await stored_papers(config))
    by_id = Counter(r.message["Message-ID"] for r in recorder.received)
    repeated = [mid for mid, n in by_id.items() if n > 1]
    assert len(repeated) == (1 if step == "data" else 0)
    for reader in ("alice", "bob"):
        messages = {r.message["Message-ID"]: r.message for r in recorder.received
                    if r.recipients == [f"{reader}@example.org"]}
        assert sorted(p for m in messages.values() for p in ids(m)) == sorted(want[reader])
    if repeated:  # the allowed repeat is byte for byte the same message
        assert len({r.data for r in recorder.received if r.message["Message-ID"] == repeated[0]}) == 1


async def test_a_crash_inside_maildir_delivery_neither_loses_nor_doubles(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        config = load_config(path)
        assert (await paperwatch("-c", str(path), "fetch"))[0] == 0
        async with await Store.open(config.database) as store:
            await queue_digests(store, config, compile_rules(config), Templates.load(None), config.readers)
            alice, bob = sorted(await store.due_messages(), key=lambda m: m.reader)
        maildir = tmp_path / "mail"
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True)
        # Killed mid-write (a partial file in tmp/) for alice; after the rename, before "sent", for bob.
        (maildir / "tmp" / "1.partial.host").write_bytes(alice.data[:100])
        from paperwatch.mail import Envelope, MaildirTransport
        await MaildirTransport(maildir).send(Envelope(bob.sender, (bob.recipient,), bob.message_id, bob.data))
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    delivered = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                 for p in (maildir / "new").iterdir()]
    assert sorted((m["To"], m["Message-ID"]) for m in delivered) == sorted(
        [("alice@example.org", alice.message_id), ("bob@example.org", bob.message_id)])
