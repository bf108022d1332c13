"""firmware.terminal.liveness: WATCHDOG=1 reaches a socket the test listens on only while every beat is
fresh and every watched thread lives; it stops when one is stuck and resumes when it is alive again."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.terminal.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """The service manager's end: a datagram socket, and the environment systemd would give (30 s)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2.0)
    try:
        yield sock, {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "30000000"}
    finally:
        sock.close()


def pending(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued, without waiting."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(2.0)


def test_ready_and_stopping(manager: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = manager
    live = Liveness(environ=env)
    assert live.interval == 30.0
    assert live.ready("recovered 1 sale")
    assert sock.recv(4096) == b"READY=1\nSTATUS=recovered 1 sale"
    assert live.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_fed_only_while_every_beat_is_fresh(manager: tuple[socket.socket, dict[str, str]],
                                           caplog: pytest.LogCaptureFixture) -> None:
    sock, env = manager
    clock = Clock()
    live = Liveness(environ=env, clock=clock)
    live.beat("main")                              # the default allowance: 60 s
    live.expect("pump", 5.0)
    assert live.feed() and pending(sock) == [b"WATCHDOG=1"]
    clock.now += 6                                 # the pump thread stopped beating
    with caplog.at_level(logging.ERROR):
        assert not live.feed() and not live.feed() and not live.feed()
    assert pending(sock) == [b"STATUS=stuck: pump (no beat for 6 s)"]    # said once, nothing fed
    said = [r for r in caplog.records if "watchdog not fed" in r.getMessage()]
    assert len(said) == 1 and said[0].__dict__["stuck"] == "pump (no beat for 6 s)"
    live.beat("pump")                              # its 5 s allowance, from expect()
    assert live.feed()
    assert pending(sock) == [b"STATUS=serving", b"WATCHDOG=1"]
    clock.now += 61
    live.beat("pump")
    assert not live.feed()
    assert pending(sock) == [b"STATUS=stuck: main (no beat for 67 s)"]      # last beat at the start


def test_a_long_step_gets_its_own_allowance(manager: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = manager
    clock = Clock()
    live = Liveness(environ=env, clock=clock)
    live.beat("main", max_age=1200.0)              # a whole sale: PIN, nozzle lift, filling
    clock.now += 600
    assert live.feed()
    live.beat("main")                              # the next turn: back to the usual 60 s
    clock.now += 61
    assert not live.feed()
    assert pending(sock) == [b"WATCHDOG=1", b"STATUS=stuck: main (no beat for 61 s)"]


def test_not_fed_when_a_watched_thread_died(manager: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = manager
    live = Liveness(environ=env)
    release = threading.Event()
    poller = threading.Thread(target=release.wait, name="dart-poll")
    poller.start()
    current: list[threading.Thread | None] = [poller]
    live.watch("pump line", poller)
    live.watch("mqtt", lambda: current[0])         # asked each time: a driver may make a new thread
    assert live.feed()
    release.set()
    poller.join()
    assert not live.feed()
    assert pending(sock) == [b"WATCHDOG=1", b"STATUS=stuck: mqtt (thread ended), pump line (thread ended)"]
    current[0] = None
    live.forget("pump line")
    assert not live.feed()
    assert pending(sock) == [b"STATUS=stuck: mqtt (thread ended)"]
    live.forget("mqtt")
    assert live.feed()
    live.expect("pump", 1.0)
    live.forget("pump")                            # its allowance goes too
    live.beat("pump")
    assert live._beats["pump"].max_age == 60.0


def test_feeder_thread_cadence_stops_and_resumes(tmp_path: Path) -> None:
    """The real feeder: every interval/2 while fresh; silent while stuck; again once alive."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2.0)
    clock = Clock()
    live = Liveness(environ={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"},
                    clock=clock)
    assert live.interval == 0.2
    live.beat("main", max_age=10.0)
    try:
        live.start()
        stamps = []
        for _ in range(4):
            assert sock.recv(4096) == b"WATCHDOG=1"
            stamps.append(time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(0.05 <= gap <= 1.0 for gap in gaps), gaps         # 0.1 s apart, on a loaded machine
        clock.now += 11                                              # main is stuck from now on
        got = sock.recv(4096)
        while got == b"WATCHDOG=1":                                  # one may have been on its way
            got = sock.recv(4096)
        assert got == b"STATUS=stuck: main (no beat for 11 s)"
        sock.settimeout(0.5)                                         # 5 feeder turns: none fed
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        sock.settimeout(2.0)
        live.beat("main")
        assert sock.recv(4096) == b"STATUS=serving"
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert live.stopping()
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):                            # the feeder stopped with it
            sock.recv(4096)
    finally:
        live.stop()
        sock.close()


def test_without_a_watchdog_nothing_runs(tmp_path: Path) -> None:
    live = Liveness(environ={})
    assert live.interval is None
    live.start()
    assert live._feeder is None
    assert not live.ready()                        # no manager: not sent, no error
    live.stopping()


def test_a_living_thread_that_no_longer_turns_stops_the_feeding() -> None:
    """A polling thread blocked in a write is alive; its round counter stands still: stuck after max_age."""
    now = [100.0]
    rounds = [0]
    sent: list[str] = []
    live = Liveness(interval=10.0, clock=lambda: now[0], send=lambda state: sent.append(state) is None)
    live.beat("main", 1000.0)
    live.watch_progress("pump-line-1-rounds", lambda: rounds[0], max_age=30.0)
    for _ in range(5):                            # turning: fed
        rounds[0] += 1
        now[0] += 20
        assert live.feed()
    now[0] += 31                                  # standing still past its allowance
    assert not live.feed() and live.stuck() == {"pump-line-1-rounds": "no progress for 31 s"}
    rounds[0] += 1                                # turning again
    assert live.feed() and sent[-1] == "WATCHDOG=1"
