"""Quoted-printable as the message carries it: a run's digests encoded a line at a time, each
distinct line once, are byte for byte what encoding each text whole gives."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given, settings
from hypothesis import strategies as st

from paperwatch.message import QpLines, qp_encode

# Pieces the encoder treats specially: line ends of every kind, spaces and tabs before them, a
# dot alone on a line, "=", control and non-ASCII characters, lines past 76 characters.
PIECES = ["a", "word", " ", "\t", "\n", "\r\n", "\r", ".", "=", "é", "·", "日本", "\x00", "\x7f", "\u2028",
          "x" * 75, "y" * 80, "From ", "=?utf-8?q?x?=", "<p class=\"abstract\">"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_encoding_by_the_line_is_encoding_whole(texts: list[str]) -> None:
    lines = QpLines()  # one for all: lines met before come from what it kept
    for text in texts:
        assert lines.encode(text) == qp_encode(text)
        assert lines.size(text) == len(qp_encode(text))


def test_lines_shared_by_texts_decode_to_each_text() -> None:
    lines = QpLines()
    card = "<h3 class=\"title\">Grokking, · explained</h3>\n<p>" + "long line " * 30 + "</p>\n"
    texts = [f"<p>Digest for reader {n}</p>\n{card}{card}<p>.</p>\n" for n in range(3)]
    for text in texts:
        encoded = lines.encode(text)
        part = email.message_from_bytes(b"Content-Transfer-Encoding: quoted-printable\r\n"
                                        b"Content-Type: text/html; charset=utf-8\r\n\r\n" + encoded,
                                        policy=email.policy.SMTP)
        assert part.get_content() == text.replace("\n", "\r\n")  # as sent: CRLF line ends
        assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
