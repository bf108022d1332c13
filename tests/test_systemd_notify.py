"""drivers.systemd: sd_notify datagrams to a socket the test listens on (path and abstract), the watchdog
interval from the environment, journald priority prefixes."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.systemd import notify, ready, reloading, status, stopping, watchdog, watchdog_interval
from drivers.systemd.journal import JournalFormatter, prefix_priorities, stderr_is_journal


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket like the one systemd listens on, and the $NOTIFY_SOCKET value naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify")
        sock.bind(name)
    else:
        name = "@forecourt-test-" + secrets.token_hex(8)
        sock.bind("\0" + name[1:])
    sock.settimeout(2.0)
    try:
        yield sock, name
    finally:
        sock.close()


def test_each_state_arrives_as_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    env = {"NOTIFY_SOCKET": name}
    assert ready("recovered 0 sales", environ=env)
    assert sock.recv(4096) == b"READY=1\nSTATUS=recovered 0 sales"
    assert watchdog(environ=env)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert status("two\nlines", environ=env)
    assert sock.recv(4096) == b"STATUS=two lines"          # a newline would start another assignment
    assert stopping(environ=env)
    assert sock.recv(4096) == b"STOPPING=1"
    assert reloading(environ=env)
    first, second = sock.recv(4096).split(b"\n")
    assert first == b"RELOADING=1" and second.startswith(b"MONOTONIC_USEC=") and int(second[15:]) > 0
    assert notify("FDSTORE=0", environ=env)
    assert sock.recv(4096) == b"FDSTORE=0"


def test_no_socket_is_a_no_op() -> None:
    assert notify("READY=1", environ={}) is False
    assert notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False
    assert notify("READY=1", environ={"NOTIFY_SOCKET": "relative/name"}) is False


def test_a_socket_nobody_listens_on_is_logged_not_raised(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert "sd_notify failed" in caplog.text


def test_the_process_environment_is_the_default(listener: tuple[socket.socket, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sock, name = listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    assert watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_watchdog_interval_from_usec_and_pid() -> None:
    me = os.getpid()
    assert watchdog_interval(environ={"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval(environ={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(me)}) == 30.0
    assert watchdog_interval(environ={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(me + 1)}) is None
    for bad in ("", "0", "-5", "3e7", "٣"):
        assert watchdog_interval(environ={"WATCHDOG_USEC": bad}) is None
    assert watchdog_interval(environ={}) is None


def test_journal_prefixes_each_line_with_its_priority() -> None:
    fmt = JournalFormatter(logging.Formatter("%(levelname)s %(message)s"))
    rec = logging.makeLogRecord({"levelno": logging.ERROR, "levelname": "ERROR", "msg": "a\nb"})
    assert fmt.format(rec) == "<3>ERROR a\n<3>b"
    rec = logging.makeLogRecord({"levelno": logging.DEBUG, "levelname": "DEBUG", "msg": "x"})
    assert fmt.format(rec) == "<7>DEBUG x"


def test_prefixes_only_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(environ=env, fd=stream.fileno())
        assert not stderr_is_journal(environ={"JOURNAL_STREAM": "1:2"}, fd=stream.fileno())
        assert not stderr_is_journal(environ={}, fd=stream.fileno())
    logger = logging.getLogger("test-systemd-journal")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        assert prefix_priorities(logger, environ={}) is False
        assert not isinstance(handler.formatter, JournalFormatter)
        err = os.fstat(2)
        assert prefix_priorities(logger, environ={"JOURNAL_STREAM": f"{err.st_dev}:{err.st_ino}"})
        assert isinstance(handler.formatter, JournalFormatter)
    finally:
        logger.removeHandler(handler)
