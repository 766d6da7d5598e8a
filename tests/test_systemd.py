"""The shipped units: `systemd-analyze verify` clean, and consistent with what the daemon does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paperwatch.daemon import STOP_DEADLINE

pytestmark = pytest.mark.e2e

UNITS = Path(__file__).resolve().parents[1] / "systemd"
SYSTEM, USER = UNITS / "paperwatch.service", UNITS / "user" / "paperwatch.service"
PAPERWATCH = Path(sys.prefix) / "bin" / "paperwatch"


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: CI installs systemd's tools before the tests")
        pytest.skip("systemd-analyze is not installed")
    return found


def installed_copy(unit: Path, folder: Path) -> Path:
    """The unit as installed here: only the ExecStart program points at this environment's
    paperwatch (verify insists that the program exists); every other line is the shipped one."""
    text = unit.read_text()
    text = text.replace("/opt/paperwatch/bin/paperwatch", str(PAPERWATCH))
    text = text.replace("%h/.local/bin/paperwatch", str(PAPERWATCH))
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "paperwatch.service"
    copy.write_text(text)
    return copy


def directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_system_unit_verifies_clean(tmp_path: Path) -> None:
    run = subprocess.run([analyze(), "verify", str(installed_copy(SYSTEM, tmp_path))],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr


def test_the_user_unit_verifies_clean(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    run = subprocess.run([analyze(), "--user", "verify", str(installed_copy(USER, tmp_path / "user"))],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr


def test_the_system_unit_is_hardened(tmp_path: Path) -> None:
    run = subprocess.run([analyze(), "security", "--offline=yes", str(installed_copy(SYSTEM, tmp_path))],
                         capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for paperwatch.service: ([\d.]+)", run.stdout)
    assert score is not None, run.stdout + run.stderr
    assert float(score.group(1)) <= 2.0, run.stdout


@pytest.mark.parametrize("unit", [SYSTEM, USER], ids=["system", "user"])
def test_the_units_match_what_the_daemon_does(unit: Path) -> None:
    found = directives(unit)
    assert found["Type"] == ["notify"] and found["NotifyAccess"] == ["main"]
    assert found["RestartPreventExitStatus"] == ["78"] and found["Restart"] == ["on-failure"]
    assert found["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert found["ExecStart"][0].endswith(" run")
    assert seconds(found["TimeoutStopSec"][0]) > STOP_DEADLINE + 10
    assert seconds(found["WatchdogSec"][0]) >= 60


def test_the_system_unit_keeps_state_config_and_password_where_paperwatch_looks() -> None:
    found = directives(SYSTEM)
    assert found["StateDirectory"] == ["paperwatch"] and found["ConfigurationDirectory"] == ["paperwatch"]
    assert found["LoadCredential"] == ["smtp-password:/etc/paperwatch/smtp-password"]
    assert "-c /etc/paperwatch/paperwatch.toml" in found["ExecStart"][0]
    assert found["User"] == ["paperwatch"] and found["ProtectSystem"] == ["strict"]


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)\s*(s|min)?", value).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "min" else 1)
