"""Delivery through a real Postfix (Debian's), with STARTTLS and Dovecot SASL, on loopback.

One private instance for the whole module: its own config_directory and queue in a temporary
folder, listening on 127.0.0.1 at a free port, with Postfix's default smtpd restrictions plus
``reject_non_fqdn_sender`` (checked after RCPT, as ``smtpd_delay_reject`` does by default), a
certificate from a test CA, SASL through Dovecot, and virtual Maildirs for alice, bob and ops.
Postfix's master must run as root; the tests skip where it cannot (or fail, in CI).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from conftest import require_system
from fakehf import FakeHF
from paperwatch.config import Config, load_config
from paperwatch.delivery import OPERATOR, deliver_due, queue_digests
from paperwatch.digest import Templates
from paperwatch.ruleset import compile_rules
from paperwatch.store import Store
from smtpserver import PASSWORD, Certificates, free_port
from support import paperwatch, serve_samples, write_config, write_smtp_login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MAILBOXES = ("alice", "bob", "ops")
WAIT = 30.0  # seconds for Postfix to start or to put a message in a Maildir


class Postfix:
    """A private Postfix and Dovecot (for SASL) under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.conf, self.mail, self.dovecot = root / "etc", root / "mail", root / "dovecot"
        self.certificates = Certificates(root)
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        owner = pwd.getpwnam("postfix")
        for folder in (self.conf, self.mail, self.dovecot, self.root / "queue", self.root / "data"):
            folder.mkdir()
        for folder in (self.mail, self.root / "data"):
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        self.certificates.cert.private_key_and_cert_chain_pem.write_to_path(str(self.conf / "server.pem"))
        self._start_dovecot()
        (self.conf / "vmailbox").write_text("".join(f"{box}@example.org {box}/\n" for box in MAILBOXES))
        (self.conf / "main.cf").write_text(self._main_cf(owner))
        (self.conf / "master.cf").write_text(self._master_cf())
        self.processes.append(subprocess.Popen(["postfix", "-c", str(self.conf), "start-fg"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._wait(lambda: _listening(self.port), "Postfix to listen")

    def _start_dovecot(self) -> None:
        (self.dovecot / "users").write_text(f"alerts:{{PLAIN}}{PASSWORD}\n")
        (self.dovecot / "dovecot.conf").write_text(f"""\
base_dir = {self.dovecot}/run
state_dir = {self.dovecot}/state
log_path = {self.dovecot}/dovecot.log
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.dovecot}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {self.dovecot}/auth {{
    mode = 0666
  }}
}}
""")
        self.processes.append(subprocess.Popen(["dovecot", "-F", "-c", str(self.dovecot / "dovecot.conf")],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._wait(lambda: (self.dovecot / "auth").exists(), "Dovecot's auth socket")

    def _main_cf(self, owner: pwd.struct_passwd) -> str:
        return f"""\
compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
mail_owner = postfix
myhostname = mx.example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = {self.root}/maillog
maillog_file_prefixes = {self.root}
alias_maps =
alias_database =
smtpd_sender_restrictions = reject_non_fqdn_sender
smtpd_tls_security_level = may
smtpd_tls_chain_files = {self.conf}/server.pem
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.dovecot}/auth
virtual_mailbox_domains = example.org
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.conf}/vmailbox
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
virtual_minimum_uid = 1
"""

    def _master_cf(self) -> str:
        """Debian's stock services, none chrooted (the queue is in a temporary folder), smtpd on our port."""
        lines = []
        for line in Path("/usr/share/postfix/master.cf.dist").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 8 and not line[0].isspace() and not line.startswith("#"):
                if fields[:2] == ["smtp", "inet"]:
                    fields[0] = f"127.0.0.1:{self.port}"
                fields[4] = "n"
                line = " ".join(fields)
            lines.append(line)
        return "\n".join(lines) + "\n"

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not ready():  # type: ignore[operator]
            if any(p.poll() is not None for p in self.processes) or time.monotonic() > deadline:
                pytest.fail(f"waiting for {what} in vain; Postfix said:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, check=False, timeout=30)
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            process.wait(timeout=30)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self, box: str) -> list[EmailMessage]:
        folder = self.mail / box
        files = sorted(p for sub in ("new", "cur") if (folder / sub).is_dir() for p in (folder / sub).iterdir())
        parsed = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
        return [m for m in parsed if isinstance(m, EmailMessage)]

    def wait_for(self, box: str, count: int) -> list[EmailMessage]:
        """The Maildir's messages once it holds ``count`` (Postfix delivers after its 250)."""
        self._wait(lambda: len(self.messages(box)) >= count, f"{count} messages for {box}")
        return self.messages(box)

    def wait_log(self, text: str, count: int = 1) -> None:
        self._wait(lambda: self.log().count(text) >= count, f"{text!r} in the mail log")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    require_system("postfix", "postfix")
    require_system("dovecot", "dovecot-core")
    if os.geteuid() != 0:
        if os.environ.get("PAPERWATCH_REQUIRE_SYSTEM") == "1":
            pytest.fail("Postfix's master has to start as root: run the e2e tests as root")
        pytest.skip("Postfix's master has to start as root")
    # Not pytest's tmp_path: its parents are private to root, and Postfix's daemons run as postfix.
    root = Path(tempfile.mkdtemp(prefix="paperwatch-postfix-"))
    root.chmod(0o755)
    server = Postfix(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def configured(tmp_path: Path, hf: FakeHF, postfix: Postfix, readers: str | None = None) -> Config:
    """A config delivering through the Postfix over STARTTLS with a login, its papers fetched."""
    serve_samples(hf)
    extra = {} if readers is None else {"readers": readers}
    path = write_smtp_login(write_config(tmp_path, hf, smtp=postfix, **extra), postfix.certificates)  # type: ignore[arg-type]
    assert (await paperwatch("-c", str(path), "fetch"))[0] == 0
    return load_config(path)


def set_from(config: Config, old: str, new: str) -> Config:
    """The config with ``mail.from`` changed from ``old`` to ``new``, as an operator would edit it."""
    assert config.path is not None
    text = config.path.read_text()
    assert f'from = "{old}"' in text
    config.path.write_text(text.replace(f'from = "{old}"', f'from = "{new}"'))
    return load_config(config.path)


async def queue_all(store: Store, config: Config, now: dt.datetime) -> None:
    await queue_digests(store, config, compile_rules(config), Templates.load(None), config.readers, now=now)


GOOD_FROM, LOCAL_FROM = "paperwatch <pw@example.org>", "paperwatch <paperwatch@localhost>"


async def test_a_digest_arrives_through_postfix_over_starttls_with_a_login(tmp_path: Path, postfix: Postfix) -> None:
    async with FakeHF() as hf:
        config = await configured(tmp_path, hf, postfix)
    now = dt.datetime.now(dt.UTC)
    async with await Store.open(config.database) as store:
        await queue_all(store, config, now)
        outcomes = await deliver_due(store, config, now=now)
        queued = {m.reader: m.message_id for m in await store.messages()}
    assert [o.ok for o in outcomes] == [True, True], outcomes
    [alice], [bob] = postfix.wait_for("alice", 1), postfix.wait_for("bob", 1)
    assert alice["Message-ID"] == queued["alice"] and bob["Message-ID"] == queued["bob"]
    assert alice["To"] == "alice@example.org" and alice["From"] == GOOD_FROM
    assert "with ESMTPSA" in alice["Received"]  # Postfix's word for: over TLS (S), after a login (A)
    assert alice.get_body(("html",)) is not None


async def test_a_sender_refused_at_rcpt_fails_nothing_and_goes_out_once_fixed(tmp_path: Path, postfix: Postfix) -> None:
    """Postfix refuses a sender at localhost after RCPT: ``504 5.5.2 <paperwatch@localhost>: Sender
    address rejected``. Every digest waits, the operator is told once, and after `from` is fixed
    the same digests go out, once each."""
    async with FakeHF() as hf:
        config = set_from(await configured(tmp_path, hf, postfix), GOOD_FROM, LOCAL_FROM)
    before = {box: len(postfix.messages(box)) for box in MAILBOXES}
    now = dt.datetime.now(dt.UTC)
    async with await Store.open(config.database) as store:
        await queue_all(store, config, now)
        first = await deliver_due(store, config, now=now)
        again = await deliver_due(store, config, now=now + dt.timedelta(minutes=5))
        held = await store.messages()
        config = set_from(config, LOCAL_FROM, GOOD_FROM)
        fixed = await deliver_due(store, config, now=now + dt.timedelta(hours=2))
        later = await deliver_due(store, config, now=now + dt.timedelta(days=1))
        done = await store.messages()
    refusal = "504 5.5.2 <paperwatch@localhost>: Sender address rejected: need fully-qualified address"
    assert [o.text for o in first] == [f"will retry in 0:01:00: {refusal}"] * 2
    assert len(again) == 3 and not any(o.ok for o in again)  # the operator's note waits too
    assert sorted((m.reader, m.status) for m in held) == [(OPERATOR, "pending"), ("alice", "pending"),
                                                          ("bob", "pending")]
    [note] = [m for m in held if m.reader == OPERATOR]
    assert refusal in " ".join(email.message_from_bytes(note.data, policy=email.policy.default).get_content().split())
    assert [o.ok for o in fixed] == [True, True, True] and later == []
    assert all(m.status == "sent" for m in done) and len(done) == 3
    arrived = {box: postfix.wait_for(box, before[box] + 1)[before[box]:] for box in MAILBOXES}
    assert {box: len(found) for box, found in arrived.items()} == {"alice": 1, "bob": 1, "ops": 1}
    ids = {m.reader: m.message_id for m in done}
    assert arrived["alice"][0]["Message-ID"] == ids["alice"] and arrived["bob"][0]["Message-ID"] == ids["bob"]
    assert refusal in arrived["ops"][0].get_content()


async def test_one_refused_recipient_fails_only_that_digest(tmp_path: Path, postfix: Postfix) -> None:
    readers = """
[[readers]]
name = "alice"
email = "alice@example.org"
[[readers.rules]]
name = "linear attention"
keywords = ["linear transformer", "linear attention"]

[[readers]]
name = "zed"
email = "zed@example.org"
[[readers.rules]]
name = "deep learning"
keywords = ["deep learning"]
"""
    async with FakeHF() as hf:
        config = await configured(tmp_path, hf, postfix, readers)
    before = len(postfix.messages("alice"))
    now = dt.datetime.now(dt.UTC)
    async with await Store.open(config.database) as store:
        await queue_all(store, config, now)
        outcomes = {o.reader: o for o in await deliver_due(store, config, now=now)}
        messages = {m.reader: m for m in await store.messages()}
    assert outcomes["alice"].ok and not outcomes["zed"].ok
    assert messages["zed"].status == "failed" and messages["alice"].status == "sent" and OPERATOR not in messages
    assert messages["zed"].last_error == ("refused: 550 5.1.1 <zed@example.org>: Recipient address rejected: "
                                          "User unknown in virtual mailbox table")
    postfix.wait_for("alice", before + 1)


@pytest.mark.slow
async def test_a_wrong_password_is_tried_once_then_not_for_30_minutes(tmp_path: Path, postfix: Postfix) -> None:
    """One mechanism per attempt (no LOGIN after a refused PLAIN), no new attempt for half an hour
    with the same password, the operator told once; a corrected password is tried at once."""
    async with FakeHF() as hf:
        config = await configured(tmp_path, hf, postfix)
    assert config.mail.smtp is not None and config.mail.smtp.password_file is not None
    secret = config.mail.smtp.password_file
    secret.write_text("not it\n")
    failures = postfix.log().count("authentication failed")
    now = dt.datetime.now(dt.UTC)
    async with await Store.open(config.database) as store:
        await queue_all(store, config, now)
        first = await deliver_due(store, config, now=now)
        postfix.wait_log("authentication failed", failures + 1)
        soon = await deliver_due(store, config, now=now + dt.timedelta(minutes=29))
        half_hour = await deliver_due(store, config, now=now + dt.timedelta(minutes=31))
        postfix.wait_log("authentication failed", failures + 2)
        notes = [m for m in await store.messages() if m.reader == OPERATOR]
        secret.write_text(PASSWORD + "\n")
        fixed = await deliver_due(store, config, now=now + dt.timedelta(minutes=32))
        statuses = {m.reader: m.status for m in await store.messages()}
    assert first[0].text.startswith("will retry in 0:30:00: 535 5.7.8") and not any(o.ok for o in first)
    assert not any(o.ok for o in soon) and soon[0].text.startswith("waits for the login until")
    assert len(half_hour) == 3 and not any(o.ok for o in half_hour)
    log = postfix.log()
    assert log.count("authentication failed") == failures + 2, "one mechanism per attempt, one attempt per 30 min"
    assert len(notes) == 1
    assert [o.ok for o in fixed] == [True, True, True] and set(statuses.values()) == {"sent"}


@pytest.mark.slow
async def test_check_smtp_logs_in_and_quits_without_sending(tmp_path: Path, postfix: Postfix) -> None:
    async with FakeHF() as hf:
        config = await configured(tmp_path, hf, postfix)
    assert config.path is not None
    code, out, err = await paperwatch("-c", str(config.path), "check", "--smtp")
    assert code == 0, err
    assert "STARTTLS: TLSv1.3, certificate verified" in out and "logged in as alerts (PLAIN)" in out
    assert "quit without sending" in out and "SMTPUTF8 offered" in out
    async with await Store.open(config.database) as store:
        assert await store.messages() == []
    secret = config.path.parent / "smtp-password"
    secret.write_text("not it\n")
    code, out, err = await paperwatch("-c", str(config.path), "check", "--smtp")
    assert code == 1 and "535 5.7.8" in err and "not it" not in err
