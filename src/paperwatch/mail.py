"""Transports: hand a finished message to an SMTP server or drop it into a local Maildir.

Both take the exact bytes the outbox committed and either deliver them or raise MailError
saying whether a later try may succeed (``temporary``). Neither composes nor records
anything: the outbox decides what is due and what a failure means.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib

from paperwatch.address import parse_mailbox
from paperwatch.config import Config, MailConfig, SmtpConfig, unsafe_location
from paperwatch.errors import ConfigError, MailError

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "smtp-password"


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes


class Transport(Protocol):
    async def send(self, envelope: Envelope) -> None: ...


def describe(config: MailConfig) -> str:
    """One line for ``check`` and ``status``: where mail goes."""
    smtp = config.smtp
    if smtp is None:
        return f"Maildir {config.maildir}"
    login = f" as {smtp.username}" if smtp.username else ""
    return f"SMTP {smtp.host}:{smtp.port} ({smtp.security}){login}"


def read_password(smtp: SmtpConfig) -> str | None:
    """The SMTP password from ``password_file``, ``password_env`` or a systemd credential.

    A password file others may read is refused: the password would not be a secret."""
    if smtp.password_file is not None:
        return _secret_file(smtp.password_file, "mail.smtp.password_file")
    if smtp.password_env is not None:
        value = os.environ.get(smtp.password_env)
        if value is None:
            raise ConfigError([f"mail.smtp.password_env: the environment has no {smtp.password_env}"])
        return value
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        return _secret_file(Path(credentials) / CREDENTIAL_NAME, "credential smtp-password")
    if smtp.username is not None:
        raise ConfigError(["mail.smtp.username: a username needs a password: set password_file or password_env, "
                           f"or pass the systemd credential {CREDENTIAL_NAME}"])
    return None


def login_key(config: MailConfig) -> str:
    """A digest of where and as whom we log in: a refused login is not retried soon with the
    same settings, but a changed password or server is tried at once."""
    smtp = config.smtp
    if smtp is None or smtp.username is None:
        return ""
    try:
        password = read_password(smtp) or ""
    except ConfigError:
        password = ""
    return hashlib.sha256(f"{smtp.host}\0{smtp.port}\0{smtp.username}\0{password}".encode()).hexdigest()[:16]


def unsafe_config_file(path: Path | None, mail: MailConfig) -> str | None:
    """Why ``path`` is not safe to take an SMTP login from, or None.

    The file never holds the password (the config refuses one), so others may read it; but
    whoever can rewrite it can point ``host`` at their own server and collect the password
    with the next delivery, so group or others must not be able to write it."""
    if path is None or mail.smtp is None or mail.smtp.username is None:
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{path} can be changed by others (mode {stat.filemode(mode)}), and it names the SMTP login: "
                f"whoever edits it could send the password to a server of their own; chmod go-w {path}")
    where = unsafe_location(path)  # its owner, and its folder: either could put another file in its place
    return f"{where}, and it names the SMTP login" if where else None


def _secret_file(path: Path, where: str) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError([f"{where}: {path} can be read by others (mode {stat.filemode(mode)}); "
                               f"make it private: chmod 600 {path}"])
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {path}: {exc.strerror}"]) from None


@contextlib.asynccontextmanager
async def open_transport(config: MailConfig) -> AsyncIterator[Transport]:
    """The configured transport; SMTP keeps one connection for every message sent through it."""
    if config.smtp is None:
        assert config.maildir is not None  # resolved by load_config
        yield MaildirTransport(config.maildir)
        return
    try:
        password = read_password(config.smtp)
    except ConfigError as exc:
        raise SessionError(str(exc)) from None
    transport = SmtpTransport(config.smtp, password)
    try:
        await transport.connect()
        yield transport
    finally:
        await transport.close()


class SessionError(MailError):
    """A refusal that is about us, not about one reader: the connection, the greeting, TLS, the
    login or our sender address. Every message waits (none is failed) and the operator is told."""

    def __init__(self, message: str, *, reply: str | None = None) -> None:
        super().__init__(message, temporary=True, reply=reply)


class AuthError(SessionError):
    """The server refused our login: retrying soon only risks locking the account."""


# Enhanced status codes (RFC 3463) that speak of the sender or its right to send, not of a recipient:
# bad sender mailbox (1.7), sender system (1.8), auth required / not authorized / bad credentials,
# SPF, DKIM, DMARC.
_ABOUT_SENDER = {"1.7", "1.8", "7.0", "7.1", "7.8", "7.23", "7.25", "7.26", "7.27"}


def about_sender(message: str, sender: str) -> bool:
    """Whether a refusal at RCPT is really about our sender (Postfix checks the sender there,
    after RCPT, by default) rather than about the recipient named."""
    text = message.lower()
    if "recipient address" in text:
        return False
    named = re.search(rf"(?<![\w.+-]){re.escape(sender.lower())}(?![\w.-])", text) if sender else None
    if named or re.search(r"\bsender\b|authenticat|\brelay", text):
        return True
    code = re.match(r"\s*[245]\.(\d{1,3}\.\d{1,3})\b", message)
    return bool(code and code.group(1) in _ABOUT_SENDER)


class SmtpTransport:
    """One SMTP session, reconnected once if the server drops it between messages."""

    def __init__(self, smtp: SmtpConfig, password: str | None) -> None:
        self._config = smtp
        self._password = password
        self._client: aiosmtplib.SMTP | None = None
        self.steps: list[str] = []  # what the last connect did, for `check --smtp`

    @property
    def _where(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    @property
    def smtputf8(self) -> bool:
        return self._client is not None and self._client.supports_extension("smtputf8")

    async def connect(self) -> None:
        smtp = self._config
        client = aiosmtplib.SMTP(hostname=smtp.host, port=smtp.port, timeout=smtp.timeout,
                                 use_tls=smtp.security == "tls", start_tls=False, local_hostname=_local_hostname())
        self.steps = []
        try:
            context = _tls_context(smtp.ca_file) if smtp.security != "none" else None
            client.tls_context = context
            await client.connect()
            # Said here, not left to sendmail(): a refused EHLO is about us, not about a message.
            await _hello(client)
            self.steps.append(f"connected ({smtp.security}), greeting and EHLO accepted")
            if smtp.security == "starttls":
                await self._starttls(client, context)
            if smtp.username is not None and self._password is not None:
                await self._login(client, smtp.username, self._password)
        except BaseException as exc:
            client.close()
            if isinstance(exc, MailError):
                raise
            if isinstance(exc, (aiosmtplib.SMTPException, OSError, ssl.SSLError)):
                # Whatever stops the session itself (a refused greeting, EHLO or login) is the
                # operator's to fix, never a reader's fault: the mail stays queued.
                raise _session_error(exc, f"SMTP {self._where}") from None
            raise
        self._client = client

    async def _starttls(self, client: aiosmtplib.SMTP, context: ssl.SSLContext | None) -> None:
        if not client.supports_extension("starttls"):
            # Refused before any AUTH or MAIL: never fall back to plaintext.
            raise SessionError(f"SMTP {self._where} does not offer STARTTLS, and mail.smtp.security "
                               f"is \"starttls\": not sending in plaintext")
        await client.starttls(tls_context=context)
        version = client.get_transport_info("ssl_object")
        self.steps.append(f"STARTTLS: {version.version() if version else 'TLS'}, certificate verified")

    async def _login(self, client: aiosmtplib.SMTP, username: str, password: str) -> None:
        """One mechanism, the first both sides know: a refused password is not tried again with
        another (aiosmtplib's login() would), which counts twice against the account's lockout."""
        await client.ehlo()
        methods = [m for m in ("plain", "login", "cram-md5") if m in client.supported_auth_methods]
        if not methods:
            raise SessionError(f"SMTP {self._where} offers no login mechanism we know "
                               f"(AUTH {' '.join(client.server_auth_methods) or 'not offered'}); "
                               f"mail.smtp.username is set")
        await getattr(client, f"auth_{methods[0].replace('-', '')}")(username, password)
        self.steps.append(f"logged in as {username} ({methods[0].upper()})")

    async def send(self, envelope: Envelope) -> None:
        if self._client is None or not self._client.is_connected:
            await self.close()
            await self.connect()
        assert self._client is not None
        options = self._utf8_options(envelope)
        try:
            await self._transaction(self._client, envelope, options)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)):
                await self.close()  # the session is gone or unusable: the next message reconnects
            else:
                await self._reset()
            raise _send_error(exc, envelope.sender, f"SMTP {self._where}", envelope.message_id) from None

    @staticmethod
    async def _transaction(client: aiosmtplib.SMTP, envelope: Envelope, options: list[str]) -> None:
        """MAIL, RCPT and DATA, as ``sendmail`` does them, but with the SIZE the outbox already
        knows: ``sendmail`` runs the whole message through a regex to count its line ends, and
        ``data`` does it again, which was most of the CPU a digest cost to send."""
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        if client.supports_extension("size"):
            # Composed with CRLF line ends: the message's length is what DATA sends (and a
            # SIZE off by a line end or two is only a hint to the server).
            size = len(envelope.data) + (0 if envelope.data.endswith(b"\r\n") else 2)
            options = [f"SIZE={size}", *options]
        await client.mail(envelope.sender, options=options, encoding=encoding)
        refused = []
        for recipient in envelope.recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused.append(exc)
        if len(refused) == len(envelope.recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
        await _data(client, envelope.data)

    def _utf8_options(self, envelope: Envelope) -> list[str]:
        """SMTPUTF8 where an address has a non-ASCII local part (domains go as IDNA), if offered."""
        if envelope.sender.isascii() and all(r.isascii() for r in envelope.recipients):
            return []
        if self.smtputf8:
            return ["SMTPUTF8"]
        if not envelope.sender.isascii():
            raise SessionError(f"SMTP {self._where} does not offer SMTPUTF8, which mail.from "
                               f"{envelope.sender!r} needs (its name before @ is not ASCII)")
        raise MailError(f"SMTP {self._where} does not offer SMTPUTF8, which {', '.join(envelope.recipients)} "
                        f"needs (the name before @ is not ASCII): {envelope.message_id} waits", temporary=True)

    async def _reset(self) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            assert self._client is not None
            await self._client.rset()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()


async def _data(client: aiosmtplib.SMTP, data: bytes) -> None:
    """DATA, then the message with the dots that start its lines doubled and the final dot.

    ``client.data`` makes every line end CRLF and doubles the dots with two regular expressions
    over every byte: 0.4 s of CPU for a morning's 200 digests of 96 KB, more than building their
    bytes. Ours are built with CRLF line ends throughout, so here the dots are doubled by
    ``bytes.replace`` and the rest goes through aiosmtplib as it is: the DATA command and both
    replies by its own calls, the bytes by its protocol's ``write``, in one step of the event
    loop with the read that waits for the reply (so no reply can come before it is waited for).
    Bytes in any other form (a message queued by hand) take ``client.data``."""
    protocol = client.protocol
    if protocol is None or not _crlf_throughout(data):
        await client.data(data)
        return
    reply = await client.execute_command(b"DATA")
    if reply.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    protocol.write(b"." * data.startswith(b".") + data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    reply = await protocol.read_response(timeout=client.timeout)
    if reply.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)


def _crlf_throughout(data: bytes) -> bool:
    """Every line of ``data`` ends in CRLF, the last one too: what DATA sends, as it is."""
    crlf = data.count(b"\r\n")
    return data.endswith(b"\r\n") and data.count(b"\n") == crlf == data.count(b"\r")


async def probe(config: MailConfig, *, smtputf8: Sequence[str] = ()) -> list[str]:
    """``check --smtp``: connect, say hello, negotiate TLS, log in and quit without sending.
    ``smtputf8`` names the configured addresses that need SMTPUTF8. Raises MailError."""
    if config.smtp is None:
        return [f"mail goes to the Maildir {config.maildir}: no SMTP server to try"]
    transport = SmtpTransport(config.smtp, read_password(config.smtp))
    await transport.connect()
    try:
        steps = list(transport.steps)
        if smtputf8 and not transport.smtputf8:
            raise MailError(f"SMTP {config.smtp.host}:{config.smtp.port} does not offer SMTPUTF8, which "
                            f"{', '.join(smtputf8)} need: their mail would wait", temporary=True)
        steps.append("SMTPUTF8 offered" if transport.smtputf8 else "SMTPUTF8 not offered")
    finally:
        await transport.close()
    return [*steps, "quit without sending: the mail settings work"]


def mail_warnings(config: Config) -> list[str]:
    """What ``check`` should point out without refusing the config."""
    sender = parse_mailbox(config.mail.from_)
    if config.mail.smtp is not None and sender.ascii_domain in ("localhost", "localhost.localdomain"):
        return [f"mail.from: {sender.address} is at localhost, but mail goes out by SMTP: servers refuse "
                "or distrust it, and Message-ID and List-Id name localhost; set from to a real address"]
    return []


def utf8_addresses(config: Config) -> list[str]:
    """The configured addresses only a server offering SMTPUTF8 can take."""
    named = [config.mail.from_, config.paperwatch.admin, *(r.email for r in config.readers)]
    return [box.address for box in map(parse_mailbox, filter(None, named)) if box.needs_smtputf8]


async def _hello(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO where a server refuses EHLO but is still listening (as aiosmtplib would)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The verifying TLS context, built once per CA file (and again when the file changes):
    loading the system's certificates costs more than a whole delivery."""
    return _context_for(str(ca_file), ca_file.stat().st_mtime_ns) if ca_file else _context_for(None, 0)


@functools.lru_cache(maxsize=4)
def _context_for(ca_file: str | None, _version: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _local_hostname() -> str:
    # Not socket.getfqdn(), aiosmtplib's default: its reverse lookup can stall for
    # half a minute on a machine without working DNS.
    name = socket.gethostname()
    return name if "." in name else f"{name}.localdomain"


def _mail_error(exc: BaseException, context: str, *, temporary: bool = False) -> MailError:
    """A MailError for ``exc``: 4xx, timeouts and lost connections are worth another try, and so
    is anything ``temporary`` says is not the recipient's fault; a 5xx about the recipient or the
    message is final."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = f"{exc.code} {exc.message}".strip()
        temporary = temporary or 400 <= exc.code < 500
        return MailError(f"{context}: {reply}", temporary=temporary, reply=reply)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return MailError(f"{context}: TLS failed: {exc}", temporary=True)
    reason = str(exc) or type(exc).__name__
    return MailError(f"{context}: {reason}", temporary=True)


def _session_error(exc: BaseException, context: str) -> SessionError:
    """Connecting, greeting, EHLO, TLS or login failed: the same for every message."""
    error = _mail_error(exc, context, temporary=True)
    kind = AuthError if isinstance(exc, aiosmtplib.SMTPAuthenticationError) else SessionError
    return kind(str(error), reply=error.reply)


def _send_error(exc: BaseException, sender: str, where: str, message_id: str) -> MailError:
    """A refused sender (at MAIL, or at RCPT when the reply is about the sender) stops the
    session for every message; any other reply is about this one message."""
    refused = exc.recipients[0] if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients else exc
    if isinstance(refused, aiosmtplib.SMTPSenderRefused) or (
            isinstance(refused, aiosmtplib.SMTPRecipientRefused) and about_sender(refused.message, sender)):
        return _session_error(refused, f"{where}: sender {sender} refused")
    return _mail_error(exc, f"{where}: {message_id} not delivered")


class MaildirTransport:
    """Delivery into a Maildir (``tmp`` → ``new``), once per Message-ID.

    The file name is derived from the Message-ID, so a retry after a crash finds the
    message already delivered (in ``new`` or, once read, in ``cur``) and does nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def send(self, envelope: Envelope) -> None:
        try:
            self._deliver(envelope)
        except OSError as exc:
            raise MailError(f"Maildir {self.root}: cannot deliver {envelope.message_id}: {exc.strerror or exc}",
                            temporary=True) from None

    def _deliver(self, envelope: Envelope) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        key = hashlib.sha256(envelope.message_id.encode()).hexdigest()[:32]
        if self.delivered(key):
            log.info("%s is already in %s: not delivering it again", envelope.message_id, self.root)
            return
        name = f"{int(time.time())}.{key}.{socket.gethostname().replace('/', '_').replace(':', '_')}"
        temporary = self.root / "tmp" / name
        # Maildir messages use the local line ending; SMTP bytes use CRLF.
        data = envelope.data.replace(b"\r\n", b"\n")
        # Private to the mailbox's owner, whatever the umask: a digest names its reader's interests.
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, self.root / "new" / name)
        _fsync_dir(self.root / "new")

    def delivered(self, key: str) -> bool:
        return any(f".{key}." in name for sub in ("new", "cur") for name in os.listdir(self.root / sub))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
