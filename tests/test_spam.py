"""The reference digest, as sent, through SpamAssassin with the rules Debian ships (local tests only).

No network tests, no Bayes: what is left scores the mail itself: its headers, its wording and
its markup, all ours. The only rules allowed to hit are the informational ones about how the
test hands the message over (no Received header, not relayed) and that it has an HTML part.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import require_system
from paperwatch.message import build_message, list_id, make_message_id
from reference import READER, render_reference

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]

RULES = Path("/usr/share/spamassassin")  # Debian's own copy: sa-update cannot run without the network
# Not about the message's content: how this test hands it over, and that it has an HTML part at all.
NEUTRAL = {"NO_RECEIVED", "NO_RELAYS", "HTML_MESSAGE"}
# What the digest once hit, for a clearer failure: its footer and its markup.
OURS_BEFORE = {"END_FUTURE_EMAILS", "HTML_OBFUSCATE_05_10", "HTML_OBFUSCATE_10_20", "TRACKER_ID"}


def reference_message(edit: Callable[[str], str] = str) -> bytes:
    """The reference digest as ``compose`` would send it; ``edit`` changes both parts' text first."""
    now = dt.datetime(2025, 3, 5, 8, 0, tzinfo=dt.UTC)
    rendered = render_reference()
    rendered = replace(rendered, text=edit(rendered.text), html=edit(rendered.html))
    message = build_message(
        rendered, sender="paperwatch <paperwatch@example.org>", to=READER.email,
        message_id=make_message_id(READER.name, now.isoformat(), domain="example.org"), date=now,
        list_id=list_id(READER.name, "example.org"), unsubscribe="ops@example.org",
    )
    return bytes(message)


def spamassassin(message: bytes, home: Path) -> tuple[float, list[str]]:
    """SpamAssassin's score and the rules that hit, from the X-Spam-Status it adds in test mode."""
    program = require_system("spamassassin", "spamassassin")
    prefs = home / "user_prefs"
    prefs.write_text("")
    result = subprocess.run(
        [program, "-t", "-L", "-x", "-C", str(RULES), "-p", str(prefs),
         "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"],
        input=message, capture_output=True, check=True, timeout=100, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    scored = email.message_from_bytes(result.stdout, policy=email.policy.default)
    status = " ".join(str(scored["X-Spam-Status"]).split())
    found = re.search(r"score=(-?[\d.]+) .*?tests=(.*?)(?: autolearn=| version=|$)", status)
    assert found, status
    rules = found.group(2).replace(" ", "").split(",")
    return float(found.group(1)), [rule for rule in rules if rule and rule != "none"]


def test_the_reference_digest_scores_clean_with_no_rule_of_ours(tmp_path: Path) -> None:
    score, rules = spamassassin(reference_message(), tmp_path)
    print(f"SpamAssassin: score {score}, rules {', '.join(rules)}")
    assert not set(rules) & OURS_BEFORE, rules
    assert set(rules) <= NEUTRAL, f"rules about the digest itself hit: {sorted(set(rules) - NEUTRAL)}"
    assert score <= 0.5


def test_spamassassin_does_see_the_markup_it_once_flagged(tmp_path: Path) -> None:
    """The check can fail: the footer and glued links the digest used to have still score."""
    def as_before(text: str) -> str:
        text = text.replace("write to them to change either", "ask them to stop these mails")
        return re.sub(r"</(a|span)> <", r"</\1><", text)

    score, rules = spamassassin(reference_message(as_before), tmp_path)
    assert {"END_FUTURE_EMAILS", "HTML_OBFUSCATE_10_20"} <= set(rules) and score > 0.5, (score, rules)
