"""The soak: the real ``paperwatch run`` process through weeks of simulated days, under faults.

Shared by ``bench/soak`` (60 simulated days, 20 kills, about seven minutes) and
``tests/test_soak.py`` (a CI-sized run of the same harness and the same checks).

Time is accelerated, not faked. paperwatch reads the real UTC date, so the N simulated days
are the N real dates ending today, and ``lookback_days = N`` (60, its maximum, in the full
run) makes every poll fetch all of them. Before its publication time a date serves no
papers (the fake site's ``latest_policy`` answers for it, and the policy changes every
simulated week); then its papers appear, the day grows for two simulated days and upvotes
rise for four. Saturdays and Sundays publish nothing, as on the real site. Papers never
vanish, and a few are featured again on a later day. Items are the fake site's synthetic
papers and the sample day's real abstracts (under new ids), some with hostile fields:
markup, ``{{ }}``, CR/LF and ``Bcc:`` in titles, ``javascript:`` links.

Ten readers with twenty rules each (keywords, phrases, wildcards, regular expressions,
authors, organizations, queries; ``all``, ``exclude``, ``min_upvotes``, ``fields``) are
drawn from the items' vocabulary. Mail goes over SMTP (STARTTLS, a test CA) with a login whose
password comes from the environment, to an aiosmtpd server that refuses mail before the login.

Faults follow a schedule drawn from ``random.Random(seed)``: stretches in which the site
answers a share of requests with 429 (Retry-After or RateLimit, now and then longer than
``max_wait``), 5xx, resets mid-body, hangs shorter and longer than the client's timeout,
and stretches of changed, broken or truncated pages; the SMTP server answers DATA with
421 or 451, drops the connection after DATA (it kept the message: the crash window),
refuses the login for a while, and is down for a stretch (stopped, then a new server on
the same port). The daemon is SIGKILLed at random moments, some of them inside an SMTP
transaction (at MAIL, or after DATA before the 250), and restarted after a short pause; a
few times it is stopped with SIGTERM instead (``systemctl restart``): at a random moment,
while a scheduled digest is being sent, or while a scheduled poll waits on a slow page; it
must let that work finish and exit 0.
Once, the rule file is saved with a bad regular expression: the running daemon rejects it
and keeps its rules, a restart meanwhile exits 78 and stays down, and the file is fixed
some days later with one rule added. Later another rule is added, for a reload to take.

At the end the faults stop, the site stops changing, and the daemon runs clean until it
has polled the final data, every reader had two digests since, and the outbox is empty (a
message whose retry falls later than ``drain`` seconds away is delivered by fast-forwarding
the outbox's clock: ``deliver_due(now=...)``, after the daemon stopped); then SIGTERM. The
checker fetches the site once more into a separate database and requires:

* the daemon's database holds exactly the site's papers (fields, upvotes, featured day);
* for each reader, every paper paperwatch's own matcher finds with the final rules in the
  site's data was mailed, in exactly one message, and nothing else was mailed; a message
  may arrive again, byte for byte with the same Message-ID, only when a crash window
  opened as it arrived (the connection dropped after DATA, or a kill, a stop or the
  server going down within seconds);
* no mail to anyone but the readers and the operator, one recipient each, no Bcc or Cc,
  every message accepted only after the login;
* every message the outbox holds arrived as committed; none failed, none pending;
* ``PRAGMA integrity_check`` says ok; ``status`` shows no failing day;
* the SMTP password (and its base64 forms) appears in nothing the soak wrote: logs,
  ``status`` and ``status --json`` output, databases, config, the mailbox;
* no traceback in the daemon's logs (a job cancelled by SIGTERM logs one); every SIGTERM
  exits 0; every restart says READY=1.

Why "expected" is exact: the site's texts never change, upvotes only rise, and the rules
only ever gain rules (the broken file never took effect), so every paper a digest matched
also matches at the end, and every paper matching at the end matched at some digest after
the daemon stored it; every simulated day lies within the readers' first-digest window.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import datetime as dt
import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from fakehf import MISSING, FakeHF, Fault
from paperwatch.config import load_config
from paperwatch.delivery import deliver_due, prepare
from paperwatch.errors import ConfigError
from paperwatch.models import Paper
from paperwatch.ruleset import compile_rules
from paperwatch.runtime import LAST_POLL_AT, LAST_POLL_SUMMARY
from paperwatch.store import Store
from paperwatch.timespec import parse_duration
from smtpserver import Certificates, Received, Recorder, free_port
from support import ids

ADMIN = "ops@example.org"
USERNAME = "paperwatch-soak"
PASSWORD_ENV = "PAPERWATCH_SOAK_SMTP_PASSWORD"
CLIENT_TIMEOUT = 2.0  # source.timeout: hangs are drawn below and above it
STOP_TIMEOUT = 25.0  # the daemon finishes in-flight work within 20 s of SIGTERM
REPEAT_WINDOW = 3.0  # seconds after a copy arrived in which a kill, stop or outage explains a repeat
READER_NAMES = ("ada", "bruno", "chiara", "dmitri", "eun-ji", "farah", "gustavo", "hanna", "ivo", "jun",
                "kofi", "lena")
# aiosmtpd (1.4) sets its own deprecated Session.login_data on every successful AUTH.
AIOSMTPD_LOGIN_WARNING = "Session.login_data is deprecated"
TRACEBACK_MARKERS = ("Traceback", "failed unexpectedly", "never retrieved", "Unclosed", "was destroyed but",
                     "ResourceWarning")


# --------------------------------------------------------------------------------------------
# Options and the report
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    folder: Path
    days: int = 60
    seed: int = 1
    kills: int = 20
    stops: int = 5  # graceful restarts: SIGTERM at random moments, as systemctl restart does
    day_seconds: float = 6.0  # real seconds per simulated day
    poll: str = "2s"
    schedules: tuple[int, int] = (3, 7)  # each reader's digest every N seconds, N in this range
    readers: int = 10
    rules: int = 20
    drain: float = 180.0  # seconds the daemon's own retries get to empty the outbox at the end
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.days <= 60:
            raise ValueError("days must be 2..60: every poll must fetch them all, and lookback_days is at most 60")
        if not 1 <= self.readers <= len(READER_NAMES):
            raise ValueError(f"readers must be 1..{len(READER_NAMES)}")

    @property
    def duration(self) -> float:
        return self.days * self.day_seconds


# The CI-sized run of tests/test_soak.py (``bench/soak --ci`` runs the same).
CI_SIZED: dict[str, Any] = {"days": 8, "kills": 3, "stops": 1, "day_seconds": 2.5, "poll": "1s", "schedules": (2, 4),
                            "drain": 0.0}


@dataclass
class Report:
    options: Options
    problems: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    readers: list[tuple[str, int, int, int, int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def lines(self) -> list[str]:
        o = self.options
        out = [f"soak: {o.days} simulated days of {o.day_seconds:g} s, seed {o.seed}, {o.readers} readers x "
               f"{o.rules} rules, poll {o.poll}, digests every {o.schedules[0]}-{o.schedules[1]} s"]
        out += [f"  {key}: {value}" for key, value in self.counts.items()]
        out.append("faults injected:")
        out += [f"  {kind}: {n}" for kind, n in sorted(self.faults.items())]
        if self.readers:
            out.append(f"  {'reader':<10}{'expected':>9}{'delivered':>10}{'lost':>6}{'unexpected':>11}{'twice':>7}")
            out += [f"  {name:<10}{e:>9}{d:>10}{lost:>6}{u:>11}{t:>7}" for name, e, d, lost, u, t in self.readers]
        out += self.notes
        out += [f"PROBLEM: {p}" for p in self.problems]
        out.append("PASS" if not self.problems else f"FAIL ({len(self.problems)} problems)")
        return out


# --------------------------------------------------------------------------------------------
# Readers and rules, drawn from the items' vocabulary
# --------------------------------------------------------------------------------------------

TOPICS = ("long-context language models", "diffusion transformers", "vision-language agents", "mixture-of-experts",
          "retrieval-augmented generation", "speech tokenizers", "gaussian splatting", "reward model",
          "linear attention", "video generation", "code llms", "multilingual reasoning")
NAMES = ("orca", "lumen", "tessera", "quill", "halcyon", "marmot", "vireo", "kestrel", "basalt")
# In most synthetic abstracts: only ever paired with a rarer term.
PHRASES = ("curriculum", "auxiliary loss", "human annotation", "lightweight probe", "ambiguous instructions",
           "inference cost", "failure cases", "out-of-domain", "remarkable abilities")
WILDCARDS = ("distill*", "tokeniz*", "splat*", "multiling*", "retriev*", "compress*", "steer*")
SAMPLE_WORDS = ("linear transformer", "cosmology", "brain*", "hallucination", "matrix", "prototypes",
                "learning rates", "exoplanet*", "low-rank", "click-through rate", "uncertainty quantification",
                "information retrieval", "black-box", "convolutional", "alzheimer's disease", "conjugate")
REGEXES = (r"re:\bq&a\b", r"re:(gated|delta) ", r"re:1\.6m", r"re:alert\(\d\)", r"re:sub-\$\\mathcal")
AUTHORS = ("Yoshua Bengio", "Y. Bengio", "Wei Zhang", "Ilya Sutskever", "Ursula von Luxburg", "U. Luxburg",
           "Jürgen Schmidhuber", "Tomas Müller", "Nadia O'Brien", "Quoc Le", "Xin Xu", "Nadia Arora",
           "Kyunghyun Cho", "Zoubin Ghahramani", "Søren Hauberg", "Pieter Abbeel", "Aditi Okafor")
ORGS = ("Meta Llama", "Google", "DeepSeek", "Ai2", "Qwen", "NVIDIA", "Microsoft")
EXCLUDES = ("survey", "speech", "alert", "benchmarking", "ambiguous", "video", "cosmology", "steering")
ALLS = ("ablations", "scalable", "curriculum", "benchmarks", "code", "failure cases")
QUERIES = (
    'title:"linear attention" OR abstract:cosmology',
    "title:(diffusion OR video) AND NOT abstract:ablations AND title:scaling",
    '(distill* OR compress*) AND abstract:"inference cost" AND NOT abstract:curriculum',
    'author:"Yoshua Bengio" OR (org:Google AND title:video)',
    "title:rethinking AND NOT abstract:ablations",
    "ai_keywords:kestrel OR ai_keywords:halcyon",
    '"reward models" AND abstract:"human annotation"',
    'abstract:"out-of-domain" AND title:"code llms"',
    'title:"deep learning" OR (brain* AND NOT title:transformer)',
)
RULE_KINDS = ("topic", "name", "wildcard", "sample", "phrase", "regex", "author", "org", "query")
RULE_WEIGHTS = (3, 2, 2, 5, 1, 1, 3, 1, 2)


def draw_rule(rng: random.Random, number: int) -> dict[str, Any]:
    """One rule of a realistic shape; a reader's twenty together match a fair share of the papers."""
    kind = rng.choices(RULE_KINDS, RULE_WEIGHTS)[0]
    rule: dict[str, Any] = {"name": f"r{number:02d} {kind}"}
    if kind == "topic":
        rule["keywords"] = [rng.choice(TOPICS)]
        if rng.random() < 0.8:
            rule["all"] = [rng.choice(ALLS)]
    elif kind == "name":
        rule["keywords"] = [rng.choice(NAMES)]
        rule["all"] = [rng.choice(ALLS + TOPICS)]
    elif kind == "wildcard":
        rule["keywords"] = [rng.choice(WILDCARDS)]
        rule["all"] = [rng.choice(ALLS)]
    elif kind == "sample":
        rule["keywords"] = rng.sample(SAMPLE_WORDS, rng.randint(1, 2))
    elif kind == "phrase":
        rule["keywords"] = [rng.choice(PHRASES)]
        rule["all"] = [rng.choice(TOPICS)]
    elif kind == "regex":
        rule["keywords"] = [rng.choice(REGEXES)]
    elif kind == "author":
        rule["authors"] = rng.sample(AUTHORS, rng.randint(1, 3))
    elif kind == "org":
        rule["organizations"] = [rng.choice(ORGS)]
        rule["all"] = [rng.choice(TOPICS)]
    else:
        rule["query"] = rng.choice(QUERIES)
    if kind in ("topic", "sample", "wildcard") and rng.random() < 0.3:
        rule["exclude"] = [rng.choice(EXCLUDES)]
    if rng.random() < 0.3:  # upvotes rise: some papers only qualify days after they appear
        rule["min_upvotes"] = rng.choice((3, 6, 10, 15))
    if kind in ("topic", "name", "wildcard") and rng.random() < 0.15:
        rule["fields"] = ["title"]
    return rule


def draw_readers(rng: random.Random, options: Options) -> list[dict[str, Any]]:
    low, high = options.schedules
    return [{"name": name, "email": f"{name}@example.org", "schedule": f"{low + i % (high - low + 1)}s",
             "rules": [draw_rule(rng, n + 1) for n in range(options.rules)]}
            for i, name in enumerate(READER_NAMES[:options.readers])]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is a JSON string


def config_text(base_url: str, smtp_port: int, poll: str, lookback: int, readers: list[dict[str, Any]],
                ca_file: Path) -> str:
    lines = [
        "[paperwatch]", 'database = "paperwatch.db"', f"admin = {toml_value(ADMIN)}", "",
        "[source]", f"base_url = {toml_value(base_url)}", f"poll = {toml_value(poll)}", f"lookback_days = {lookback}",
        "max_concurrency = 4", "requests_per_minute = 6000", f"timeout = {CLIENT_TIMEOUT}", "connect_timeout = 1",
        "retries = 3", 'backoff = "0.05s"', 'max_wait = "5s"', "",
        "[mail]", 'from = "paperwatch <digest@example.org>"', 'give_up = "1d"', "",
        "[mail.smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", 'security = "starttls"', f"ca_file = {toml_value(ca_file)}",
        f"username = {toml_value(USERNAME)}", f"password_env = {toml_value(PASSWORD_ENV)}", 'timeout = "5s"',
    ]
    for reader in readers:
        lines += ["", "[[readers]]"] + [f"{k} = {toml_value(reader[k])}" for k in ("name", "email", "schedule")]
        for rule in reader["rules"]:
            lines += ["[[readers.rules]]"] + [f"{k} = {toml_value(v)}" for k, v in rule.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The site: days published on a clock, faults in stretches
# --------------------------------------------------------------------------------------------


@dataclass
class Stretch:
    """A share of requests get faults until ``until`` (time.monotonic()), and past it until at
    least ``at_least`` have, though never past ``latest``: a short run still sees each kind."""

    kind: str
    until: float
    latest: float
    rate: float
    faults: tuple[Fault, ...]
    at_least: int = 2
    hits: int = 0

    def active(self, now: float) -> bool:
        return now < self.until or (self.hits < self.at_least and now < self.latest)


def fault_label(fault: Fault) -> str:
    if fault.kind == "status":
        headers = dict(fault.headers)
        wait = headers.get("Retry-After") or headers.get("RateLimit", "").rpartition("t=")[2]
        how = " Retry-After" if "Retry-After" in headers else " RateLimit" if "RateLimit" in headers else ""
        over = " (over max_wait)" if wait and float(wait) > 5 else ""
        return f"site HTTP {fault.code}{how}{over}"
    if fault.kind == "hang":
        side = "over" if fault.seconds > CLIENT_TIMEOUT else "under"
        return f"site hang {fault.seconds:g} s ({side} the client timeout)"
    return f"site {fault.kind}"


class Site(FakeHF):
    """The fake site, plus stretches in which a share of requests get a fault."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng
        self.stretches: list[Stretch] = []
        self.injected: Counter[str] = Counter()

    def _take_fault(self, url: str) -> Fault | None:
        fault = super()._take_fault(url)
        now = time.monotonic()
        self.stretches = [s for s in self.stretches if s.active(now)]
        if fault is None and self.stretches:
            stretch = self.rng.choice(self.stretches)
            if self.rng.random() < stretch.rate:
                fault = self.rng.choice(stretch.faults)
                stretch.hits += 1
        if fault is not None:
            self.injected[fault_label(fault)] += 1
        return fault


HOSTILE = [
    {"title": "Linear attention <script>alert(1)</script> & {{ 7*7 }}\r\nBcc: x@evil.test",
     "summary": "A linear attention study.\nBcc: y@evil.test\n<img src=x onerror=alert(2)> $\\frac{a}{b}$",
     "githubRepo": "javascript:alert(3)", "projectPage": "data:text/html,<b>x</b>"},
    {"title": "Deep learning\r\nSubject: you won\r\n\r\n{% for x in range(9) %}spam{% endfor %}",
     "githubRepo": "  JaVaScRiPt:alert(4)"},
    {"title": "Kestrel: \u202eReversed\u202c & <b>bold</b> \"quotes\" 'single' R&D",
     "summary": "Curriculum & <i>auxiliary loss</i>: to: admin@example.org\r\nCc: z@evil.test"},
]


class Publisher:
    """Decides what the site serves: the simulated days, published, growing, upvoted."""

    GROW_DAYS = 2.0  # a day keeps getting papers for this many simulated days after it appears
    UPVOTE_DAYS = 4.0  # and its papers' upvotes rise for this long
    MAX_PER_DAY = 60

    def __init__(self, site: Site, rng: random.Random, dates: list[dt.date]) -> None:
        self.site, self.rng, self.dates = site, rng, dates
        self.samples = FakeHF.sample_items()
        self.published: dict[dt.date, float] = {}  # date -> simulated time it appeared
        self.counter: Counter[dt.date] = Counter()
        self.papers = 0
        self.refeatured = 0
        self.hostile = 0
        self.frozen = False

    def item(self, day: dt.date) -> dict[str, Any]:
        n = self.counter[day]
        self.counter[day] += 1
        overrides: dict[str, Any] = {}
        if self.rng.random() < 0.4:  # a real abstract, under this day's id
            sample = self.rng.choice(self.samples)
            paper = sample["paper"]
            overrides = {"title": sample["title"], "summary": sample.get("summary") or paper.get("summary"),
                         "authors": copy.deepcopy(paper.get("authors", [])),
                         "ai_keywords": list(paper["ai_keywords"]) if "ai_keywords" in paper else MISSING,
                         "organization": copy.deepcopy(sample["organization"]) if sample.get("organization") else MISSING}
        if self.rng.random() < 0.04:
            overrides |= self.rng.choice(HOSTILE)
            self.hostile += 1
        self.papers += 1
        return FakeHF.make_item(day, n, **overrides)

    def publish(self, k: int, now: float) -> None:
        day = self.dates[k]
        if day.weekday() >= 5:
            return  # weekends publish nothing
        items = [self.item(day) for _ in range(self.rng.randint(5, 10))]
        earlier = [d for d in self.dates[max(0, k - 6):k] if self.site.days.get(d)]
        if earlier and self.rng.random() < 0.3:  # featured again: the same paper, on a second day
            items.append(self.rng.choice(self.site.days[self.rng.choice(earlier)]))
            self.refeatured += 1
        self.site.days[day] = items
        self.published[day] = now

    def tick(self, now: float) -> None:
        if self.frozen:
            return
        for day, when in self.published.items():
            age = now - when
            items = self.site.days[day]
            if age < self.GROW_DAYS and len(items) < self.MAX_PER_DAY:
                items.extend(self.item(day) for _ in range(self.rng.randint(0, 3)))
            if age < self.UPVOTE_DAYS:
                for item in items:
                    if self.rng.random() < 0.3:
                        item["paper"]["upvotes"] = item["paper"].get("upvotes", 0) + self.rng.randint(1, 3)

    def items(self) -> int:
        return len({item["paper"]["id"] for items in self.site.days.values() for item in items})


# --------------------------------------------------------------------------------------------
# The SMTP server: a login it checks, faults, and a hook that kills the daemon mid-transaction
# --------------------------------------------------------------------------------------------


class Mailbox(Recorder):
    """Records every message; refuses mail before a good login; kills the daemon on cue."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password
        self.refuse_logins_until = 0.0
        self.refuse_logins_left = 0  # refused past the stretch until this many were
        self.injected: Counter[str] = Counter()
        self._armed: tuple[int, str, signal.Signals] | None = None
        self.fired = threading.Event()
        self.arrivals: list[tuple[float, str, bool]] = []  # (time.time(), Message-ID, connection dropped)
        self.events: list[tuple[float, str]] = []  # (time.time(), what) that may cut a delivery short

    def arm(self, pid: int, step: str, signum: signal.Signals = signal.SIGKILL) -> None:
        """Send ``signum`` to ``pid`` when the next transaction reaches ``step`` ("mail" or "data")."""
        self.fired.clear()
        self._armed = (pid, step, signum)

    def disarm(self) -> None:
        self._armed = None

    def _kill(self, step: str) -> bool:
        armed = self._armed
        if armed is None or armed[1] != step:
            return False
        self._armed = None
        self.events.append((time.time(), f"{armed[2].name} at {step.upper()}"))
        with contextlib.suppress(ProcessLookupError):
            os.kill(armed[0], armed[2])
        self.fired.set()
        return True

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        if self._kill("mail"):  # the digest is committed, no byte of it has left
            await asyncio.sleep(0.5)  # a SIGTERM must let this delivery finish; a SIGKILL ends it here
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            scripted = self.data_replies[0] if self.data_replies else None
            dropping = self.drop_after_data > 0
        reply = await super().handle_DATA(server, session, envelope)
        if scripted is not None:
            self.injected[f"smtp {scripted.split()[0]} after DATA"] += 1
            return reply
        found = re.search(rb"^Message-ID:\s*(\S+)", bytes(envelope.original_content or b""), re.M | re.I)
        self.arrivals.append((time.time(), found.group(1).decode() if found else "?", dropping))
        if dropping:
            self.injected["smtp drop after DATA (message kept)"] += 1
        if self._kill("data"):  # the server has the message; the daemon never reads the 250
            await asyncio.sleep(0.5)
        return reply

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.auth_attempts.append(auth_data.login.decode())
        if time.monotonic() < self.refuse_logins_until or self.refuse_logins_left > 0:
            self.refuse_logins_left = max(0, self.refuse_logins_left - 1)
            self.injected["smtp 535 login refused"] += 1
            return AuthResult(success=False, handled=False)
        good = auth_data.login == USERNAME.encode() and auth_data.password == self.password.encode()
        return AuthResult(success=good, handled=False, auth_data=auth_data)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


class MailServer:
    """aiosmtpd on a fixed loopback port that can go down and come back (a new server each time)."""

    def __init__(self, mailbox: Mailbox, certificates: Certificates) -> None:
        self.mailbox = mailbox
        self.certificates = certificates
        self.port = free_port()
        self.controller: Controller | None = None

    @property
    def up(self) -> bool:
        return self.controller is not None

    def start(self) -> None:
        if self.controller is None:
            controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port,
                                    server_hostname="fake-smtp.test", authenticator=self.mailbox.authenticate,
                                    tls_context=self.certificates.server_context(), require_starttls=True)
            controller.start()
            self.controller = controller

    def stop(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()


# --------------------------------------------------------------------------------------------
# The daemon process
# --------------------------------------------------------------------------------------------


class Notifications:
    """The NOTIFY_SOCKET end: READY=1 says a start is complete."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.path = path
        self.seen: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.seen += self.sock.recv(65536).decode().split("\n")
            except BlockingIOError:
                return self.seen

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """``paperwatch run`` as a child process, one log file per start."""

    def __init__(self, folder: Path, config: Path, password: str, report: Report) -> None:
        self.folder, self.config, self.report = folder, config, report
        self.notify = Notifications(folder / "notify.sock")
        self.env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), PASSWORD_ENV: password}
        for name in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            self.env.pop(name, None)
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[Path] = []
        self.expected_exit = False  # the harness is about to kill or stop it
        self.starting = False  # start() is waiting for READY=1 and sees any exit itself
        self.started = 0.0  # time.monotonic() of the last start
        self.exits: Counter[str] = Counter()
        self.events: list[tuple[float, str]] = []  # (time.time(), signal sent)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> int | None:
        """Start and wait for READY=1; None when ready, else the exit code it stopped with."""
        assert not self.alive
        self.starting = True
        try:
            return await self._start()
        finally:
            self.starting = False

    async def _start(self) -> int | None:
        self.notify.drain()
        self.notify.seen.clear()
        log = self.folder / f"daemon-{len(self.logs) + 1:02d}.log"
        self.logs.append(log)
        verbosity = "-vv" if len(self.logs) % 3 == 0 else "-v"  # every third start logs at DEBUG
        with open(log, "wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "paperwatch", verbosity, "-c", str(self.config), "run", env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        self.expected_exit = False
        self.started = time.monotonic()
        deadline = time.monotonic() + 30
        while "READY=1" not in self.notify.drain():
            if self.proc.returncode is not None:
                self.expected_exit = True
                self.exits[f"exit {self.proc.returncode} at start"] += 1
                return self.proc.returncode
            if time.monotonic() > deadline:
                self.report.problem(f"the daemon did not say READY=1 within 30 s of starting: see {log.name}")
                await self.kill()
                return -1
            await asyncio.sleep(0.05)
        return None

    async def kill(self) -> int:
        assert self.proc is not None
        self.expected_exit = True
        self.events.append((time.time(), "SIGKILL"))
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        code = await self.proc.wait()
        self.exits[f"exit {code}"] += 1
        return code

    async def stop(self, *, signalled: bool = False) -> int | None:
        """SIGTERM (unless ``signalled`` already); the exit code, or None when it did not stop in
        time (then killed)."""
        assert self.proc is not None
        self.expected_exit = True
        if not signalled:
            self.events.append((time.time(), "SIGTERM"))
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            await self.kill()
            return None
        self.exits[f"exit {code}"] += 1
        return code

    async def close(self) -> None:
        if self.alive:
            await self.kill()
        self.notify.close()


async def paperwatch(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "paperwatch", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --------------------------------------------------------------------------------------------
# The plan: every event, drawn from the seed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    at: float
    step: str | None  # None: any moment; "mail" / "data": inside an SMTP transaction;
    #                   "term": SIGTERM instead, "term at mail": SIGTERM while a digest is being sent,
    #                   "term at poll": SIGTERM while a scheduled poll waits on a slow page
    pause: float
    while_broken: bool = False  # the restart meets the broken rule file: exit 78, down until the fix


@dataclass
class Plan:
    site: list[tuple[float, float, str]]  # (start, duration, kind)
    smtp: list[tuple[float, float, str]]
    kills: list[Kill]
    broken_at: float
    fixed_at: float
    edited_at: float  # a valid edit (one more rule), taken by a reload

    @classmethod
    def draw(cls, rng: random.Random, options: Options) -> Plan:
        total, day = options.duration, options.day_seconds

        def moments(count: int, low: float, high: float) -> list[float]:
            return sorted(rng.uniform(low * total, high * total) for _ in range(count))

        site_kinds = ["429", "5xx", "reset", "hang", "changed"]
        site_kinds += [rng.choice(site_kinds) for _ in range(max(0, options.days // 3 - len(site_kinds)))]
        rng.shuffle(site_kinds)
        site = [(at, rng.uniform(0.7, 2.0) * day, kind)
                for at, kind in zip(moments(len(site_kinds), 0.05, 0.7), site_kinds)]
        smtp_kinds = ["421", "451", "drop", "down", "login"]
        smtp_kinds += [rng.choice(["421", "451", "drop", "drop", "down", "login"])
                       for _ in range(max(0, options.days // 4 - len(smtp_kinds)))]
        rng.shuffle(smtp_kinds)
        # A refused login holds all mail for half an hour: last, or the faults after it would meet no mail.
        smtp_kinds.sort(key=lambda kind: kind == "login")
        smtp = [(at, rng.uniform(0.7, 2.0) * day, kind)  # early enough for a digest to meet each
                for at, kind in zip(moments(len(smtp_kinds), 0.05, 0.5), smtp_kinds)]
        broken_day = max(1, round(options.days * 0.3))
        fixed_day = min(broken_day + min(10, max(2, options.days // 3)), options.days - 1)
        broken_at, fixed_at = broken_day * day + 0.3 * day, fixed_day * day + 0.3 * day
        kills = []
        for at in moments(max(0, options.kills - 1), 0.04, 0.92):
            if broken_at - 1.0 <= at <= fixed_at + 1.0:  # a restart there would only meet the broken file
                at = fixed_at + rng.uniform(1.5, 1.5 + day)
            kills.append(Kill(at, rng.choice((None, None, "mail", "data")), rng.uniform(0.3, 2.0)))
        for n, at in enumerate(moments(options.stops, 0.1, 0.9)):
            if broken_at - 1.0 <= at <= fixed_at + 1.0:
                at = fixed_at + rng.uniform(1.5, 1.5 + day)
            step = "term at poll" if n == 0 else rng.choice(("term", "term at mail", "term at poll"))
            kills.append(Kill(at, step, rng.uniform(0.3, 1.0)))
        if options.kills:
            kills.append(Kill(broken_at + 0.7 * (fixed_at - broken_at), None, 0.5, while_broken=True))
        edited_at = max(fixed_at + day, 0.8 * total)
        return cls(site, smtp, sorted(kills, key=lambda k: k.at), broken_at, fixed_at, edited_at)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.report = Report(options)
        self.rng = random.Random(options.seed)
        self.password = f"Soak {secrets.token_urlsafe(12)} pw!"
        self.folder = options.folder
        self.today = dt.datetime.now(dt.UTC).date()
        self.dates = [self.today - dt.timedelta(days=options.days - 1 - k) for k in range(options.days)]
        self.readers = draw_readers(random.Random(f"{options.seed}:readers"), options)
        self.site = Site(random.Random(f"{options.seed}:requests"))
        self.publisher = Publisher(self.site, random.Random(f"{options.seed}:site"), self.dates)
        self.mailbox = Mailbox(self.password)
        self.mail = MailServer(self.mailbox, Certificates(self.folder))
        self.plan = Plan.draw(self.rng, options)
        self.config = self.folder / "paperwatch.toml"
        self.daemon: Daemon | None = None
        self.t0 = 0.0
        self.broken = False
        self.edited = False
        self.down_while_broken = False
        self.kills: Counter[str] = Counter()
        self.stops: list[float] = []  # seconds each graceful stop took
        self.stop_kinds: Counter[str] = Counter()
        self.refused = 0  # restarts that met the broken rule file and exited 78
        self.statuses = 0
        self.faults: Counter[str] = Counter()

    # -- helpers --------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.options.progress is not None:
            self.options.progress(f"[{time.monotonic() - self.t0:6.1f} s] {text}")

    async def at(self, offset: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + offset - time.monotonic()))

    def write_config(self, readers: list[dict[str, Any]]) -> None:
        text = config_text(self.site.base_url, self.mail.port, self.options.poll, self.options.days, readers,
                           self.mail.certificates.ca_file)
        temporary = self.config.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o600)
        os.replace(temporary, self.config)  # saved at once, as an editor does

    def broken_readers(self) -> list[dict[str, Any]]:
        readers = copy.deepcopy(self.readers)
        rule = readers[min(2, len(readers) - 1)]["rules"][0]
        rule["keywords"] = [*rule.get("keywords", ()), "re:(unclosed"]
        return readers

    def fixed_readers(self) -> list[dict[str, Any]]:
        """The rules after the fix (one rule added), and after the later edit (one more)."""
        readers = copy.deepcopy(self.readers)
        readers[0]["rules"].append({"name": "added with the fix", "keywords": ["gaussian splatting", "kestrel"],
                                    "min_upvotes": 1})
        if self.edited:
            readers[-1]["rules"].append({"name": "added later", "query": 'title:(rethinking OR steering) AND NOT '
                                                                          'abstract:"failure cases"'})
        return readers

    # -- the timeline tasks -------------------------------------------------------------------

    async def run_site(self) -> None:
        day, ticks = self.options.day_seconds, 0
        policies = ["latest", "redirect", "redirect_date", "empty"]
        events = sorted([(k * day + 0.5, "publish", k) for k in range(self.options.days)]
                        + [(n * day / 2 + 0.75, "tick", n) for n in range(2 * self.options.days)])
        for offset, what, k in events:
            await self.at(offset)
            now = (time.monotonic() - self.t0) / day
            if what == "publish":
                if k % 7 == 0:
                    self.site.latest_policy = policies[(k // 7) % len(policies)]
                self.publisher.publish(k, now)
                items = len(self.site.days.get(self.dates[k], []))
                self.say(f"day {k + 1}/{self.options.days} ({self.dates[k]:%a %Y-%m-%d}): "
                         f"{items or 'no'} papers; {self.publisher.papers} so far")
            else:
                self.publisher.tick(now)
                ticks += 1

    async def run_site_faults(self) -> None:
        day = self.options.day_seconds
        for start, duration, kind in self.plan.site:
            await self.at(start)
            until = time.monotonic() + duration
            if kind == "changed":
                published = [d for d in self.site.days if self.site.days[d]]
                chosen = self.rng.sample(published, min(len(published), self.rng.randint(2, 6))) if published else []
                mode = self.rng.choice(["changed", "broken_json", "truncated"])
                for d in chosen:
                    self.site.page_mode[d] = mode
                self.faults[f"site page {mode} (days x stretches)"] += len(chosen)
                self.say(f"site: {len(chosen)} day pages {mode} for {duration:.1f} s")
                asyncio.get_running_loop().call_later(duration, self._restore_pages, chosen)
                continue
            # Rates high enough that some URLs fail all four tries: a failed day, fetched again next poll.
            faults: tuple[Fault, ...]
            rate = 0.6
            if kind == "429":
                faults = (Fault.status(429, {"Retry-After": "1"}), Fault.status(429, {"RateLimit": '"api";r=0;t=1'}),
                          Fault.status(429, {"Retry-After": "1"}), Fault.status(429, {"Retry-After": "30"}))
                rate = 0.12
            elif kind == "5xx":
                faults = (Fault.status(500), Fault.status(502), Fault.status(503),
                          Fault.status(503, {"Retry-After": "1"}))
            elif kind == "reset":
                faults = (Fault.reset(),)
                rate = 0.5
            else:
                faults = (Fault.hang(0.5), Fault.hang(CLIENT_TIMEOUT + 1.0))
                rate = 0.3
            self.site.stretches.append(Stretch(kind, until, until + 5 * duration, rate, faults))
            self.say(f"site: {kind} on {rate:.0%} of requests for {duration:.1f} s ({duration / day:.1f} days)")

    def _restore_pages(self, days: Iterable[dt.date]) -> None:
        for d in days:
            self.site.page_mode.pop(d, None)

    async def run_smtp_faults(self) -> None:
        outages = []
        for start, duration, kind in self.plan.smtp:
            await self.at(start)
            if kind in ("421", "451"):
                count = self.rng.randint(1, 3)
                text = "421 4.3.2 shutting down" if kind == "421" else "451 4.3.0 try again later"
                with self.mailbox.lock:
                    self.mailbox.data_replies += [text] * count
                self.say(f"smtp: the next {count} DATA answered {kind}")
            elif kind == "drop":
                with self.mailbox.lock:
                    self.mailbox.drop_after_data += 1
                self.say("smtp: the next DATA is kept, then the connection dropped")
            elif kind == "login":
                # A refused login holds all mail for half an hour: the scripted faults meet mail first.
                deadline = time.monotonic() + 3 * self.options.schedules[1]
                while time.monotonic() < deadline and (self.mailbox.data_replies or self.mailbox.drop_after_data):
                    await asyncio.sleep(0.2)
                self.mailbox.refuse_logins_until = time.monotonic() + duration
                self.mailbox.refuse_logins_left = 1  # the next login is half an hour away
                self.faults["smtp login refusal stretches"] += 1
                self.say(f"smtp: logins refused for {duration:.1f} s")
            else:
                outages.append(asyncio.create_task(self.smtp_outage(duration)))
        await asyncio.gather(*outages)

    async def smtp_outage(self, duration: float) -> None:
        self.mailbox.events.append((time.time(), "the SMTP server going down"))
        await asyncio.to_thread(self.mail.stop)
        self.faults["smtp server down (stretches)"] += 1
        self.say(f"smtp: server down for {duration:.1f} s")
        await asyncio.sleep(duration)
        await asyncio.to_thread(self.mail.start)
        self.say("smtp: server back")

    async def run_daemon_events(self) -> None:
        """Kills and restarts, and the broken rule file: one task, so their order is the plan's."""
        assert self.daemon is not None
        events: list[tuple[float, str, Kill | None]] = [(k.at, "kill", k) for k in self.plan.kills]
        events += [(self.plan.broken_at, "break", None), (self.plan.fixed_at, "fix", None),
                   (self.plan.edited_at, "edit", None)]
        for offset, what, kill in sorted(events, key=lambda e: e[0]):
            await self.at(offset)
            if what == "break":
                self.write_config(self.broken_readers())
                self.broken = True
                self.say("config: saved with a bad regular expression")
            elif what == "edit":
                self.edited = True
                self.write_config(self.fixed_readers())
                self.say("config: edited (one more rule), for the daemon to notice")
            elif what == "fix":
                self.write_config(self.fixed_readers())
                self.broken = False
                self.say("config: fixed (one rule added)")
                if self.down_while_broken:
                    self.down_while_broken = False
                    await self.restart("after the fix")
                elif self.daemon.alive:
                    self.daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            elif kill is not None:
                await self.kill(kill)

    async def kill(self, kill: Kill) -> None:
        daemon = self.daemon
        assert daemon is not None
        if not daemon.alive:
            return  # down (the broken config): nothing to kill
        if kill.while_broken:  # let the running daemon reject the broken file first
            deadline = time.monotonic() + 15
            while "config not reloaded" not in daemon.logs[-1].read_text(errors="replace"):
                if time.monotonic() > deadline:
                    self.report.problem(f"the running daemon never rejected the broken rule file: see "
                                        f"{daemon.logs[-1].name}")
                    break
                await asyncio.sleep(0.2)
        daemon.expected_exit = True
        if kill.step is not None and kill.step.startswith("term"):
            await self.graceful_restart(kill)
            return
        how = "at a random moment"
        if kill.step is not None:
            self.mailbox.arm(daemon.pid, kill.step)
            deadline = time.monotonic() + 3 * self.options.schedules[1]
            while not self.mailbox.fired.is_set() and time.monotonic() < deadline and daemon.alive:
                await asyncio.sleep(0.02)
            self.mailbox.disarm()
            if self.mailbox.fired.is_set():
                how = "at MAIL" if kill.step == "mail" else "after DATA, before the 250"
            else:
                how = "at a random moment (no SMTP transaction came)"
        code = await daemon.kill()
        if code != -signal.SIGKILL:
            self.report.problem(f"a SIGKILLed daemon exited with {code}: see {daemon.logs[-1].name}")
        if kill.while_broken:
            how += ", the rule file broken"
        self.kills[how] += 1
        self.say(f"daemon: SIGKILL {how}; restart in {kill.pause:.1f} s")
        await asyncio.sleep(kill.pause)
        await self.restart("after SIGKILL")

    async def graceful_restart(self, kill: Kill) -> None:
        """SIGTERM at a random moment: in-flight work finishes (at most 20 s), exit 0, then a restart."""
        daemon = self.daemon
        assert daemon is not None
        how = "at a random moment"
        signalled = False
        if kill.step in ("term at mail", "term at poll"):
            # Past the start-up catch-up (which always runs to its end), so that what is in flight is
            # a scheduled job: a digest's delivery, or a poll waiting on a page that answers slowly.
            deadline = time.monotonic() + 6 * self.options.schedules[1]
            while (_count(daemon.logs[-1], rb"paperwatch\.daemon: poll: \d+ days") < 2
                   or time.monotonic() - daemon.started < 2 * self.options.schedules[1]):
                if time.monotonic() > deadline or not daemon.alive:
                    break
                await asyncio.sleep(0.1)
        if kill.step == "term at mail":
            self.mailbox.arm(daemon.pid, "mail", signal.SIGTERM)
            deadline = time.monotonic() + 3 * self.options.schedules[1]
            while not self.mailbox.fired.is_set() and time.monotonic() < deadline and daemon.alive:
                await asyncio.sleep(0.02)
            self.mailbox.disarm()
            signalled = self.mailbox.fired.is_set()
            how = "while a digest was being sent" if signalled else "at a random moment (no SMTP transaction came)"
        elif kill.step == "term at poll":
            armed = time.monotonic()
            self.site.fail("/papers/date/", Fault.hang(CLIENT_TIMEOUT * 0.75))
            deadline = armed + 10 * max(1.0, parse_duration(self.options.poll))
            while not any(r.fault == "hang" and r.ended is None and r.started >= armed for r in self.site.requests):
                if time.monotonic() > deadline or not daemon.alive:
                    break
                await asyncio.sleep(0.02)
            else:
                how = "while a poll waited on a slow page"
        started = time.monotonic()
        code = await daemon.stop(signalled=signalled)
        took = time.monotonic() - started
        self.stops.append(took)
        self.stop_kinds[how] += 1
        if code != 0:
            self.report.problem(f"SIGTERM {how}: exit {code} after {took:.1f} s (want 0): see {daemon.logs[-1].name}")
        self.say(f"daemon: SIGTERM {how}, stopped in {took:.1f} s; restart in {kill.pause:.1f} s")
        await asyncio.sleep(kill.pause)
        await self.restart("after SIGTERM")

    async def restart(self, why: str) -> None:
        assert self.daemon is not None
        code = await self.daemon.start()
        if code is None:
            return
        log = self.daemon.logs[-1]
        text = log.read_text(errors="replace")
        if self.broken and code == 78 and "invalid regular expression" in text:
            self.down_while_broken = True
            self.refused += 1
            self.say("daemon: the restart exits 78 on the broken rule file; down until it is fixed")
            return
        self.report.problem(f"a restart {why} exited with {code}: see {log.name}")

    async def watch(self) -> None:
        """A daemon that exits without being told to is a crash: note it, restart it."""
        assert self.daemon is not None
        while True:
            await asyncio.sleep(0.2)
            daemon = self.daemon
            if not daemon.starting:  # read the notes, as systemd does, or the daemon's sends would fail
                daemon.notify.drain()
                daemon.notify.seen.clear()
            if (daemon.proc is not None and daemon.proc.returncode is not None and not daemon.expected_exit
                    and not daemon.starting):
                code = daemon.proc.returncode
                daemon.expected_exit = True
                self.report.problem(f"the daemon exited by itself with {code}: see {daemon.logs[-1].name}")
                await self.restart("after a crash")

    async def sample_status(self) -> None:
        while True:
            await asyncio.sleep(max(4.0, 2 * self.options.day_seconds))
            await self.status(json_output=self.statuses % 2 == 1)

    async def status(self, *, json_output: bool) -> dict[str, Any] | None:
        args = ["-c", str(self.config), "status"] + (["--json"] if json_output else [])
        code, out, err = await paperwatch(*args)
        self.statuses += 1
        name = f"status-{self.statuses:04d}.{'json' if json_output else 'txt'}"
        (self.folder / "status").mkdir(exist_ok=True)
        (self.folder / "status" / name).write_text(out + err)
        if code != 0:
            # While the file is broken, status refuses it like every command (exit 78).
            if not (code == 78 and self.broken):
                self.report.problem(f"paperwatch status exited {code}: {err.strip()[:300]}")
            return None
        if json_output:
            parsed: dict[str, Any] = json.loads(out)
            return parsed
        return None

    # -- the whole run --------------------------------------------------------------------------

    async def run(self) -> Report:
        report = self.report
        self.folder.mkdir(parents=True, exist_ok=True)
        async with self.site:
            self.site.latest_policy = "latest"
            self.mail.start()
            try:
                self.write_config(self.readers)
                try:  # what ``paperwatch check`` does, without a process: the rules must all compile
                    prepare(load_config(self.config))
                except ConfigError as exc:
                    report.problem(f"the soak's own config is refused: {exc.problems[:5]}")
                    return report
                self.daemon = Daemon(self.folder, self.config, self.password, report)
                try:
                    await self.scenario()
                finally:
                    await self.daemon.close()
                self.say("the site's final data: a fresh fetch into site.db")
                site_read = await self.fetch_site()
            finally:
                await asyncio.to_thread(self.mail.stop)
        if site_read:
            self.say("checking")
            await self.check()
        (self.folder / "report.txt").write_text("\n".join(report.lines()) + "\n")
        return report

    async def fetch_site(self) -> bool:
        """The site's final data, read by a fresh paperwatch into a database of its own."""
        site_config = self.folder / "site.toml"
        site_config.write_text(f'[paperwatch]\ndatabase = "site.db"\n\n[source]\nbase_url = "{self.site.base_url}"\n'
                               "requests_per_minute = 6000\nmax_concurrency = 4\n")
        code, out, err = await paperwatch("-c", str(site_config), "fetch", *map(str, self.dates))
        (self.folder / "site-fetch.txt").write_text(out + err)
        if code != 0:
            self.report.problem(f"the final fetch of the site failed ({code}): {err[:500]}")
        return code == 0

    async def scenario(self) -> None:
        assert self.daemon is not None
        self.t0 = time.monotonic()
        self.say(f"soak in {self.folder}: {self.options.days} days {self.dates[0]} .. {self.dates[-1]}, "
                 f"seed {self.options.seed}")
        if await self.daemon.start() is not None:
            self.report.problem(f"the daemon did not start: see {self.daemon.logs[-1].name}")
            return
        self.t0 = time.monotonic()  # simulated time starts with the daemon
        tasks = [asyncio.create_task(c) for c in (self.run_site(), self.run_site_faults(), self.run_smtp_faults(),
                                                   self.run_daemon_events())]
        helpers = [asyncio.create_task(self.watch()), asyncio.create_task(self.sample_status())]
        try:
            await asyncio.gather(*tasks)
            await self.at(self.options.duration)
        finally:
            for task in tasks + helpers:
                task.cancel()
            await asyncio.gather(*tasks, *helpers, return_exceptions=True)
        await self.finish()

    async def finish(self) -> None:
        """Faults off, the site still, the daemon clean until it delivered everything; SIGTERM."""
        daemon, report = self.daemon, self.report
        assert daemon is not None
        deadline = time.monotonic() + 3 * self.options.schedules[1]
        while time.monotonic() < deadline and (self.mailbox.data_replies or self.mailbox.drop_after_data
                                               or self.mailbox.refuse_logins_left
                                               or any(s.hits < s.at_least for s in self.site.stretches)):
            await asyncio.sleep(0.2)  # the plan's last faults wait for a digest or a request to meet them
        self.site.stretches.clear()
        self.site.page_mode.clear()
        self.mailbox.disarm()
        with self.mailbox.lock:
            leftover = len(self.mailbox.data_replies), self.mailbox.drop_after_data
            self.mailbox.data_replies.clear()
            self.mailbox.drop_after_data = 0
        self.mailbox.refuse_logins_until = 0.0
        self.mailbox.refuse_logins_left = 0
        if any(leftover):
            report.notes.append(f"  (scripted SMTP faults never used: {leftover[0]} replies, {leftover[1]} drops)")
        await asyncio.to_thread(self.mail.start)
        if self.broken or self.down_while_broken:
            self.write_config(self.fixed_readers())
            self.broken = False
        if not daemon.alive:
            self.down_while_broken = False
            await self.restart("for the clean finish")
        self.publisher.frozen = True
        frozen = dt.datetime.now(dt.UTC)
        self.say("the end: faults off, the site stops changing; waiting for a clean poll and two digests each")
        finished = time.monotonic()
        async with await Store.open(self.config.parent / "paperwatch.db") as store:
            await self.settle(store, frozen)
            drained = await self.until(store, lambda s: s.pending == 0, self.options.drain, None)
        report.counts["final clean run"] = f"{time.monotonic() - finished:.0f} s"
        await self.status(json_output=True)
        code = await daemon.stop()
        if code != 0:
            report.problem(f"SIGTERM: the daemon exited with {code} (want 0 within {STOP_TIMEOUT:.0f} s)")
        if drained is None:
            await self.fast_forward()
        else:
            report.counts["outbox emptied by the daemon itself"] = "yes"

    async def settle(self, store: Store, frozen: dt.datetime) -> None:
        """Wait for a clean poll that started after the freeze, then two digests for every reader."""
        state = await self.until(store, lambda s: s.poll_at > frozen, 60, "a poll after the freeze")
        first = state.poll_at if state else frozen
        state = await self.until(store, lambda s: s.poll_at > first and s.summary.endswith(", 0 failed"), 90,
                                 "a clean poll that started after the freeze")
        clean = state.poll_at if state else frozen
        names = [r["name"] for r in self.readers]
        state = await self.until(store, lambda s: all(s.digest(n) > clean for n in names), 60,
                                 "a digest for every reader after the clean poll")
        once = {n: state.digest(n) for n in names} if state else {}
        await self.until(store, lambda s: all(s.digest(n) > once.get(n, clean) for n in names), 60,
                         "a second digest for every reader after the clean poll")

    async def until(self, store: Store, condition: Callable[[DaemonState], bool], timeout: float,
                    what: str | None) -> DaemonState | None:
        """Read the daemon's state from its database until ``condition`` holds; None after ``timeout``
        (a problem, unless ``what`` is None)."""
        deadline = time.monotonic() + timeout
        while True:
            state = DaemonState(_when(await store.get_state(LAST_POLL_AT)), await store.get_state(LAST_POLL_SUMMARY) or "",
                                await store.last_digests(), len(await store.messages(status="pending", limit=1)))
            if condition(state):
                return state
            if time.monotonic() > deadline:
                if what is not None:
                    self.report.problem(f"timed out after {timeout:.0f} s waiting for {what}")
                return None
            await asyncio.sleep(0.25)

    async def fast_forward(self) -> None:
        """Deliver what waits for a retry later than the drain allowed, advancing the outbox's clock."""
        config = load_config(self.config)
        os.environ[PASSWORD_ENV] = self.password
        try:
            async with await Store.open(config.database) as store:
                pending = await store.messages(status="pending", limit=100_000)
                self.report.counts["outbox messages delivered by fast-forwarding their retry"] = len(pending)
                latest = max((m.next_attempt_at for m in pending), default=None)
                self.report.counts["  latest retry fast-forwarded to"] = (
                    f"{(latest - dt.datetime.now(dt.UTC)).total_seconds():.0f} s ahead" if latest else "-")
                for _ in range(5):
                    pending = await store.messages(status="pending", limit=100_000)
                    if not pending:
                        break
                    await deliver_due(store, config, now=max(m.next_attempt_at for m in pending))
        finally:
            os.environ.pop(PASSWORD_ENV, None)

    # -- the checker ---------------------------------------------------------------------------

    async def check(self) -> None:
        report, daemon = self.report, self.daemon
        if daemon is None or not daemon.logs:
            return
        config = load_config(self.config)
        async with await Store.open(self.folder / "site.db") as store:
            site = {p.id: p for p in await store.papers()}
        async with await Store.open(config.database) as store:
            stored = {p.id: p for p in await store.papers()}
            outbox = await store.messages(limit=1_000_000)
            fetches = Counter(f.outcome for f in await store.recent_fetches(limit=10_000_000))
        report.counts["fetches by the daemon"] = ", ".join(f"{n} {o}" for o, n in sorted(fetches.items()))
        if dt.datetime.now(dt.UTC).date() != self.today:
            report.notes.append(f"  (the run crossed 00:00 UTC: the polls' window moved a day; day 1, {self.dates[0]}, "
                                "had stopped changing long before unless the run began just before midnight)")
        report.counts["simulated days"] = f"{len(self.dates)} ({self.dates[0]} .. {self.dates[-1]}), " \
                                          f"{sum(1 for d in self.dates if self.site.days.get(d))} with papers"
        report.counts["papers on the site"] = (f"{len(site)} ({self.publisher.refeatured} featured twice, "
                                               f"{self.publisher.hostile} with hostile fields)")
        self.compare_stores(site, stored)

        expected: dict[str, set[str]] = defaultdict(set)
        for match in compile_rules(config).match_all(site.values()):
            expected[match.reader].add(match.paper_id)
        self.check_mail(config.readers, expected, site, outbox)
        self.check_database(config.database)
        self.check_logs()
        await self.check_status()
        self.check_secrets()
        report.counts["SIGKILLs"] = f"{sum(self.kills.values())} (" + \
            ", ".join(f"{n} {k}" for k, n in sorted(self.kills.items())) + ")"
        report.counts["restarts refused on the broken rule file (exit 78, down until the fix)"] = self.refused
        report.counts["graceful restarts (SIGTERM)"] = f"{len(self.stops)} (" + ", ".join(
            f"{n} {k}" for k, n in sorted(self.stop_kinds.items())) + ")" + (
            f", each stopped within {max(self.stops):.1f} s" if self.stops else "")
        report.counts["daemon starts"] = f"{len(daemon.logs)}; exits: " + \
            ", ".join(f"{k} x{n}" for k, n in sorted(daemon.exits.items()))
        report.counts["polls"] = sum(_count(log, rb"paperwatch\.daemon: poll: \d+ days") for log in daemon.logs)
        report.counts["config reloads"] = (f"{sum(_count(log, b'config reloaded') for log in daemon.logs)} accepted, "
                                           f"{sum(_count(log, b'config not reloaded') for log in daemon.logs)} "
                                           "rejected (the broken rule file)")
        report.counts["status runs"] = self.statuses
        report.faults.update(self.site.injected)
        report.faults.update(self.mailbox.injected)
        report.faults.update(self.faults)

    def compare_stores(self, site: dict[str, Paper], stored: dict[str, Paper]) -> None:
        report = self.report
        missing, extra = sorted(site.keys() - stored.keys()), sorted(stored.keys() - site.keys())
        differ = [(site[i], stored[i]) for i in sorted(site.keys() & stored.keys()) if site[i] != stored[i]]
        report.counts["daemon's store = the site"] = (
            "yes" if not (missing or extra or differ) else
            f"NO: {len(missing)} papers missing, {len(extra)} extra, {len(differ)} different")
        if missing:
            report.problem(f"papers on the site the daemon never stored: {', '.join(missing[:10])}")
        if extra:
            report.problem(f"papers the daemon stored that the site does not have: {', '.join(extra[:10])}")
        for want, got in differ[:5]:
            fields = [f"{f.name}: site {getattr(want, f.name)!r} vs stored {getattr(got, f.name)!r}"
                      for f in dataclasses.fields(want) if getattr(want, f.name) != getattr(got, f.name)]
            report.problem(f"stored paper {want.id} differs from the site: {'; '.join(fields)[:600]}")

    def check_mail(self, readers: Iterable[Any], expected: dict[str, set[str]], site: dict[str, Paper],
                   outbox: list[Any]) -> None:
        report = self.report
        by_address = {r.email: r.name for r in readers}
        received = self.mailbox.snapshot()
        (self.folder / "mailbox.mbox").write_bytes(b"".join(b"From soak\r\n" + r.data + b"\r\n" for r in received))
        copies: dict[str, list[bytes]] = defaultdict(list)
        papers_in: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))  # reader -> paper -> Message-IDs
        notes = digests = 0
        for r in received:
            message = r.message
            mid = str(message["Message-ID"])
            copies[mid].append(r.data)
            if len(r.recipients) != 1:
                report.problem(f"{mid} went to {len(r.recipients)} recipients: {r.recipients}")
            bad = [h for h in ("Bcc", "Cc", "Resent-To", "Subject") if len(message.get_all(h) or []) > (h == "Subject")]
            if bad:
                report.problem(f"{mid} carries headers it must not: {bad}")
            if r.user != USERNAME:
                report.problem(f"{mid} was accepted without the login (user {r.user!r})")
            for recipient in r.recipients:
                if recipient == ADMIN:
                    notes += 1
                    continue
                name = by_address.get(recipient)
                if name is None:
                    report.problem(f"{mid} went to {recipient}, who is neither a reader nor the operator")
                    continue
                if message["To"] != recipient:
                    report.problem(f"{mid}: envelope to {recipient} but To: {message['To']!r}")
                digests += 1
                for paper in ids(message):
                    papers_in[name][paper].add(mid)
        repeats = {mid: len(c) for mid, c in copies.items() if len(c) > 1}
        for mid, data in copies.items():
            if len(set(data)) > 1:
                report.problem(f"{mid} arrived {len(data)} times with different bytes")
        causes = self.repeat_causes(repeats)
        total_expected = total_delivered = 0
        for reader in readers:
            got = papers_in[reader.name]
            want = expected.get(reader.name, set())
            lost = sorted(want - got.keys())
            unexpected = sorted(got.keys() - want)
            twice = sorted(p for p, mids in got.items() if len(mids) > 1)
            total_expected += len(want)
            total_delivered += len(got)
            report.readers.append((reader.name, len(want), len(got), len(lost), len(unexpected), len(twice)))
            if not want:
                report.problem(f"{reader.name}'s rules match nothing on the site: the soak's rules need work")
            if lost:
                report.problem(f"{reader.name} never received {len(lost)} matched papers: {', '.join(lost[:10])}")
            for paper in unexpected[:5]:
                p = site.get(paper)
                why = "not on the site" if p is None else f"upvotes {p.upvotes}, title {p.title[:60]!r}"
                report.problem(f"{reader.name} received {paper}, which the final rules do not match ({why}); "
                               f"in {sorted(got[paper])}")
            for paper in twice[:5]:
                report.problem(f"{reader.name} received {paper} in {len(got[paper])} different messages: "
                               f"{sorted(got[paper])}")
        report.counts["expected (reader, paper) pairs"] = total_expected
        report.counts["delivered (reader, paper) pairs"] = total_delivered
        report.counts["lost"] = sum(r[3] for r in report.readers)
        report.counts["unexpected"] = sum(r[4] for r in report.readers)
        report.counts["papers in two different messages"] = sum(r[5] for r in report.readers)
        report.counts["messages received"] = (f"{len(received)}: {digests} digests, {notes} operator notes, "
                                              f"{len(copies)} distinct Message-IDs")
        report.counts["allowed repeats (same Message-ID, same bytes)"] = (
            f"{sum(n - 1 for n in repeats.values())}" + "".join(
                f"\n    {mid} x{n}: {causes[mid]}" for mid, n in sorted(repeats.items())))
        statuses = Counter(m.status for m in outbox)
        report.counts["outbox"] = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        if statuses.keys() - {"sent"}:
            report.problem(f"outbox messages not sent at the end: {dict(statuses)}")
        for m in outbox:
            if m.message_id not in copies:
                report.problem(f"outbox message {m.message_id} to {m.recipient} ({m.status}) never arrived")
            elif m.data and copies[m.message_id][0] != m.data:
                report.problem(f"{m.message_id} arrived with other bytes than the outbox committed")
        orphans = copies.keys() - {m.message_id for m in outbox}
        if orphans:
            report.problem(f"messages arrived that the outbox does not hold: {sorted(orphans)[:5]}")

    def repeat_causes(self, repeats: dict[str, int]) -> dict[str, str]:
        """Why each repeated message came again: a crash window that opened as its copy arrived (the
        connection dropped after DATA, or within a few seconds a kill, a stop or the server going down).
        Anything else is a problem: nothing but a crash window may repeat a message."""
        assert self.daemon is not None
        events = sorted(self.daemon.events + self.mailbox.events)
        causes: dict[str, str] = {}
        for mid in repeats:
            found = []
            # Every copy but the last was followed by another: each needs a crash window of its own.
            for arrived, _, dropped in [a for a in self.mailbox.arrivals if a[1] == mid][:-1]:
                if dropped:
                    found.append("the connection dropped after DATA")
                    continue
                near = [(when, what) for when, what in events if arrived - 0.05 <= when <= arrived + REPEAT_WINDOW]
                if near:
                    found.append(f"{near[0][1]} {near[0][0] - arrived:+.2f} s after a copy arrived")
            causes[mid] = "; ".join(dict.fromkeys(found)) or "UNEXPLAINED"
            if not found:
                self.report.problem(f"{mid} arrived {repeats[mid]} times with no kill, stop, drop or server "
                                    f"outage within {REPEAT_WINDOW:.0f} s of a copy")
        return causes

    def check_database(self, path: Path) -> None:
        with contextlib.closing(sqlite3.connect(path)) as db:
            integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
            foreign = db.execute("PRAGMA foreign_key_check").fetchall()
        self.report.counts["PRAGMA integrity_check"] = ", ".join(integrity)
        if integrity != ["ok"]:
            self.report.problem(f"PRAGMA integrity_check: {integrity[:5]}")
        if foreign:
            self.report.problem(f"PRAGMA foreign_key_check: {foreign[:5]}")

    def check_logs(self) -> None:
        """Every traceback or leak warning, with the line that introduced it and the exception it ended with."""
        assert self.daemon is not None
        found: list[str] = []
        for log in self.daemon.logs:
            lines = log.read_text(errors="replace").splitlines()
            for number, line in enumerate(lines):
                if not any(marker in line for marker in TRACEBACK_MARKERS):
                    continue
                if line.startswith("Traceback"):
                    end = next((n for n in range(number + 1, len(lines)) if not lines[n].startswith((" ", "\t"))),
                               len(lines) - 1)
                    before = lines[number - 1].strip() if number else ""
                    stopping = any("stopping: finishing in-flight work" in earlier for earlier in lines[:number])
                    why = ("a job in flight cancelled by SIGTERM instead of finishing: "
                           if stopping and "CancelledError" in lines[end] else "")
                    found.append(f"{log.name}:{number}: {why}{before[:160]} | {lines[end].strip()[:120]}")
                elif not (number and lines[number - 1].startswith("Traceback")):
                    found.append(f"{log.name}:{number + 1}: {line.strip()[:200]}")
        self.report.counts["tracebacks or leak warnings in the logs"] = len(found)
        for text in found[:8]:
            self.report.problem(f"log: {text}")
        if len(found) > 8:
            self.report.problem(f"log: ... and {len(found) - 8} more tracebacks or warnings")

    async def check_status(self) -> None:
        results = await asyncio.gather(self.status(json_output=True), self.status(json_output=False))
        state = results[0]
        if state is None:
            self.report.problem("paperwatch status --json failed at the end")
            return
        failing = [f"{d['day']}: {d['error']}" for d in state["failed_days"]]
        self.report.counts["failing days in status at the end"] = len(failing)
        if failing or state["days"]["failed"]:
            self.report.problem(f"after a clean poll, status still shows {state['days']['failed']} failing days: "
                                f"{failing[:3]}")

    def check_secrets(self) -> None:
        forms = {"the password": self.password.encode(),
                 "base64 of the password": base64.b64encode(self.password.encode()),
                 "AUTH PLAIN of the login": base64.b64encode(f"\0{USERNAME}\0{self.password}".encode())}
        files = 0
        for path in sorted(self.folder.rglob("*")):
            if not path.is_file():
                continue
            files += 1
            data = path.read_bytes()
            for what, form in forms.items():
                if form in data:
                    self.report.problem(f"{what} appears in {path.relative_to(self.folder)}")
        self.report.counts["password found in files the soak wrote"] = f"0 of {files} files" if not any(
            "password" in p or "AUTH PLAIN" in p for p in self.report.problems) else "FOUND"
        if not self.mailbox.auth_attempts:
            self.report.problem("the daemon never logged in to the SMTP server: the password was never used")


@dataclass(frozen=True)
class DaemonState:
    """What the daemon's database says of its progress (the keys ``status`` reads too)."""

    poll_at: dt.datetime
    summary: str
    digests: dict[str, dt.datetime | None]
    pending: int

    def digest(self, reader: str) -> dt.datetime:
        return self.digests.get(reader) or dt.datetime.min.replace(tzinfo=dt.UTC)


def _when(text: str | None) -> dt.datetime:
    return dt.datetime.fromisoformat(text) if text else dt.datetime.min.replace(tzinfo=dt.UTC)


def _count(path: Path, pattern: bytes) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if re.search(pattern, line))


async def run_soak(options: Options) -> Report:
    return await Soak(options).run()


def main(argv: list[str] | None = None) -> int:
    """``bench/soak``'s command line."""
    import argparse
    import tempfile
    import warnings

    warnings.filterwarnings("ignore", AIOSMTPD_LOGIN_WARNING, DeprecationWarning)
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs the same deprecation too
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the fake site's resets meet closed sockets

    parser = argparse.ArgumentParser(prog="bench/soak", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=60, help="simulated days, 2..60 (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the daemon (default 20)")
    parser.add_argument("--stops", type=int, default=5, help="graceful restarts, SIGTERM (default 5)")
    parser.add_argument("--day-seconds", type=float, default=6.0, help="real seconds per simulated day (default 6)")
    parser.add_argument("--drain", type=float, default=180.0,
                        help="seconds the daemon's own retries get to empty the outbox at the end (default 180)")
    parser.add_argument("--ci", action="store_true", help="the CI-sized run of tests/test_soak.py (with --seed)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="run in DIR and keep logs, databases and mail")
    parser.add_argument("--quiet", action="store_true", help="only the final report")
    args = parser.parse_args(argv)

    def run(folder: Path) -> Report:
        sized = CI_SIZED if args.ci else {"days": args.days, "kills": args.kills, "stops": args.stops,
                                          "day_seconds": args.day_seconds, "drain": args.drain}
        options = Options(folder=folder, seed=args.seed, **sized,
                          progress=None if args.quiet else lambda line: print(line, flush=True))
        return asyncio.run(run_soak(options))

    if args.keep is not None:
        report = run(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            report = run(Path(tmp))
    print("\n".join(report.lines()), flush=True)
    return 0 if not report.problems else 1
