"""What each command loads: a backfill or a listing does not pay for digests, mail, the matcher
or the scheduler; the daemon loads all of them at start, so its first digest pays nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakehf import FakeHF
from smtpserver import Recorder, SmtpServer
from support import serve_samples, write_config

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


async def test_run_once_does_without_the_daemon_and_its_scheduler(tmp_path: Path) -> None:
    """``run --once`` (a timer's job) polls, queues and delivers as the daemon does, without
    loading the daemon and the scheduler it does not use."""
    code = ("import json, sys\nfrom paperwatch.cli import main\nstatus = main(sys.argv[1:])\n"
            f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))\nsys.exit(status)")
    recorder = Recorder()
    async with FakeHF() as hf:
        serve_samples(hf, 13)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, "-c", str(path), "run", "--once", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(SRC)})
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    loaded = json.loads(out.decode().splitlines()[-1])
    assert recorder.received and loaded["paperwatch.delivery"] and loaded["aiosmtplib"]
    assert not loaded["paperwatch.daemon"] and not loaded["apscheduler.schedulers"]


def test_compiling_the_configs_rules_loads_the_matcher_without_digests_or_mail() -> None:
    """``match`` compiles every reader's rules (as ``compile_rules``) and loads no template engine
    and no mail module to do it."""
    compiled = ("from paperwatch.config import Config\nfrom paperwatch.ruleset import compile_rules\n"
                "compile_rules(Config.model_validate({'readers': [{'name': 'alice', 'email': 'a@example.org', "
                "'rules': [{'name': 'r', 'keywords': ['grokking']}]}]})).build()")
    loaded = loaded_after(compiled)
    assert loaded["paperwatch.match"] and loaded["ahocorasick"]
    assert not any(loaded[m] for m in ("jinja2", "aiosmtplib", "paperwatch.digest", "paperwatch.delivery",
                                       "paperwatch.mail"))
