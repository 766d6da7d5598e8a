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
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib

from paperwatch.config import MailConfig, SmtpConfig, unsafe_location
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
        raise MailError(str(exc), temporary=True) from None
    transport = SmtpTransport(config.smtp, password)
    try:
        await transport.connect()
        yield transport
    finally:
        await transport.close()


class SmtpTransport:
    """One SMTP session, reconnected once if the server drops it between messages."""

    def __init__(self, smtp: SmtpConfig, password: str | None) -> None:
        self._config = smtp
        self._password = password
        self._client: aiosmtplib.SMTP | None = None

    @property
    def _where(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    async def connect(self) -> None:
        smtp = self._config
        client = aiosmtplib.SMTP(hostname=smtp.host, port=smtp.port, timeout=smtp.timeout,
                                 use_tls=smtp.security == "tls", start_tls=False, local_hostname=_local_hostname())
        try:
            context = _tls_context(smtp.ca_file) if smtp.security != "none" else None
            client.tls_context = context
            await client.connect()
            if smtp.security == "starttls":
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    # Refused before any AUTH or MAIL: never fall back to plaintext.
                    raise MailError(f"SMTP {self._where} does not offer STARTTLS, and mail.smtp.security "
                                    f"is \"starttls\": not sending in plaintext", temporary=True)
                await client.starttls(tls_context=context)
            if smtp.username is not None and self._password is not None:
                await client.login(smtp.username, self._password)
        except BaseException as exc:
            client.close()
            if isinstance(exc, MailError):
                raise
            if isinstance(exc, (aiosmtplib.SMTPException, OSError, ssl.SSLError)):
                # Whatever stops the session itself (a refused greeting, EHLO or login) is the
                # operator's to fix, never a reader's fault: the mail stays queued.
                raise _mail_error(exc, f"SMTP {self._where}", temporary=True) from None
            raise
        self._client = client

    async def send(self, envelope: Envelope) -> None:
        if self._client is None or not self._client.is_connected:
            await self.close()
            await self.connect()
        assert self._client is not None
        try:
            await self._client.sendmail(envelope.sender, list(envelope.recipients), envelope.data)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)):
                await self.close()  # the session is gone or unusable: the next message reconnects
            else:
                await self._reset()
            raise _mail_error(exc, f"SMTP {self._where}: {envelope.message_id} not delivered") from None

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
        # A refused login or sender is the operator's to fix, the same for every reader: keep the mail queued.
        temporary = (temporary or 400 <= exc.code < 500
                     or isinstance(exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPSenderRefused))
        return MailError(f"{context}: {reply}", temporary=temporary, reply=reply)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return MailError(f"{context}: TLS failed: {exc}", temporary=True)
    reason = str(exc) or type(exc).__name__
    return MailError(f"{context}: {reason}", temporary=True)


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
