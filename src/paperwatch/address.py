"""One mailbox: ``alice@example.org`` or ``Alice Smith <alice@example.org>``, and nothing else.

The config's ``email``, ``from`` and ``admin`` are each parsed here, once: ``check``, the
headers and the SMTP envelope all read the same result, so no two of them can disagree about
where a digest goes. The rule is deliberately narrower than RFC 5322: no groups, no comments,
no quoted local parts, no second mailbox, no display name that looks like an address. Each of
those has been used to make one program read an address differently from another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address

# atext of RFC 5322, plus any non-ASCII character (RFC 6531's UTF8-non-ascii): every character
# but controls, space and the specials. (Written as the range up to U+10FFFF, it took 14 ms to
# compile at every start.)
_ATEXT = r"[^\x00-\x20\"(),.:;<>@\[\\\]\x7f]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# an unquoted display name: words and the dots of initials ("J. R. Smith"), nothing that separates mailboxes
_PHRASE = re.compile(rf"(?:{_ATEXT}|[ .])+")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A parsed mailbox; ``domain`` is as written, ``address`` uses its IDNA (ASCII) form."""

    name: str
    local: str
    domain: str
    ascii_domain: str

    @property
    def address(self) -> str:
        """The addr-spec for the SMTP envelope and the headers."""
        return f"{self.local}@{self.ascii_domain}"

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part has no ASCII form: only a server offering SMTPUTF8 can take it."""
        return not self.local.isascii()

    def header(self) -> str:
        """``Name <local@domain>`` as a header value, the name quoted where it has to be."""
        return str(Address(display_name=self.name, username=self.local, domain=self.ascii_domain))


def parse_mailbox(text: str) -> Mailbox:
    """Exactly one mailbox, or ValueError saying what is wrong with ``text``."""
    if _CONTROL.search(text):
        raise ValueError(f"{text!r} holds a line break or control character")
    text = text.strip()
    if text.count("@") > 1 and re.search(r"[,;]", text):
        raise ValueError(f"{text!r} names more than one mailbox: give exactly one address")
    if text.endswith(">"):
        head, angle, spec = text[:-1].rpartition("<")
        if not angle:
            raise ValueError(f"{text!r} has a '>' without its '<'")
        name = _display_name(head.strip(), text)
    else:
        name, spec = "", text
    if "<" in spec or ">" in spec:
        raise ValueError(f"{text!r} is not one address: write Name <user@example.org> or user@example.org")
    local, domain, ascii_domain = _addr_spec(spec.strip(), text)
    return Mailbox(name=name, local=local, domain=domain, ascii_domain=ascii_domain)


def _display_name(phrase: str, text: str) -> str:
    if "@" in phrase:
        raise ValueError(f"{text!r}: the name looks like an address, but mail would go to the one in <>")
    if phrase.startswith('"') and phrase.endswith('"') and len(phrase) >= 2:
        inner = phrase[1:-1]
        if re.search(r'(?<!\\)"', inner):
            raise ValueError(f"{text!r}: the quoted name has a stray quote")
        name = re.sub(r"\\(.)", r"\1", inner)
    elif phrase and not _PHRASE.fullmatch(phrase):
        bad = next(c for c in phrase if not _PHRASE.fullmatch(c))
        raise ValueError(f"{text!r}: {bad!r} in a name must be quoted: \"{phrase}\" <...>")
    else:
        name = phrase
    if "<" in name or ">" in name:
        raise ValueError(f"{text!r}: the name holds another address")
    return " ".join(name.split())


def _addr_spec(spec: str, text: str) -> tuple[str, str, str]:
    local, at, domain = spec.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{text!r} is not an email address")
    if local.startswith('"'):
        raise ValueError(f"{text!r}: a quoted local part is not accepted")
    if not _DOT_ATOM.fullmatch(local) or len(local.encode()) > 64:
        raise ValueError(f"{text!r}: {local!r} is not a valid mailbox name")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{text!r}: {domain!r} is not a valid domain name") from None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{text!r}: {domain!r} is not a valid domain name")
    return local, domain, ascii_domain
