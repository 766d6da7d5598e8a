"""A message's bytes, as they go to the SMTP server or the Maildir: headers, Message-ID,
List-Id, quoted-printable parts; for digests and for the operator's notes alike.

Written here rather than through the email package where that is safe (its quoted-printable
and header folding are pure Python and cost more than rendering a digest); everything else
takes the email package's way, so the bytes are the same.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.policy
import email.utils
import hashlib
import re
from collections.abc import Callable
from typing import Protocol, cast

SUBJECT_LIMIT = 200
HEADER_LIMIT = 250
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# Control and invisible characters (bidi overrides, zero-width spaces) that have no place in a
# header or a line of text; whitespace (U+2028/2029 line separators too) is folded separately.
INVISIBLE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_SPACE = re.compile(r"\s+")


class Parts(Protocol):
    """What a digest renders: the subject and the two alternative bodies."""

    @property
    def subject(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def html(self) -> str: ...


def one_line(text: str) -> str:
    """One line of visible text: control and invisible characters gone, whitespace folded."""
    return _SPACE.sub(" ", INVISIBLE.sub("", text)).strip()


def header_text(value: str, limit: int = HEADER_LIMIT) -> str:
    """A header value cut to ``limit`` characters at a space, with no way to start a new header."""
    text = one_line(value)
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 1)
    return text[:cut if cut > limit // 2 else limit - 1] + "…"


def _angle(value: str) -> str:
    return value if value.startswith("<") and value.endswith(">") else f"<{value.strip('<>')}>"


def make_message_id(reader: str, key: str, domain: str = "paperwatch.invalid") -> str:
    """A Message-ID that is the same for the same reader and digest key, so a retry keeps its id."""
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"{domain!r} is not a domain name for a Message-ID")
    digest = hashlib.sha256(f"{reader}\0{key}".encode()).hexdigest()[:32]
    return f"<paperwatch.{digest}@{domain}>"


def message_domain(address: str) -> str:
    """The domain of ``address`` (``Name <user@domain>`` too) for Message-IDs, in ASCII; else ``localhost``."""
    _, at, domain = (email.utils.parseaddr(address)[1] or address).rpartition("@")
    if not at:
        return "localhost"
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"
    return domain if _DOMAIN.fullmatch(domain) else "localhost"


def _unsubscribe_url(value: str) -> str:
    """A URL as given (``mailto:op@example.org?subject=stop``), or ``mailto:`` and the address of
    ``op@example.org`` or ``Operator <op@example.org>``."""
    value = value.strip().strip("<>")
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>]+$", value):
        return value
    return f"mailto:{email.utils.parseaddr(value)[1] or value.replace(' ', '')}"


def qp_encode(text: str) -> bytes:
    """``text`` as UTF-8 in quoted-printable with CRLF line ends, by the C encoder: lines of at
    most 76 characters, 7-bit clean, whatever the SMTP server offers."""
    text = _lf(text)
    if not text.endswith("\n"):
        text += "\n"
    # Given LF line ends the encoder writes LF for its soft breaks too; a raw LF is then only ever one.
    return binascii.b2a_qp(text.encode(), istext=True).replace(b"\n", b"\r\n")


def _lf(text: str) -> str:
    """``text`` with each line end LF, whichever kind it was."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


_LINES_KEPT = 32_768  # a run's digests share about 16,000 distinct lines at 200 readers: 8 MB


class QpLines:
    """Quoted-printable a line at a time, each distinct line encoded once: ``encode(text)`` is
    ``qp_encode(text)``. The encoder carries nothing from one line to the next, and the digests
    of a run share most of their lines (a paper's title, authors and links in every reader's
    card, the page around the cards), so a run encodes a fifth of the bytes it sends."""

    __slots__ = ("_encoded", "_last")

    def __init__(self) -> None:
        self._encoded: dict[str, bytes] = {}
        # The last two texts encoded: the page checked against the budget is then sent (after the text part).
        self._last: list[tuple[str, bytes]] = []

    def encode(self, text: str) -> bytes:
        for seen, code in self._last:
            if seen is text:
                return code
        code = b"".join(self._lines(text))
        self._last = [(text, code), *self._last[:1]]
        return code

    def size(self, text: str) -> int:
        return sum(map(len, self._lines(text)))

    def lines(self, text: str) -> bytes:
        """``encode(text)`` for a text of whole lines, ready to join with other such texts: the
        empty text is no line. Not remembered as ``encode``'s last texts."""
        return b"".join(self._lines(text)) if text else b""

    def remember(self, text: str, code: bytes) -> None:
        """``code`` is ``encode(text)``, made of texts encoded apart (``lines``): ``encode`` answers with it."""
        self._last = [(text, code), *self._last[:1]]

    def _lines(self, text: str) -> list[bytes]:
        lines = _lf(text).split("\n")
        if len(lines) > 1 and not lines[-1]:  # the text's own last line end
            lines.pop()
        encoded = self._encoded
        if len(encoded) > _LINES_KEPT:
            encoded.clear()
        found = list(map(encoded.get, lines))
        for n, code in enumerate(found):
            if code is None:
                found[n] = encoded[lines[n]] = qp_encode(lines[n])
        return cast(list[bytes], found)


def encoded_size(html: str) -> int:
    """The size of an HTML part as sent: what Gmail's clip counts."""
    return len(qp_encode(html))


# Header values the email package writes back exactly as given, on one line: printable ASCII
# words between single spaces, nothing that reads as an encoded word, a comment or a quoted
# string; addresses as ``user@domain`` or ``Plain Words <user@domain>``. Anything else takes
# the email package's way (folding, RFC 2047, SMTPUTF8), which cost more than the rendering.
_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")
_PLAIN_ADDRESS = re.compile(r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)* )?"
                            r"<?[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+>?")
_ADDRESS_HEADERS = frozenset({"From", "To"})
_PLAIN_LINE = 78  # the policy's max_line_length: a longer line is folded


def _plain_line(name: str, value: str) -> bytes | None:
    """The header as the email package's SMTP policy writes it, made directly; None when the
    value needs its folding or encoding."""
    if (len(name) + 2 + len(value) > _PLAIN_LINE or not _PLAIN_VALUE.fullmatch(value) or "=?" in value
            or "(" in value or '"' in value or "\\" in value):
        return None
    if name in _ADDRESS_HEADERS and not _plain_address(value):
        return None
    return f"{name}: {value}\r\n".encode("ascii")


def _plain_address(value: str) -> bool:
    if not _PLAIN_ADDRESS.fullmatch(value) or value.count("@") != 1 or (value.count("<") != value.count(">")):
        return False
    address = value[value.index("<") + 1:-1] if "<" in value else value
    if ("<" in value and not value.endswith(">")) or ("<" not in value and " " in value):
        return False
    local, _, domain = address.partition("@")
    # Dots only between atoms: ".." or an edge dot makes the email package quote or flag it.
    return all(local.split(".")) and all(domain.split("."))


def build_message(rendered: Parts, *, sender: str, to: str, message_id: str, date: dt.datetime,
                  list_id: str, unsubscribe: str, utf8: bool = False,
                  encode: Callable[[str], bytes] = qp_encode) -> bytes:
    """A multipart/alternative message (text, then HTML) with exactly the headers paperwatch
    sets. The parts are encoded here (the email package's quoted-printable is pure Python and
    cost more than the rendering); the boundary holds "=_", which quoted-printable never does.
    ``utf8``: an address is not ASCII before the @, so the headers are written as UTF-8 (the
    message travels by SMTPUTF8), never as RFC 2047 words, which are not allowed in an address.
    ``encode``: a part's body as quoted-printable (``QpLines.encode`` shares a run's lines)."""
    headers = {
        "From": header_text(sender), "To": header_text(to), "Subject": header_text(rendered.subject, SUBJECT_LIMIT),
        "Date": email.utils.format_datetime(date), "Message-ID": _angle(header_text(message_id).replace(" ", "")),
        "List-Id": header_text(list_id), "List-Unsubscribe": _angle(_unsubscribe_url(header_text(unsubscribe))),
        "Auto-Submitted": "auto-generated", "MIME-Version": "1.0",
    }
    head = _head(headers, utf8)
    boundary = "=_" + hashlib.sha256(headers["Message-ID"].encode()).hexdigest()[:30]
    parts = [head, f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode()]
    # The line end before a boundary belongs to the boundary, so each part's own last one stays.
    for subtype, body in (("plain", rendered.text), ("html", rendered.html)):
        parts += [f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
                  f"Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode(), encode(body), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def list_id(reader: str, domain: str) -> str:
    """``paperwatch digest for NAME <LABEL.digest.DOMAIN>``: LABEL is the name when it is one word
    (letters, digits, ``-``, ``_``), else a slug of it and a short hash, so that no two readers share one."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", reader):
        label = reader
    else:
        label = re.sub(r"[^a-z0-9]+", "-", reader.lower()).strip("-")[:40].strip("-") or "reader"
        label += "-" + hashlib.sha256(reader.encode()).hexdigest()[:8]
    name = re.sub(r'[<>"\\()]', "", reader)  # the phrase must not look like the id or a comment
    return f"paperwatch digest for {name} <{label}.digest.{domain}>"


def _head(headers: dict[str, str], utf8: bool) -> bytes:
    """The header lines, each as the email package's SMTP policy writes it (SMTPUTF8's when
    ``utf8``: an address not ASCII before the @ travels as UTF-8, never as RFC 2047 words);
    ``headers`` is left holding each value as written."""
    policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    lines = []
    for name, value in headers.items():
        line = _plain_line(name, value)
        if line is None:  # as EmailMessage stores and writes it: each header is folded on its own
            name, parsed = policy.header_store_parse(name, value)
            headers[name] = str(parsed)
            line = policy.fold_binary(name, parsed)
        lines.append(line)
    return b"".join(lines)


def build_notice(subject: str, text: str, *, sender: str, to: str, message_id: str, date: dt.datetime,
                 utf8: bool = False) -> bytes:
    """A plain-text note (to the operator): the same headers a digest has, bar the list ones."""
    headers = {"From": header_text(sender), "To": header_text(to), "Subject": header_text(subject, SUBJECT_LIMIT),
               "Date": email.utils.format_datetime(date), "Message-ID": _angle(header_text(message_id).replace(" ", "")),
               "Auto-Submitted": "auto-generated", "MIME-Version": "1.0"}
    return b"".join([_head(headers, utf8), b'Content-Type: text/plain; charset="utf-8"\r\n',
                     b"Content-Transfer-Encoding: quoted-printable\r\n\r\n", qp_encode(text)])
