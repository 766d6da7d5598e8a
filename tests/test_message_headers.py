"""The digest's header block is byte for byte what the email package's SMTP policy writes for
the same values, whether paperwatch writes it directly (plain ASCII values) or through it."""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from paperwatch.digest import Rendered
from paperwatch.message import build_message, make_message_id

DATE = dt.datetime(2025, 3, 5, 8, tzinfo=dt.UTC)
RENDERED = Rendered(subject="x", text="Hello.\n", html="<p>Hello.</p>\n", omitted=0)
# Words that look like what the headers carry, and pieces the email package treats specially.
PIECES = ["paperwatch", "Alice", "Smith", "pw@example.org", "<pw@example.org>", "a.b@c.d", "x..y@z.org", "=?utf-8?q?x?=",
          "(comment)", '"quoted"', "Dr.", "O'Neil", "a\\b", "über", "日本", "<", ">", "@", ",", ";", ":", "-", "_",
          "mailto:op@example.org", "é@example.org", "user@bücher.de", "a" * 60, "Re:"]
# Values build_message takes as they are (one line, single spaces, not over its length limits).
VALUE = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map(" ".join).filter(lambda v: len(v) < 200)


def reference_head(sender: str, to: str, subject: str, list_id: str, utf8: bool) -> bytes:
    """The headers as the email package writes them (what build_message did before writing them itself)."""
    policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    message = EmailMessage(policy=policy)
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"] = email.utils.format_datetime(DATE)
    message["Message-ID"] = make_message_id("alice", "k", domain="example.org")
    message["List-Id"], message["List-Unsubscribe"] = list_id, "<mailto:op@example.org>"
    message["Auto-Submitted"], message["MIME-Version"] = "auto-generated", "1.0"
    return b"".join(policy.fold_binary(name, value) for name, value in message.items())


def head(sender: str, to: str, subject: str, list_id: str, utf8: bool) -> bytes:
    raw = build_message(Rendered(subject, RENDERED.text, RENDERED.html, 0),
                        sender=sender, to=to, message_id=make_message_id("alice", "k", domain="example.org"),
                        date=DATE, list_id=list_id, unsubscribe="op@example.org", utf8=utf8)
    return raw[:raw.index(b"Content-Type: multipart/alternative")]


def test_plain_headers_are_the_email_packages() -> None:
    args = ("paperwatch <pw@example.org>", "alice@example.org", "Hugging Face Daily Papers, 5 Mar 2025: 3 papers",
            "paperwatch digest for alice <alice.digest.example.org>", False)
    assert head(*args) == reference_head(*args)
    assert head(*args).startswith(b"From: paperwatch <pw@example.org>\r\nTo: alice@example.org\r\n")


@settings(max_examples=300, deadline=None)
@given(sender=st.one_of(st.just("paperwatch <pw@example.org>"), VALUE), to=st.one_of(st.just("a@b.org"), VALUE),
       subject=VALUE, list_id=VALUE, utf8=st.booleans())
def test_any_headers_are_the_email_packages(sender: str, to: str, subject: str, list_id: str, utf8: bool) -> None:
    try:
        expected = reference_head(sender, to, subject, list_id, utf8)
    except Exception:  # the email package refuses it: so does build_message
        try:
            head(sender, to, subject, list_id, utf8)
        except Exception:
            return
        raise AssertionError("build_message took a value the email package refuses") from None
    assert head(sender, to, subject, list_id, utf8) == expected
