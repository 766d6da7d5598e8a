"""The benchmarks run, agree with our results, and stay in their class (short runs, loose bounds:
the full targets are checked by running bench/ itself on a quiet machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_parse_bench_compares_ours_bare_and_beautifulsoup() -> None:
    run = subprocess.run([sys.executable, str(BENCH / "parse"), "--quick"], capture_output=True, text=True,
                         timeout=120)
    assert "disagrees" not in run.stderr, run.stderr
    rows = {m.group(1).strip(): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^(daily \(JSON\)|weekend \(JSON, other day\))\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+"
                                 r"([\d.]+)\s+([\d.]+)$", run.stdout, re.M)}
    assert len(rows) == 2, run.stdout + run.stderr
    for ours_over_bare, soup_over_ours in rows.values():
        assert ours_over_bare < 2.5 and soup_over_ours > 4, run.stdout


def test_match_bench_agrees_with_the_naive_loop_and_grows_with_text_not_rules() -> None:
    run = subprocess.run([sys.executable, str(BENCH / "match"), "--quick"], capture_output=True, text=True,
                         timeout=300)
    assert "PASS  identical results" in run.stdout, run.stdout + run.stderr
    speedup = re.search(r"(\d+)x faster than the naive loop", run.stdout)
    growth = re.search(r"ours grows ([\d.]+)x for", run.stdout)
    per_char = [float(m) for m in re.findall(r"cost per character within ([\d.]+)x", run.stdout)]
    assert speedup and growth and len(per_char) == 2, run.stdout
    assert int(speedup.group(1)) >= 10 and float(growth.group(1)) <= 6 and max(per_char) <= 4, run.stdout
    assert all(re.search(rf"^\s+{count}\s", run.stdout, re.M) for count in ("100", "1,000", "10,000")), run.stdout


def test_rss_bench_sees_no_growth_over_a_few_hundred_poll_cycles() -> None:
    run = subprocess.run([sys.executable, str(BENCH / "rss"), "--cycles", "300", "--early", "100"],
                         capture_output=True, text=True, timeout=300)
    assert "PASS" in run.stdout, run.stdout + run.stderr
    assert re.search(r"cycle +1\d\d: RSS", run.stdout) and re.search(r"cycle +3\d\d: RSS", run.stdout), run.stdout


def test_scale_bench_mails_every_digest_over_one_connection_and_reports_its_costs() -> None:
    """The shape, not the seconds: every digest over one connection, and each figure the full run
    is judged by is measured and printed."""
    run = subprocess.run([sys.executable, str(BENCH / "scale"), "--papers", "540", "--readers", "10"],
                         capture_output=True, text=True, timeout=300)
    assert "PASS  one SMTP connection for every digest" in run.stdout, run.stdout + run.stderr
    assert "10 digests mailed over 1 SMTP connection(s)" in run.stdout, run.stdout
    papers = re.search(r"connection\(s\), (\d+) papers each on average", run.stdout)
    cpu = re.search(r"a cycle's CPU under half its fetch time \(([\d.]+) s against (\d+) s\)", run.stdout)
    idle = re.search(r"as the systemd unit runs it: ([\d.]+) MB", run.stdout)
    assert papers and cpu and idle, run.stdout
    assert int(papers.group(1)) > 0 and float(cpu.group(1)) > 0 and float(cpu.group(2)) == 3
    assert 10 < float(idle.group(1)) < 500


@pytest.mark.slow
def test_ingest_bench_costs_the_same_per_paper_at_four_times_the_papers() -> None:
    run = subprocess.run([sys.executable, str(BENCH / "ingest"), "--sizes", "2000,8000"], capture_output=True,
                         text=True, timeout=600)
    per_1k = {int(m.group(1).replace(",", "")): float(m.group(2))
              for m in re.finditer(r"^\s*([\d,]+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+-?[\d.]+$",
                                   run.stdout, re.M)}
    assert set(per_1k) == {2000, 8000}, run.stdout + run.stderr
    # The shape, not the speed: a paper costs no more when the database holds four times as many
    # (the previous store's cost per paper grew with the database: 2.5x from 3,000 to 12,000).
    assert per_1k[8000] <= 1.5 * per_1k[2000], run.stdout


@pytest.mark.slow
def test_match_bench_whole_commands_cost_the_same_per_paper_at_four_times_the_papers() -> None:
    run = subprocess.run([sys.executable, str(BENCH / "match"), "--commands", "--papers", "2000", "--readers", "20"],
                         capture_output=True, text=True, timeout=600)
    rows = {int(m.group(1).replace(",", "")): (float(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^\s*([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+[\d,]+\s+[\d,]+\s+[\d,]+$",
                                 run.stdout, re.M)}
    assert {500, 2000} <= set(rows), run.stdout + run.stderr
    for column in range(3):  # papers --json, one reader's match --json, every reader's
        assert rows[2000][column] / 2000 <= 1.5 * rows[500][column] / 500, run.stdout
