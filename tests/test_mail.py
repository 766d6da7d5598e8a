"""Transports against a real SMTP server on loopback and a real Maildir."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from paperwatch.config import Config, MailConfig, SmtpConfig
from paperwatch.errors import ConfigError, MailError
from paperwatch.mail import (
    AuthError,
    Envelope,
    SessionError,
    describe,
    mail_warnings,
    open_transport,
    probe,
    read_password,
    unsafe_config_file,
)
from smtpserver import PASSWORD, Certificates, Recorder, SmtpServer

MESSAGE = (b"From: paperwatch <pw@example.org>\r\nTo: alice@example.org\r\nSubject: hi\r\n"
           b"Message-ID: <1@example.org>\r\n\r\nbody\r\n")


def envelope(to: str = "alice@example.org", message_id: str = "<1@example.org>") -> Envelope:
    return Envelope(sender="pw@example.org", recipients=(to,), message_id=message_id, data=MESSAGE)


def smtp_config(server: SmtpServer, tmp_path: Path, **values: object) -> MailConfig:
    smtp = SmtpConfig.model_validate({"host": "127.0.0.1", "port": server.port, "timeout": 5, **values})
    return MailConfig.model_validate({"from": "pw@example.org", "smtp": smtp.model_dump(), "maildir": tmp_path})


def password_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "smtp-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(mode)
    return path


async def send(config: MailConfig, *envelopes: Envelope) -> None:
    async with open_transport(config) as transport:
        for item in envelopes:
            await transport.send(item)


async def test_starttls_verifies_the_certificate_then_logs_in(tmp_path: Path) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder()
    with SmtpServer(recorder, mode="starttls", certificates=certificates, auth=True) as server:
        config = smtp_config(server, tmp_path, security="starttls", ca_file=str(certificates.ca_file),
                             username="alerts", password_file=str(password_file(tmp_path)))
        await send(config, envelope(), envelope("bob@example.org", "<2@example.org>"))
    assert [(r.recipients, r.tls, r.user) for r in recorder.received] == [
        (["alice@example.org"], True, "alerts"), (["bob@example.org"], True, "alerts")]
    assert recorder.received[0].data.replace(b"\r\n", b"\n").endswith(b"body\n")


async def test_implicit_tls(tmp_path: Path) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder()
    with SmtpServer(recorder, mode="tls", certificates=certificates) as server:
        await send(smtp_config(server, tmp_path, security="tls", ca_file=str(certificates.ca_file)), envelope())
    assert [r.tls for r in recorder.received] == [True]


async def test_an_unknown_certificate_authority_is_refused(tmp_path: Path) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder()
    with SmtpServer(recorder, mode="starttls", certificates=certificates) as server:
        with pytest.raises(MailError, match="certificate") as caught:
            await send(smtp_config(server, tmp_path, security="starttls"), envelope())
    assert caught.value.temporary
    assert recorder.mail_commands == 0


async def test_a_private_ca_file_that_is_missing_keeps_the_mail_queued(tmp_path: Path) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder()
    with SmtpServer(recorder, mode="starttls", certificates=certificates) as server:
        config = smtp_config(server, tmp_path, security="starttls", ca_file=str(tmp_path / "gone.pem"))
        with pytest.raises(MailError, match="gone.pem") as caught:
            await send(config, envelope())
        assert caught.value.temporary and recorder.mail_commands == 0
        await send(smtp_config(server, tmp_path, security="starttls", ca_file=str(certificates.ca_file)), envelope())
    assert len(recorder.received) == 1 and recorder.received[0].tls


async def test_starttls_missing_fails_before_auth_and_before_mail(tmp_path: Path) -> None:
    recorder = Recorder()
    with SmtpServer(recorder, mode="plain", auth=True) as server:
        config = smtp_config(server, tmp_path, security="starttls", username="alerts",
                             password_file=str(password_file(tmp_path)))
        with pytest.raises(MailError, match="does not offer STARTTLS") as caught:
            await send(config, envelope())
    assert caught.value.temporary
    assert recorder.auth_attempts == [] and recorder.mail_commands == 0 and recorder.received == []


async def test_4xx_is_temporary_5xx_is_permanent_and_the_session_goes_on(tmp_path: Path) -> None:
    recorder = Recorder(data_replies=["451 4.3.0 try again later"],
                        refuse={"nobody@example.org": "550 5.1.1 no such user"})
    with SmtpServer(recorder) as server:
        async with open_transport(smtp_config(server, tmp_path, security="none")) as transport:
            with pytest.raises(MailError) as later:
                await transport.send(envelope())
            with pytest.raises(MailError) as never:
                await transport.send(envelope("nobody@example.org", "<2@example.org>"))
            await transport.send(envelope("bob@example.org", "<3@example.org>"))
    assert later.value.temporary and later.value.reply == "451 4.3.0 try again later"
    assert not never.value.temporary and never.value.reply == "550 5.1.1 no such user"
    assert [r.recipients for r in recorder.received] == [["bob@example.org"]]


async def test_the_size_announced_is_the_message_sent_and_leading_dots_survive(tmp_path: Path) -> None:
    dotted = MESSAGE + b".\r\n..two dots\r\n.\r\nend\r\n"
    recorder = Recorder()
    with SmtpServer(recorder) as server:
        async with open_transport(smtp_config(server, tmp_path, security="none")) as transport:
            await transport.send(Envelope("pw@example.org", ("alice@example.org",), "<1@example.org>", dotted))
    [received] = recorder.received
    assert received.data == dotted
    assert f"SIZE={len(dotted)}" in received.mail_options


async def test_a_message_with_bare_line_ends_arrives_with_crlf_and_its_dots(tmp_path: Path) -> None:
    """Bytes not composed by paperwatch (LF or CR line ends, no final line end) are sent as
    aiosmtplib normalizes them; composed ones as they are. Both arrive whole."""
    loose = b"From: pw@example.org\nSubject: loose\n\n.first\rsecond\n.\nlast"
    recorder = Recorder()
    with SmtpServer(recorder) as server:
        async with open_transport(smtp_config(server, tmp_path, security="none")) as transport:
            await transport.send(Envelope("pw@example.org", ("alice@example.org",), "<1@example.org>", loose))
            await transport.send(Envelope("pw@example.org", ("bob@example.org",), "<2@example.org>", MESSAGE))
    assert [r.data for r in recorder.received] == [
        b"From: pw@example.org\r\nSubject: loose\r\n\r\n.first\r\nsecond\r\n.\r\nlast\r\n", MESSAGE]


async def test_one_refused_recipient_of_two_still_lets_the_other_have_it(tmp_path: Path) -> None:
    recorder = Recorder(refuse={"nobody@example.org": "550 5.1.1 no such user"})
    with SmtpServer(recorder) as server:
        async with open_transport(smtp_config(server, tmp_path, security="none")) as transport:
            await transport.send(Envelope("pw@example.org", ("nobody@example.org", "bob@example.org"),
                                          "<1@example.org>", MESSAGE))
    assert [r.recipients for r in recorder.received] == [["bob@example.org"]]


async def test_a_dropped_connection_is_temporary_and_the_next_message_reconnects(tmp_path: Path) -> None:
    recorder = Recorder(drop_after_data=1)
    with SmtpServer(recorder) as server:
        async with open_transport(smtp_config(server, tmp_path, security="none")) as transport:
            with pytest.raises(MailError) as caught:
                await transport.send(envelope())
            await transport.send(envelope("bob@example.org", "<2@example.org>"))
    assert caught.value.temporary
    assert [r.recipients for r in recorder.received] == [["alice@example.org"], ["bob@example.org"]]


async def test_a_server_that_is_down_is_a_temporary_failure(tmp_path: Path) -> None:
    with SmtpServer(Recorder()) as server:
        config = smtp_config(server, tmp_path, security="none")
    with pytest.raises(MailError) as caught:
        await send(config, envelope())
    assert caught.value.temporary and f"127.0.0.1:{server.port}" in str(caught.value)


async def test_a_wrong_password_keeps_mail_queued(tmp_path: Path) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder()
    path = tmp_path / "wrong"
    path.write_text("not it")
    path.chmod(0o600)
    with SmtpServer(recorder, mode="starttls", certificates=certificates, auth=True) as server:
        config = smtp_config(server, tmp_path, ca_file=str(certificates.ca_file), username="alerts",
                             password_file=str(path))
        with pytest.raises(MailError) as caught:
            await send(config, envelope())
    assert caught.value.temporary and caught.value.reply and caught.value.reply.startswith("535")
    assert "not it" not in str(caught.value)


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smtp = SmtpConfig(host="smtp.example.org", username="alerts", password_file=password_file(tmp_path))
    assert read_password(smtp) == PASSWORD
    monkeypatch.setenv("PW_SMTP", "from env")
    assert read_password(SmtpConfig(host="smtp.example.org", password_env="PW_SMTP")) == "from env"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text("from systemd\n")
    (credentials / "smtp-password").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert read_password(SmtpConfig(host="smtp.example.org", username="alerts")) == "from systemd"


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    smtp = SmtpConfig(host="smtp.example.org", username="alerts", password_file=password_file(tmp_path, 0o644))
    with pytest.raises(ConfigError) as caught:
        read_password(smtp)
    assert caught.value.problems == [f"mail.smtp.password_file: {tmp_path / 'smtp-password'} can be read by "
                                     f"others (mode -rw-r--r--); make it private: chmod 600 "
                                     f"{tmp_path / 'smtp-password'}"]


def test_a_username_without_any_password_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="needs a password"):
        read_password(SmtpConfig(host="smtp.example.org", username="alerts"))
    with pytest.raises(ConfigError, match="has no PW_MISSING"):
        read_password(SmtpConfig(host="smtp.example.org", password_env="PW_MISSING"))


async def test_maildir_delivery_is_atomic_and_once_per_message_id(tmp_path: Path) -> None:
    config = MailConfig.model_validate({"maildir": tmp_path / "mail"})
    await send(config, envelope(), envelope(), envelope("bob@example.org", "<2@example.org>"))
    new = sorted((tmp_path / "mail" / "new").iterdir())
    assert len(new) == 2 and os.listdir(tmp_path / "mail" / "tmp") == []
    assert b"\r\n" not in new[0].read_bytes()
    # A reader's mail program moves read mail to cur/ with flags: still delivered.
    first = next(p for p in new if b"<1@example.org>" in p.read_bytes())
    first.rename(tmp_path / "mail" / "cur" / f"{first.name}:2,S")
    await send(config, envelope())
    assert len(os.listdir(tmp_path / "mail" / "new")) == 1


async def test_an_unwritable_maildir_is_a_temporary_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    config = MailConfig.model_validate({"maildir": tmp_path / "file" / "mail"})
    with pytest.raises(MailError, match="cannot deliver <1@example.org>") as caught:
        await send(config, envelope())
    assert caught.value.temporary


def test_describe() -> None:
    smtp = SmtpConfig(host="smtp.example.org", username="alerts", password_env="X")
    assert describe(MailConfig(smtp=smtp)) == "SMTP smtp.example.org:587 (starttls) as alerts"
    assert describe(MailConfig(maildir=Path("/var/mail/pw"))) == "Maildir /var/mail/pw"


async def test_a_server_that_stops_answering_is_a_timeout_and_the_next_message_reconnects(tmp_path: Path) -> None:
    recorder = Recorder(stall_data=3.0)
    with SmtpServer(recorder) as server:
        async with open_transport(smtp_config(server, tmp_path, security="none", timeout=1)) as transport:
            with pytest.raises(MailError, match="<1@example.org> not delivered: Timed out") as caught:
                await transport.send(envelope())
            await transport.send(envelope("bob@example.org", "<2@example.org>"))
    assert caught.value.temporary and caught.value.reply is None
    assert [r.recipients for r in recorder.received] == [["bob@example.org"]]


async def test_a_refused_sender_is_the_operators_problem_so_temporary(tmp_path: Path) -> None:
    """A 5xx to MAIL FROM says nothing about the reader: their digest waits for the operator's fix."""
    recorder = Recorder(refuse_sender="553 5.7.1 sender address not allowed")
    with SmtpServer(recorder) as server:
        with pytest.raises(MailError) as caught:
            await send(smtp_config(server, tmp_path, security="none"), envelope())
    assert caught.value.temporary and caught.value.reply == "553 5.7.1 sender address not allowed"


async def test_the_password_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not at DEBUG, not by aiosmtplib or asyncio, neither when the login works nor when it is refused."""
    caplog.set_level(logging.DEBUG)
    certificates, recorder = Certificates(tmp_path), Recorder()
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong " + PASSWORD)
    wrong.chmod(0o600)
    with SmtpServer(recorder, mode="starttls", certificates=certificates, auth=True) as server:
        for path in (password_file(tmp_path), wrong):
            config = smtp_config(server, tmp_path, ca_file=str(certificates.ca_file), username="alerts",
                                 password_file=str(path))
            with contextlib.suppress(MailError):
                await send(config, envelope())
    assert len(recorder.received) == 1 and len(recorder.auth_attempts) >= 2
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # mail.log: the test server's own
    assert ours, "nothing logged at all: the test would prove nothing"
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    assert PASSWORD not in logged and base64.b64encode(PASSWORD.encode()).decode() not in logged


async def test_maildir_messages_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        await send(MailConfig.model_validate({"maildir": tmp_path / "mail"}), envelope())
    finally:
        os.umask(old)
    [delivered] = (tmp_path / "mail" / "new").iterdir()
    assert delivered.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("mode", "login", "unsafe"), [
    (0o644, True, False),   # others may read it: it holds no password (the config refuses one)
    (0o600, True, False),
    (0o664, True, True),    # the group may rewrite host and collect the password
    (0o646, True, True),
    (0o666, False, False),  # no login, nothing to steal
])
def test_a_config_file_others_may_change_cannot_name_an_smtp_login(
        tmp_path: Path, mode: int, login: bool, unsafe: bool) -> None:
    path = tmp_path / "paperwatch.toml"
    path.write_text("")
    path.chmod(mode)
    smtp = SmtpConfig(host="smtp.example.org", username="alerts" if login else None, password_env="X")
    problem = unsafe_config_file(path, MailConfig(smtp=smtp))
    if unsafe:
        assert problem is not None and f"chmod go-w {path}" in problem and "can be changed by others" in problem
    else:
        assert problem is None


# -- who must act: a refusal about us stops the session, one about a recipient fails one message --


@pytest.mark.parametrize(("reply", "ours"), [
    ("504 5.5.2 <pw@example.org>: Sender address rejected: need fully-qualified address", True),
    ("553 5.7.1 <pw@example.org>: Sender address rejected: not owned by user alerts", True),
    ("554 5.7.1 <alice@example.org>: Relay access denied", True),
    ("530 5.7.0 Authentication required", True),
    ("550 5.1.7 bad sender mailbox syntax", True),
    ("550 5.7.26 unauthenticated mail from example.org is prohibited by its DMARC policy", True),
    ("550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown in virtual mailbox table", False),
    ("550 5.7.1 <alice@example.org>: Recipient address rejected: Access denied", False),
    ("504 5.5.2 <alice>: Recipient address rejected: need fully-qualified address", False),
    ("552 5.2.2 mailbox full", False),
    ("550 no such user here", False),
])
async def test_a_refusal_at_rcpt_is_ours_when_it_is_about_the_sender(tmp_path: Path, reply: str, ours: bool) -> None:
    recorder = Recorder(refuse={"alice@example.org": reply})
    with SmtpServer(recorder) as server:
        with pytest.raises(MailError) as caught:
            await send(smtp_config(server, tmp_path, security="none"), envelope())
    assert isinstance(caught.value, SessionError) is ours and caught.value.reply == reply
    assert caught.value.temporary is ours  # a recipient's 5xx is final for that one message


@pytest.mark.parametrize("security", ["none", "tls"])
async def test_a_refused_hello_is_ours_whatever_the_security(tmp_path: Path, security: str) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder(refuse_hello="554 5.7.1 go away")
    mode = "tls" if security == "tls" else "plain"
    with SmtpServer(recorder, mode=mode, certificates=certificates) as server:
        with pytest.raises(SessionError) as caught:
            await send(smtp_config(server, tmp_path, security=security, ca_file=str(certificates.ca_file)),
                       envelope())
    assert caught.value.reply == "554 5.7.1 go away" and recorder.mail_commands == 0


async def test_a_wrong_password_is_tried_with_one_mechanism_only(tmp_path: Path) -> None:
    """aiosmtplib's login() goes on with LOGIN after PLAIN failed: two strikes against the account."""
    certificates, recorder = Certificates(tmp_path), Recorder()
    path = tmp_path / "wrong"
    path.write_text("not it")
    path.chmod(0o600)
    with SmtpServer(recorder, mode="starttls", certificates=certificates, auth=True) as server:
        config = smtp_config(server, tmp_path, ca_file=str(certificates.ca_file), username="alerts",
                             password_file=str(path))
        with pytest.raises(AuthError):
            await send(config, envelope())
    assert recorder.auth_mechanisms == ["PLAIN"] and recorder.mail_commands == 0


def utf8_envelope(sender: str = "pw@example.org", to: str = "alice@example.org") -> Envelope:
    return Envelope(sender=sender, recipients=(to,), message_id="<u@example.org>",
                    data=f"From: {sender}\r\nTo: {to}\r\nSubject: hi\r\n\r\nbody\r\n".encode())


@pytest.mark.parametrize("offered", [True, False])
async def test_a_non_ascii_local_part_goes_by_smtputf8_or_waits(tmp_path: Path, offered: bool) -> None:
    recorder = Recorder()
    with SmtpServer(recorder, smtputf8=offered) as server:
        config = smtp_config(server, tmp_path, security="none")
        if offered:
            await send(config, utf8_envelope(to="josé@example.org"))
        else:
            with pytest.raises(MailError, match="does not offer SMTPUTF8, which josé@example.org needs") as caught:
                await send(config, utf8_envelope(to="josé@example.org"))
            assert caught.value.temporary and not isinstance(caught.value, SessionError)
            with pytest.raises(SessionError, match="mail.from"):
                await send(config, utf8_envelope(sender="josé@example.org"))
    assert [r.recipients for r in recorder.received] == ([["josé@example.org"]] if offered else [])
    assert recorder.mail_commands == (1 if offered else 0)


async def test_probe_logs_in_and_quits_without_a_mail_command(tmp_path: Path) -> None:
    certificates, recorder = Certificates(tmp_path), Recorder()
    with SmtpServer(recorder, mode="starttls", certificates=certificates, auth=True) as server:
        config = smtp_config(server, tmp_path, ca_file=str(certificates.ca_file), username="alerts",
                             password_file=str(password_file(tmp_path)))
        steps = await probe(config)
        with pytest.raises(MailError, match="does not offer SMTPUTF8, which josé@example.org need"):
            await probe(config, smtputf8=["josé@example.org"])
    assert steps[0] == "connected (starttls), greeting and EHLO accepted"
    assert steps[1].startswith("STARTTLS: TLSv1") and "logged in as alerts (PLAIN)" in steps
    assert steps[-1] == "quit without sending: the mail settings work"
    assert recorder.auth_attempts == ["alerts", "alerts"] and recorder.mail_commands == 0


@pytest.mark.parametrize(("sender", "smtp", "warned"), [
    ("paperwatch <paperwatch@localhost>", True, True),
    ("paperwatch <paperwatch@localhost>", False, False),
    ("paperwatch <pw@example.org>", True, False),
])
def test_check_warns_of_a_from_at_localhost_only_when_mail_goes_by_smtp(sender: str, smtp: bool, warned: bool) -> None:
    data: dict[str, object] = {"mail": {"from": sender}}
    if smtp:
        data["mail"] = {"from": sender, "smtp": {"host": "smtp.example.org"}}
    warnings = mail_warnings(Config.model_validate(data))
    assert bool(warnings) is warned
    assert all(w.startswith("mail.from: paperwatch@localhost is at localhost") for w in warnings)


def test_security_none_with_a_username_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match='username: security = "none" would send the password unencrypted'):
        SmtpConfig.model_validate({"host": "127.0.0.1", "security": "none", "username": "alerts"})
