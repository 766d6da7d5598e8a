"""The soak harness of bench/soak, CI-sized: the real daemon through eight simulated days of
site and SMTP faults, kills, stops and a broken rule file; every reader gets exactly their matches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from soak import AIOSMTPD_LOGIN_WARNING, CI_SIZED, Options, run_soak

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("PAPERWATCH_SOAK_SEED", "7"))
# Every kind of fault the plan draws must have happened at least once, or the run proved less.
KINDS = ("site HTTP 429", "site HTTP 5", "site reset", "site hang", "site page", "smtp 421", "smtp 451",
         "smtp drop", "smtp server down", "smtp 535")


@pytest.mark.filterwarnings(f"ignore:{AIOSMTPD_LOGIN_WARNING}:DeprecationWarning")
async def test_a_short_soak_delivers_every_match_once_and_leaks_no_password(tmp_path: Path) -> None:
    lines: list[str] = []
    report = await run_soak(Options(folder=tmp_path, seed=SEED, progress=lines.append, **CI_SIZED))
    summary = "\n".join(lines + report.lines())
    injected = " ".join(report.faults)
    missing = [kind for kind in KINDS if kind not in injected]
    assert not report.problems and not missing, f"{summary}\nfaults never injected: {missing}"
    assert report.counts["lost"] == 0 and report.counts["expected (reader, paper) pairs"] > 50, summary
