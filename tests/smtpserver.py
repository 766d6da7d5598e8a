"""A real SMTP server on loopback (aiosmtpd) that records what it receives and can misbehave.

It runs in its own thread, so both in-process tests and a paperwatch subprocess can talk to
it. Replies are scripted: ``data_replies`` answers the next DATA commands (``"451 ..."``),
``refuse`` answers RCPT for given addresses, ``refuse_sender`` answers every MAIL FROM,
``drop_after_data`` keeps a message and then hangs up before saying 250 (the crash window
the outbox must survive), ``stall_data`` seconds of silence after the next DATA (a timeout).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

PASSWORD = "s3cret pass"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    tls: bool
    user: str | None
    mail_options: list[str] = field(default_factory=list)

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """The handler: what arrived, and the script of replies still to give."""

    received: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    drop_after_data: int = 0
    refuse_sender: str | None = None
    stall_data: float = 0.0
    auth_attempts: list[str] = field(default_factory=list)
    auth_mechanisms: list[str] = field(default_factory=list)
    refuse_hello: str | None = None  # the reply to EHLO and HELO
    mail_commands: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        if self.refuse_hello:
            return [self.refuse_hello]
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        if self.refuse_hello:
            return self.refuse_hello
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        self.mail_commands += 1
        if self.refuse_sender is not None:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stall_data:
            stall, self.stall_data = self.stall_data, 0.0
            await asyncio.sleep(stall)  # the client gives up first; what it sent is not kept
            return "451 4.4.2 too slow"
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
            self.received.append(Received(
                sender=str(envelope.mail_from), recipients=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""), tls=session.ssl is not None or _encrypted(server),
                user=login.decode() if login else None, mail_options=list(envelope.mail_options),
            ))
            if self.drop_after_data:
                self.drop_after_data -= 1
                assert server.transport is not None
                server.transport.abort()
        return "250 Message accepted for delivery"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.auth_attempts.append(auth_data.login.decode())
        self.auth_mechanisms.append(mechanism)
        return AuthResult(success=auth_data.password == PASSWORD.encode(), handled=False, auth_data=auth_data)

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.recipients]


class Certificates:
    """A private CA and a certificate for 127.0.0.1 and localhost, made for the test."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context


class SmtpServer:
    """``mode``: "plain" (no TLS at all), "starttls" (offered and required) or "tls" (implicit)."""

    def __init__(self, recorder: Recorder, *, mode: str = "plain", certificates: Certificates | None = None,
                 auth: bool = False, smtputf8: bool = False) -> None:
        self.recorder = recorder
        self.port = free_port()
        context = certificates.server_context() if certificates else None
        kwargs: dict[str, Any] = {"auth_require_tls": mode != "plain", "enable_SMTPUTF8": smtputf8}
        if auth:
            kwargs["authenticator"] = recorder.authenticate
        if mode == "starttls":
            kwargs |= {"tls_context": context, "require_starttls": True}
        self.controller = Controller(recorder, hostname="127.0.0.1", port=self.port,
                                     ssl_context=context if mode == "tls" else None,
                                     server_hostname="fake-smtp.test", **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def _encrypted(server: SMTP) -> bool:
    return server.transport is not None and server.transport.get_extra_info("ssl_object") is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
