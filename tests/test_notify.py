"""The systemd notify protocol, seen from a socket the test opens as NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from paperwatch.notify import Notifier, watchdog_interval


def receive(sock: socket.socket) -> list[list[str]]:
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(4096).decode().split("\n"))
        except BlockingIOError:
            return datagrams


@pytest.fixture
def listener(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def test_each_state_change_is_one_datagram(listener: socket.socket, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    notifier = Notifier()
    notifier.ready("2 readers, polling every 30m")
    notifier.status("poll: 3 days, 40 papers, 2 new, 0 failed")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()
    got = receive(listener)
    assert got[:3] == [["READY=1", "STATUS=2 readers, polling every 30m"],
                       ["STATUS=poll: 3 days, 40 papers, 2 new, 0 failed"], ["WATCHDOG=1"]]
    assert got[3][0] == "RELOADING=1" and got[3][1].startswith("MONOTONIC_USEC=") and got[3][1][15:].isdigit()
    assert got[4:] == [["STOPPING=1"]]


def test_an_abstract_socket_address_works() -> None:
    name = f"paperwatch-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        notifier = Notifier(f"@{name}")
        notifier.watchdog()
        notifier.close()
        assert receive(sock) == [["WATCHDOG=1"]]
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")  # no socket: a no-op


def test_a_socket_that_went_away_is_not_fatal(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    notifier.watchdog()
    notifier.stopping()
    notifier.close()


@pytest.mark.parametrize("usec, pid, expected", [
    ("10000000", None, 5.0),  # ping at half the timeout
    ("10000000", "self", 5.0),
    ("10000000", "1", None),  # the watchdog is meant for another process
    ("", None, None),
    ("nonsense", None, None),
])
def test_watchdog_interval(usec: str, pid: str | None, expected: float | None,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert watchdog_interval() == expected
