"""What each command loads: a backfill or a listing does not pay for digests, mail, the matcher
or the scheduler; the daemon loads all of them at start, so its first digest pays nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ["jinja2", "css_inline", "aiosmtplib", "ahocorasick", "re2", "apscheduler.schedulers",
         "paperwatch.digest", "paperwatch.delivery", "paperwatch.match", "paperwatch.mail", "paperwatch.daemon"]


def loaded_after(statement: str) -> dict[str, bool]:
    code = f"import json, sys\n{statement}\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    return dict(json.loads(out.stdout))


def test_the_command_line_alone_loads_none_of_the_digest_and_mail_machinery() -> None:
    assert loaded_after("import paperwatch.cli, paperwatch.pipeline") == dict.fromkeys(HEAVY, False)


def test_the_daemon_loads_everything_a_digest_needs_at_start() -> None:
    """All of it on import, but RE2, which comes with the first re: rule, compiled at start-up
    too, and the CSS inliner, which only a template directory needs (the packaged HTML template
    ships inlined): loaded with that directory's templates, at start-up as well."""
    assert loaded_after("import paperwatch.daemon") == {**dict.fromkeys(HEAVY, True), "re2": False,
                                                        "css_inline": False}
    load = "import paperwatch.daemon\nfrom pathlib import Path\nfrom paperwatch.digest import Templates\nTemplates.load({})"
    assert loaded_after(load.format("None"))["css_inline"] is False
    folder = SRC / "paperwatch" / "templates"  # the same files, as a template directory
    assert loaded_after(load.format(f"Path({str(folder)!r})"))["css_inline"] is True
    compiled = ("import paperwatch.daemon\nfrom paperwatch.match import Matcher, RuleSpec\n"
                "Matcher.compile([RuleSpec('alice', 'r', keywords=({!r},))])")
    assert loaded_after(compiled.format("re:gr[oa]k"))["re2"] is True
    assert loaded_after(compiled.format("grokking"))["re2"] is False
