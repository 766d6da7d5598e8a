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

from fakehf import FakeHF
from paperwatch.config import load_config
from paperwatch.delivery import compose, deliver_due, queue_digests
from paperwatch.digest import Templates
from paperwatch.ruleset import compile_rules
from paperwatch.store import Store
from smtpserver import PASSWORD, Certificates, Recorder, SmtpServer
from support import (
    LINEAR,
    READERS,
    TODAY,
    YESTERDAY,
    expected,
    ids,
    paperwatch,
    serve_samples,
    stored_papers,
    write_config,
    write_smtp_login,
)

HEADERS = {"From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "Auto-Submitted",
           "MIME-Version", "Content-Type"}













@pytest.mark.e2e
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


@pytest.mark.e2e
async def test_hostile_paper_fields_stay_inert_through_the_whole_pipeline(tmp_path: Path) -> None:
    recorder = Recorder()
    hostile = FakeHF.make_item(YESTERDAY, 1, title="Linear attention <script>alert(1)</script> & {{ 7*7 }}\r\nBcc: x@evil.test",
                               summary="A linear attention study.\nBcc: y@evil.test\n<img src=x onerror=alert(2)> $\\frac{a}{b}$",
                               githubRepo="javascript:alert(3)", projectPage="data:text/html,<b>x</b>")
    long_title = "Linear attention " + "and yet more words " * 16 + "at the end"  # ~320 characters
    crowded = FakeHF.make_item(YESTERDAY, 2, title=long_title, authors=40)
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = [hostile, crowded]
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    [received] = recorder.received
    assert received.message["Subject"] == "2 new papers: linear attention"
    assert re.search(r", … and 3\d more", received.message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
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
    assert long_title[17:80] in html and "at the end" not in html  # shortened to about 200 characters


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
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




@pytest.mark.e2e
async def test_run_once_over_starttls_with_a_login_and_a_private_ca(tmp_path: Path) -> None:
    """The whole pipeline through STARTTLS, a certificate verified against the test's own CA, and
    AUTH; the password appears nowhere in what paperwatch prints, even at -vv."""
    certificates, recorder = Certificates(tmp_path), Recorder()
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder, mode="starttls", certificates=certificates, auth=True) as smtp:
            path = write_smtp_login(write_config(tmp_path, hf, smtp=smtp), certificates)
            code, out, err = await paperwatch("-vv", "-c", str(path), "run", "--once")
    assert code == 0, err
    assert [(r.recipients, r.tls, r.user) for r in recorder.received] == [
        (["alice@example.org"], True, "alerts"), (["bob@example.org"], True, "alerts")]
    for received in recorder.received:
        assert set(received.message.keys()) == HEADERS
        assert received.message.get_content_type() == "multipart/alternative"
    assert PASSWORD not in out + err and "DEBUG" in err  # it did log at debug level


@pytest.mark.e2e
async def test_starttls_not_offered_keeps_every_digest_queued_and_never_logs_in(tmp_path: Path) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder()
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder, mode="plain", auth=True) as smtp:
            path = write_smtp_login(write_config(tmp_path, hf, smtp=smtp), certificates)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
            _, status, _ = await paperwatch("-c", str(path), "status")
    assert code == 1 and out.count("does not offer STARTTLS") == 2, out
    assert recorder.auth_attempts == [] and recorder.mail_commands == 0 and recorder.received == []
    config = load_config(path)
    async with await Store.open(config.database) as store:
        messages = await store.messages()
    # both digests wait, and so does the one note telling the operator why
    assert sorted((m.reader, m.status) for m in messages) == [
        ("(operator)", "pending"), ("alice", "pending"), ("bob", "pending")]
    assert "3 pending" in status


@pytest.mark.e2e
async def test_the_digest_says_what_it_covers(tmp_path: Path) -> None:
    """The first digest counts the papers of the days it reaches back to, not zero."""
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    for file in (tmp_path / "mail" / "new").iterdir():
        message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        headline = text.splitlines()[0]
        assert re.fullmatch(rf"Hugging Face Daily Papers, .*{YESTERDAY.year}: 1 day with papers, 26 papers seen, "
                            rf"{len(ids(message))} matched", headline), headline


EMPTY_READERS = READERS + """
[[readers]]
name = "dave"
email = "dave@example.org"
send_empty = true
[[readers.rules]]
name = "gravity"
keywords = ["quantum gravity"]
"""


@pytest.mark.parametrize("published", [26, 0])
@pytest.mark.e2e
async def test_only_readers_who_asked_get_an_empty_note_and_it_says_why(tmp_path: Path, published: int) -> None:
    recorder = Recorder()
    async with FakeHF() as hf:
        if published:
            serve_samples(hf, published)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp, readers=EMPTY_READERS)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    assert "carol: nothing new matched" in out  # carol did not ask for empty notes
    [note] = recorder.messages_to("dave@example.org")
    reason = (f"none of the {published} papers published from .* matched your rules" if published
              else "no papers were published from .*")
    assert re.fullmatch(f"No new papers: {reason}", note["Subject"]), note["Subject"]
    text = note.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert re.search(f"Nothing new for you this time: {reason}", text) and ids(note) == []
    assert set(note.keys()) == HEADERS


@pytest.mark.e2e
async def test_a_paper_is_mailed_once_across_refeatures_and_rule_edits(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        serve_samples(hf)
        path = write_config(tmp_path, hf)
        assert (await paperwatch("-c", str(path), "run", "--once"))[0] == 0
        hf.days[TODAY] = FakeHF.sample_items()[:20]  # featured again today
        edited = READERS.replace('name = "linear attention"', 'name = "efficient attention"').replace(
            'keywords = ["brain*"]', 'keywords = ["brain*", "linear*", "transformer*"]')
        path = write_config(tmp_path, hf, readers=edited)
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    assert "bob: nothing new matched" in out and "alice: queued" in out  # "linear*" found more for her
    delivered: dict[str, Counter[str]] = {}
    for file in (tmp_path / "mail" / "new").iterdir():
        message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        delivered.setdefault(str(message["To"]), Counter()).update(ids(message))
    config = load_config(path)
    want = expected(config, await stored_papers(config))
    assert delivered["alice@example.org"] == Counter(want["alice"] | LINEAR)  # each once, old and new
    assert delivered["bob@example.org"] == Counter(want["bob"])


@pytest.mark.e2e
async def test_papers_left_out_by_the_size_budget_come_in_the_next_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("paperwatch.digest.HTML_BUDGET", 12_000)
    async with FakeHF() as hf:
        serve_samples(hf)
        config = load_config(write_config(tmp_path, hf, readers=READERS.split('[[readers]]\nname = "carol"')[0]))
        assert (await paperwatch("-c", str(config.path), "fetch"))[0] == 0
    matcher, templates = compile_rules(config), Templates.load(None)
    digests: list[EmailMessage] = []
    async with await Store.open(config.database) as store:
        for hours in range(6):
            now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
            await queue_digests(store, config, matcher, templates, [config.readers[1]], now=now)
            await deliver_due(store, config, now=now)
    for file in (tmp_path / "mail" / "new").iterdir():
        message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        digests.append(message)
    digests.sort(key=lambda m: m["Date"].datetime)
    want = expected(config, await stored_papers(config))["bob"]
    assert len(digests) > 1, "the budget never cut anything: the test proves nothing"
    assert Counter(p for m in digests for p in ids(m)) == Counter(want)
    first = digests[0].get_body(("html",)).get_content()  # type: ignore[union-attr]
    left_out = len(want) - len(ids(digests[0]))
    assert re.search(rf'and {left_out} more matched papers?, .*<a href="https://huggingface.co/papers/date/{YESTERDAY}"'
                     rf'[^>]*>[^<]+</a> \({left_out}\)', first, re.S)
    assert "will be in your next digest" in first
    shown = len(ids(digests[0]))
    assert digests[0]["Subject"].startswith(f"{shown} new paper{'s' * (shown != 1)}, {left_out} more next time: ")


@pytest.mark.e2e
async def test_a_temporary_failure_is_given_up_after_mail_give_up(tmp_path: Path) -> None:
    recorder = Recorder(data_replies=["451 4.3.0 busy"] * 10)
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            config = load_config(write_config(tmp_path, hf, smtp=smtp, readers=READERS.split("[[readers]]\nname = \"bob\"")[0]))
            assert (await paperwatch("-c", str(config.path), "fetch"))[0] == 0
            now = dt.datetime.now(dt.UTC)
            async with await Store.open(config.database) as store:
                await queue_digests(store, config, compile_rules(config), Templates.load(None), config.readers, now=now)
                first = await deliver_due(store, config, now=now)
                last = await deliver_due(store, config, now=now + dt.timedelta(hours=1, minutes=1))
                later = await deliver_due(store, config, now=now + dt.timedelta(days=1))
                [message] = await store.messages()
    assert "will retry in 0:01:00: 451 4.3.0 busy" in first[0].text
    assert last[0].text == "failed (given up after 2 tries): 451 4.3.0 busy" and later == []
    assert message.status == "failed" and message.last_error == "given up after 2 tries: 451 4.3.0 busy"


@pytest.mark.e2e
async def test_a_refused_sender_keeps_every_digest_queued(tmp_path: Path) -> None:
    """A 5xx to MAIL FROM is the operator's to fix, the same for every reader: nothing is marked failed."""
    recorder = Recorder(refuse_sender="550 5.7.1 sender rejected")
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
    config = load_config(path)
    async with await Store.open(config.database) as store:
        messages = await store.messages()
    assert code == 1 and out.count("will retry in 0:01:00: 550 5.7.1 sender rejected") == 2, out
    assert sorted((m.reader, m.status) for m in messages) == [
        ("(operator)", "pending"), ("alice", "pending"), ("bob", "pending")] and recorder.received == []


@pytest.mark.e2e
async def test_a_reader_named_in_words_with_a_display_name_address(tmp_path: Path) -> None:
    """The envelope gets the bare address, To keeps the name, List-Id stays one well-formed id, and
    an operator given as ``Name <address>`` is still a plain mailto: in List-Unsubscribe."""
    recorder = Recorder()
    readers = READERS.replace('name = "bob"\nemail = "bob@example.org"',
                              'name = "Bob (the <builder>)"\nemail = "Bob Example <bob@example.org>"')
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp, readers=readers)
            path.write_text(path.read_text().replace('admin = "ops@example.org"', 'admin = "Ops Team <ops@example.org>"'))
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, err
    [received] = [r for r in recorder.received if r.recipients == ["bob@example.org"]]
    message = received.message
    assert message["To"] == "Bob Example <bob@example.org>"
    assert message["List-Unsubscribe"] == "<mailto:ops@example.org>"
    assert re.fullmatch(r"paperwatch digest for Bob the builder <bob-the-builder-[0-9a-f]{8}\.digest\.example\.org>",
                        message["List-Id"]), message["List-Id"]
    assert set(message.keys()) == HEADERS


@pytest.mark.e2e
async def test_a_config_others_may_change_cannot_hold_an_smtp_login(tmp_path: Path) -> None:
    certificates = Certificates(tmp_path)
    async with FakeHF() as hf:
        with SmtpServer(Recorder()) as smtp:
            path = write_smtp_login(write_config(tmp_path, hf, smtp=smtp), certificates)
            path.chmod(0o664)
            code, out, err = await paperwatch("-c", str(path), "check")
            path.chmod(0o644)
            code2, _, err2 = await paperwatch("-c", str(path), "check")
    assert code == 78 and re.search(rf"^{re.escape(str(path))}:\d+:\d+: mail\.smtp\.username: .* can be changed by "
                                    rf"others \(mode -rw-rw-r--\).*chmod go-w", err, re.MULTILINE), err
    assert code2 == 0, err2


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


CRASHPOINT = Path(__file__).with_name("crashpoint.py")
SERVER_STEPS = ("mail", "data")  # the SMTP server kills paperwatch on receiving that command
# transport, step, what the crash left (digests committed, messages the server has, files in the
# Maildir's tmp/ and new/), and how many messages may arrive twice: only one that the server
# had accepted when the process died.
CRASHES = [
    ("smtp", "queued", (1, 0, 0, 0), 0),
    ("smtp", "mail", (2, 0, 0, 0), 0),
    ("smtp", "data", (2, 1, 0, 0), 1),
    ("smtp", "accepted", (2, 1, 0, 0), 1),
    ("maildir", "queued", (1, 0, 0, 0), 0),
    ("maildir", "maildir-tmp", (2, 0, 1, 0), 0),
    ("maildir", "maildir-new", (2, 0, 0, 1), 0),
]


def arrived(recorder: Recorder, maildir: Path) -> list[tuple[str, bytes, EmailMessage]]:
    """(Message-ID, bytes, parsed) of every message the SMTP server or the Maildir received."""
    found = [(r.message["Message-ID"], r.data, r.message) for r in recorder.received]
    for folder in (maildir / "new", maildir / "cur"):
        for file in sorted(folder.iterdir()) if folder.is_dir() else ():
            data = file.read_bytes()
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append((parsed["Message-ID"], data, parsed))
    return found


@pytest.mark.parametrize(("transport", "step", "left", "repeats"), CRASHES, ids=[f"{c[0]}-{c[1]}" for c in CRASHES])
@pytest.mark.e2e
async def test_killed_at_each_step_of_the_outbox_loses_nothing_and_repeats_at_most_that_message(
        tmp_path: Path, transport: str, step: str, left: tuple[int, int, int, int], repeats: int) -> None:
    """SIGKILL at a step of the outbox, then a restart: every paper arrives, once, except that the
    message the server had already accepted may come twice, with the same Message-ID and bytes."""
    recorder = KillingRecorder(step)
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp if transport == "smtp" else None)
            program = ["-m", "paperwatch"] if step in SERVER_STEPS else [str(CRASHPOINT), step]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *program, "-c", str(path), "run", "--once",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            recorder.pid = proc.pid
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == -signal.SIGKILL, err.decode()
            config = load_config(path)
            async with await Store.open(config.database) as store:
                committed = {m.message_id: m.data for m in await store.messages()}
            maildir = config.mail.maildir or tmp_path / "mail"
            files = [len(os.listdir(maildir / sub)) if (maildir / sub).is_dir() else 0 for sub in ("tmp", "new")]
            assert (len(committed), len(recorder.received), *files) == left, "killed somewhere else"

            code, out, err2 = await paperwatch("-c", str(path), "run", "--once")  # the restart
            assert code == 0, err2
            code, out, err2 = await paperwatch("-c", str(path), "run", "--once")
            assert code == 0 and "sent" not in out and "queued" not in out, out

    async with await Store.open(config.database) as store:
        outbox = await store.messages()
    assert [m.status for m in outbox] == ["sent"] * len(outbox) and len(outbox) == 2  # alice and bob
    received = arrived(recorder, maildir)
    by_id = Counter(mid for mid, _, _ in received)
    assert sorted(by_id) == sorted(m.message_id for m in outbox)
    assert sum(n - 1 for n in by_id.values()) == repeats
    for mid, data, _ in received:  # whatever arrived, even twice, is exactly what was committed
        sent = next(m.data for m in outbox if m.message_id == mid)
        assert data == (sent if transport == "smtp" else sent.replace(b"\r\n", b"\n"))
        if mid in committed:
            assert committed[mid] == sent
    want = expected(config, await stored_papers(config))
    for reader in ("alice", "bob"):
        once = {mid: message for mid, _, message in received if message["To"] == f"{reader}@example.org"}
        assert Counter(p for m in once.values() for p in ids(m)) == Counter(want[reader])
    if transport == "maildir":
        assert recorder.received == []


@pytest.mark.e2e
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


CAREFUL = """
[[readers]]
name = "alice"
email = "alice@example.org"
[[readers.rules]]
name = "linear attention"
keywords = ["linear attention"]
exclude = ["survey"]
"""


@pytest.mark.e2e
async def test_a_paper_known_only_from_the_cards_waits_for_its_abstract(tmp_path: Path) -> None:
    """Cards carry no abstract, so an ``exclude`` cannot see one: such a paper is held while the polls
    may still complete it, and then mailed as it is, once."""
    surveyed = FakeHF.make_item(YESTERDAY, 1, title="Linear Attention at Scale",
                                summary="A survey of linear attention.")
    plain = FakeHF.make_item(YESTERDAY, 2, title="Linear Attention Revisited", summary="We revisit it.")
    kept = FakeHF.make_item(YESTERDAY, 3, title="Linear Attention, Cards Only", summary="Never seen.")
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = [surveyed, plain]
        hf.page_mode[YESTERDAY] = "cards"
        path = write_config(tmp_path, hf, readers=CAREFUL)
        code, out, err = await paperwatch("-c", str(path), "run", "--once")
        assert code == 0, err
        assert "alice: nothing new matched" in out  # both held: their abstracts are unknown
        hf.page_mode[YESTERDAY] = "json"
        hf.days[YESTERDAY] = [surveyed, plain, kept]
        assert (await paperwatch("-c", str(path), "run", "--once"))[0] == 0
    mailed = Counter(p for file in (tmp_path / "mail" / "new").iterdir()
                     for p in ids(email.message_from_bytes(file.read_bytes(), policy=email.policy.default)))
    assert mailed == Counter({plain["paper"]["id"]: 1, kept["paper"]["id"]: 1})  # never the survey

    config = load_config(path)
    async with await Store.open(config.database) as store:
        from paperwatch.models import DayFetch, DayPage, PageSource, Paper

        day = YESTERDAY  # a day the polls still fetch
        cards_only = Paper(id="2503.99999", title="Linear attention from the cards", daily_date=day, complete=False)
        await store.record_day(DayFetch(day, "http://x/papers/date/d", 200,
                                        page=DayPage(day, (cards_only,), PageSource.CARDS)))
        matcher, templates = compile_rules(config), Templates.load(None)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        assert await compose(store, config, matcher, templates, config.readers[0], now=later) is None
        gone = dt.datetime.combine(day, dt.time(9), dt.UTC) + dt.timedelta(days=config.source.lookback_days)
        composed = await compose(store, config, matcher, templates, config.readers[0], now=gone)
    assert composed is not None and [i.paper.id for i in composed.items] == ["2503.99999"]


@pytest.mark.e2e
async def test_a_5xx_to_every_recipient_of_a_run_is_about_us_and_fails_nobody(tmp_path: Path) -> None:
    """Two readers refused alike in one run: the server is refusing us, not them. Both wait, the
    operator is told once (not again on the next try), and both go out once the server accepts."""
    refusal = "550 5.7.0 mail from this client is not accepted"
    recorder = Recorder(refuse={"alice@example.org": refusal, "bob@example.org": refusal})
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder) as smtp:
            config = load_config(write_config(tmp_path, hf, smtp=smtp))
            assert (await paperwatch("-c", str(config.path), "fetch"))[0] == 0
            now = dt.datetime.now(dt.UTC)
            async with await Store.open(config.database) as store:
                await queue_digests(store, config, compile_rules(config), Templates.load(None), config.readers, now=now)
                first = await deliver_due(store, config, now=now)
                second = await deliver_due(store, config, now=now + dt.timedelta(minutes=10))
                held = await store.messages()
                recorder.refuse.clear()
                third = await deliver_due(store, config, now=now + dt.timedelta(hours=2))
                done = await store.messages()
    assert [o.text for o in first] == [f"will retry in 0:01:00: {refusal}"] * 2
    assert not any(o.ok for o in second) and len(second) == 3
    assert sorted((m.reader, m.status) for m in held) == [
        ("(operator)", "pending"), ("alice", "pending"), ("bob", "pending")]
    assert [o.ok for o in third] == [True, True, True] and {m.status for m in done} == {"sent"}
    assert sorted(r.recipients[0] for r in recorder.received) == [
        "alice@example.org", "bob@example.org", "ops@example.org"]
    [note] = recorder.messages_to("ops@example.org")
    assert refusal in note.get_content()


@pytest.mark.e2e
async def test_a_reader_with_a_non_ascii_address_gets_it_by_smtputf8(tmp_path: Path) -> None:
    """The domain goes as IDNA, the local part as UTF-8 (never RFC 2047 words inside an address)."""
    readers = READERS.replace('email = "alice@example.org"', 'email = "José <josé@bücher.example>"')
    recorder = Recorder()
    async with FakeHF() as hf:
        serve_samples(hf)
        with SmtpServer(recorder, smtputf8=True) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp, readers=readers)
            code, out, err = await paperwatch("-c", str(path), "run", "--once")
    assert code == 0, out + err
    [message] = recorder.messages_to("josé@xn--bcher-kva.example")
    raw = next(r.data for r in recorder.received if r.recipients == ["josé@xn--bcher-kva.example"])
    assert "\r\nTo: José <josé@xn--bcher-kva.example>\r\n".encode() in raw, raw[:400]
    parsed = email.message_from_string(raw.decode(), policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "josé@xn--bcher-kva.example" and message is not None


def test_an_operator_note_is_built_like_a_digest_and_reads_back_whole(tmp_path: Path) -> None:
    """Notes to the operator go through the same message builder as digests: the same header
    rules, quoted-printable text, a non-ASCII address as UTF-8, and the text as written."""
    from paperwatch.message import build_notice

    text = "paperwatch cannot read https://huggingface.co as it should: the page changed shape.\n\n" \
           "    2025-03-07: read from the API — «changed shape»\n" + "x" * 200 + "\n"
    raw = build_notice("paperwatch: source failing", text, sender="paperwatch <pw@example.org>",
                       to="José <josé@example.org>", message_id="<n@example.org>",
                       date=dt.datetime(2025, 3, 7, 8, tzinfo=dt.UTC), utf8=True)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78 and b"=?" not in raw
    note = email.message_from_bytes(raw, policy=email.policy.SMTPUTF8)
    assert note["To"] == "José <josé@example.org>" and note["Auto-Submitted"] == "auto-generated"
    assert note.get_content().replace("\r\n", "\n") == text
