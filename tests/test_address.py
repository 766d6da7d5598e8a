"""One mailbox per address key: every trick that made ``check``, the headers and the envelope
disagree is a config error naming the key; what passes is read the same way everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperwatch.address import _DOT_ATOM, parse_mailbox
from paperwatch.config import load_config
from paperwatch.errors import ConfigError
from support import paperwatch


def toml_value(text: str) -> str:
    """A TOML basic string, control characters escaped (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


# (the address as written, what the error must say)
TRICKS = [
    ("alice@example.org, eve@attacker.example", "more than one mailbox"),
    ("alice@example.org; eve@attacker.example", "more than one mailbox"),
    ("Alice\r\nBcc: eve@attacker.example <alice@example.org>", "line break"),
    ("alice@example.org\nBcc: eve@attacker.example", "line break"),
    ("alice@example.org\x00", "control character"),
    ("eve@attacker.example <alice@example.org>", "the name looks like an address"),
    ('"eve@attacker.example" <alice@example.org>', "the name looks like an address"),
    ("Alice <alice@example.org> <eve@attacker.example>", "the name looks like an address"),
    ("Smith, Alice <alice@example.org>", "',' in a name must be quoted"),
    ('"alice@example.org"@attacker.example', "quoted local part"),
    ('"alice smith"@example.org', "quoted local part"),
    ("alice@example.org (Alice)", "is not a valid domain name"),
    ("friends: alice@example.org;", "is not a valid mailbox name"),
    ("alice", "is not an email address"),
    ("alice@-example.org", "is not a valid domain name"),
    ("ali ce@example.org", "is not a valid mailbox name"),
]
KEYS = {  # where each address key lives in the file, and the key path its error names
    "email": ("[[readers]]\nname = \"alice\"\nemail = {}\n", "readers.alice.email"),
    "from": ("[mail]\nfrom = {}\n", "mail.from"),
    "admin": ("[paperwatch]\nadmin = {}\n", "paperwatch.admin"),
}


@pytest.mark.parametrize("key", sorted(KEYS))
@pytest.mark.parametrize(("address", "reason"), TRICKS, ids=[t[0].encode("unicode_escape").decode() for t in TRICKS])
def test_every_address_trick_is_a_config_error_naming_the_key(tmp_path: Path, key: str, address: str,
                                                              reason: str) -> None:
    template, where = KEYS[key]
    path = tmp_path / "pw.toml"
    path.write_text(template.format(toml_value(address)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert f": {where}: " in problem and reason in problem, problem
    assert "\n" not in problem and "\r" not in problem  # one line, whatever the address held


@pytest.mark.e2e
async def test_check_prints_the_error_with_its_key_and_exits_78(tmp_path: Path) -> None:
    path = tmp_path / "pw.toml"
    path.write_text(KEYS["email"][0].format(toml_value("Smith, Alice <alice@example.org>")))
    code, out, err = await paperwatch("-c", str(path), "check")
    assert code == 78 and "readers.alice.email" in err and "must be quoted" in err, err


@pytest.mark.parametrize(("address", "header", "envelope", "utf8"), [
    ("alice@example.org", "alice@example.org", "alice@example.org", False),
    ("Alice Smith <alice@example.org>", "Alice Smith <alice@example.org>", "alice@example.org", False),
    ('"Smith, Alice" <alice@example.org>', '"Smith, Alice" <alice@example.org>', "alice@example.org", False),
    ("Jörg <jorg@bücher.example>", "Jörg <jorg@xn--bcher-kva.example>", "jorg@xn--bcher-kva.example", False),
    ("José <josé@example.org>", "José <josé@example.org>", "josé@example.org", True),
    ("<alice@Example.ORG>", "alice@example.org", "alice@example.org", False),
])
def test_what_passes_is_one_mailbox_for_headers_and_envelope(address: str, header: str, envelope: str,
                                                            utf8: bool) -> None:
    mailbox = parse_mailbox(address)
    assert (mailbox.header(), mailbox.address, mailbox.needs_smtputf8) == (header, envelope, utf8)


def test_the_default_from_and_a_quoted_name_load(tmp_path: Path) -> None:
    path = tmp_path / "pw.toml"
    path.write_text('[mail]\nfrom = "\\"Papers, daily\\" <papers@example.org>"\n')
    assert parse_mailbox(load_config(path).mail.from_).name == "Papers, daily"
    assert parse_mailbox(load_config(None).mail.from_).address == "paperwatch@localhost"


def test_atext_is_rfc_5322s_and_any_character_past_ascii() -> None:
    """A local part of one character: RFC 5322's atext, and with RFC 6531 anything not ASCII."""
    specials = set("\"(),.:;<>@[\\]")
    for code in [*range(0x80), 0x80, 0xA0, 0xFF, 0x100, 0x2028, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF]:
        char = chr(code)
        atext = code >= 0x80 or (0x20 < code < 0x7F and char not in specials)
        assert (_DOT_ATOM.fullmatch(char) is not None) is atext, hex(code)
