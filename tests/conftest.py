"""Shared fixtures: the fake Hugging Face site on loopback and config files pointing at it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fakehf import FakeHF
from paperwatch.config import Config, load_config

# The fake site is ours: polls may come seconds apart (the daemons the tests start inherit this).
os.environ.setdefault("PAPERWATCH_POLL_FLOOR", "0")

# Fast, but every mechanism still on: retries, backoff, pacing, concurrency limits.
FAST_SOURCE: dict[str, Any] = {
    "max_concurrency": 2,
    "requests_per_minute": 6000,
    "retries": 3,
    "backoff": 0.01,
    "timeout": 2,
    "connect_timeout": 1,
    "max_wait": 5,
}

ConfigFactory = Callable[..., Config]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def write_config(path: Path, base_url: str, **source: object) -> Path:
    """Write a config file for the fake site; ``source`` overrides the fast defaults."""
    values = {**FAST_SOURCE, "base_url": base_url, **source}
    lines = ["[paperwatch]", 'database = "paperwatch.db"', "", "[source]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
async def fake_hf() -> AsyncIterator[FakeHF]:
    async with FakeHF() as server:
        yield server


@pytest.fixture
def make_config(tmp_path: Path, fake_hf: FakeHF) -> ConfigFactory:
    def make(**source: object) -> Config:
        return load_config(write_config(tmp_path / "paperwatch.toml", fake_hf.base_url, **source))

    return make


def weekdays(start: dt.date, count: int) -> list[dt.date]:
    """``count`` consecutive calendar days from ``start``, weekends included."""
    return [start + dt.timedelta(days=n) for n in range(count)]


def require_system(program: str, package: str) -> str:
    """The path of a system program a test needs: skipped where it is missing, failed where
    ``PAPERWATCH_REQUIRE_SYSTEM=1`` says it must be there (CI installs it)."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin:/sbin")
    if found is None:
        if os.environ.get("PAPERWATCH_REQUIRE_SYSTEM") == "1":
            pytest.fail(f"{program} is missing, and PAPERWATCH_REQUIRE_SYSTEM=1: install the {package} package")
        pytest.skip(f"{program} is not installed (Debian package {package})")
    return found
