"""What the test modules share: running the command, the daemon under test, mail and config helpers."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.resources
import os
import re
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from conftest import FAST_SOURCE, toml_value
from fakehf import FakeHF
from paperwatch.config import Config
from paperwatch.ruleset import compile_rules
from paperwatch.store import Store
from smtpserver import PASSWORD, Certificates, Recorder, SmtpServer

FAST = """
[[readers]]
name = "alice"
email = "alice@example.org"
schedule = "3s"
[[readers.rules]]
name = "linear attention"
keywords = ["linear transformer", "linear attention"]

[[readers]]
name = "bob"
email = "bob@example.org"
schedule = "3s"
[[readers.rules]]
name = "deep learning"
keywords = ["deep learning"]
"""


COSMOLOGY = FAST.replace('keywords = ["linear transformer", "linear attention"]',
                         'keywords = ["linear transformer", "linear attention", "cosmology"]')


BROKEN = COSMOLOGY.replace('"cosmology"]', '"cosmology", "re:(unclosed", "brain*"]')


class Notifications:
    """The NOTIFY_SOCKET end: every datagram the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.seen: list[str] = []

    async def collect(self) -> None:
        while True:
            self.drain()
            await asyncio.sleep(0.05)

    def drain(self) -> list[str]:
        while True:
            try:
                self.seen += self.sock.recv(4096).decode().split("\n")
            except BlockingIOError:
                return self.seen


class Daemon:
    def __init__(self, config: Path, notify: Notifications, log: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.notify, self.log = config, notify, log
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), "WATCHDOG_USEC": "600000", **self.env}
        env.pop("WATCHDOG_PID", None)
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "paperwatch", "-v", "-c", str(self.config), "run", env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        await until(lambda: "READY=1" in self.notify.drain(), 20, "READY=1")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def delivered(recorder: Recorder, reader: str) -> Counter[str]:
    return Counter(p for m in recorder.messages_to(f"{reader}@example.org") for p in ids(m))


def maildir_messages(root: Path) -> list[Any]:
    import email.policy

    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((root / "new").glob("*"), key=lambda p: p.stat().st_mtime_ns)] \
        if (root / "new").is_dir() else []  # in delivery order: names start with the second only


TODAY = dt.datetime.now(dt.UTC).date()


YESTERDAY = TODAY - dt.timedelta(days=1)


LINEAR = {"2503.63197", "2503.20711", "2503.71116"}  # the samples' linear transformer/attention titles


READERS = """
[[readers]]
name = "alice"
email = "alice@example.org"
[[readers.rules]]
name = "linear attention"
keywords = ["linear transformer", "linear attention"]
[[readers.rules]]
name = "brains"
keywords = ["brain*"]

[[readers]]
name = "bob"
email = "bob@example.org"
[[readers.rules]]
name = "deep learning"
keywords = ["deep learning"]

[[readers]]
name = "carol"
email = "carol@example.org"
[[readers.rules]]
name = "gravity"
keywords = ["quantum gravity"]
"""


def write_config(tmp_path: Path, hf: FakeHF, *, smtp: SmtpServer | None = None, readers: str = READERS,
                 mail: dict[str, Any] | None = None) -> Path:
    source = {**FAST_SOURCE, "base_url": hf.base_url, "lookback_days": 2}
    lines = ["[paperwatch]", 'database = "paperwatch.db"', 'admin = "ops@example.org"', "", "[source]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in source.items()]
    lines += ["", "[mail]", 'from = "paperwatch <pw@example.org>"', 'give_up = "1h"']
    lines += [f"{key} = {toml_value(value)}" for key, value in (mail or {}).items()]
    if smtp is not None:
        lines += ["", "[mail.smtp]", 'host = "127.0.0.1"', f"port = {smtp.port}", 'security = "none"', "timeout = 5"]
    path = tmp_path / "paperwatch.toml"
    path.write_text("\n".join(lines) + "\n" + readers)
    return path


def serve_samples(hf: FakeHF, count: int = 26) -> list[dict[str, Any]]:
    items = FakeHF.sample_items()[:count]
    hf.days[YESTERDAY] = items
    return items


def ids(message: EmailMessage) -> list[str]:
    """The arXiv ids a digest links to, once per paper (its huggingface.co page link)."""
    text = message.get_body(("plain",))
    assert text is not None
    return re.findall(r"huggingface\.co/papers/(\d{4}\.\d{4,5})\b(?!\S*\.pdf)", text.get_content())


def expected(config: Config, papers: list[Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for match in compile_rules(config).match_all(papers):
        found.setdefault(match.reader, set()).add(match.paper_id)
    return found


async def stored_papers(config: Config) -> list[Any]:
    async with await Store.open(config.database) as store:
        return await store.papers()


def write_smtp_login(path: Path, certificates: Certificates, *, security: str = "starttls") -> Path:
    """Make the config's [mail.smtp] log in, over ``security``, trusting the test's CA; the password in a file."""
    secret = path.parent / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    login = [f'security = "{security}"', 'username = "alerts"', f'password_file = "{secret}"',
             f'ca_file = "{certificates.ca_file}"']
    path.write_text(path.read_text().replace('security = "none"', "\n".join(login)))
    return path


async def paperwatch(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "paperwatch", *args, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def lines(daemon: Daemon) -> list[str]:
    return daemon.log.read_text().splitlines()


def outcomes_after(daemon: Daemon, marker: str) -> int:
    """How many digest outcomes for alice were logged after the last line holding ``marker``."""
    log = lines(daemon)
    last = max((n for n, line in enumerate(log) if marker in line), default=len(log))
    return sum(1 for line in log[last + 1:] if " alice: " in line)


def packaged_templates() -> dict[str, str]:
    """The packaged templates' sources by file name (the .j2 files a template directory holds)."""
    folder = importlib.resources.files("paperwatch") / "templates"
    return {item.name: item.read_text(encoding="utf-8") for item in folder.iterdir() if item.name.endswith(".j2")}
