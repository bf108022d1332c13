"""The host simulator's GPIO header (GpioServer) and the tcp:// client, over real loopback sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ConfigError, MessageError
from drivers.devices import open_device
from drivers.gpio.pins import GpioError
from drivers.gpio.remote import Message, RemotePins, format_line, parse_line
from hostsim.gpio_server import GpioServer


@pytest.fixture
def server() -> Iterator[GpioServer]:
    srv = GpioServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def pins(server: GpioServer) -> Iterator[RemotePins]:
    client: RemotePins = open_device("gpio", f"tcp://127.0.0.1:{server.port}?timeout=5")
    yield client
    client.close()


def wait_until(check: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_drive_reaches_the_terminal_and_outputs_reach_the_simulator(server: GpioServer,
                                                                    pins: RemotePins) -> None:
    door = pins.input(5, pull_up=True, active_low=True)
    assert door.read() is False
    changes: list[bool] = []
    door.on_change(changes.append)
    server.drive(5, False)
    wait_until(lambda: changes == [True])
    assert door.read() is True

    seen: list[tuple[int, bool]] = []
    server.on_output(lambda n, level: seen.append((n, level)))
    relay = pins.output(22, initial=False)
    lamp = pins.output(23, initial=False, active_low=True)
    relay.write(True)
    pins.sync()
    assert (server.level(22), server.level(23)) == (True, True)
    assert seen == [(22, False), (23, True), (22, True)]
    lamp.write(True)
    server.wait_output(23, False, timeout=3)
    with pytest.raises(ConfigError):
        server.level(24)
    assert server.level(24, default=False) is False


def test_pulses_at_1000_hz_for_2_s_are_counted_exactly(server: GpioServer, pins: RemotePins) -> None:
    meter = pins.input(27, pull_up=False)
    rising = [0]
    lock = threading.Lock()

    def count(level: bool) -> None:
        if level:
            with lock:
                rising[0] += 1

    meter.on_change(count)
    started = time.monotonic()
    server.pulses(27, 2000, hz=1000)
    assert 1.9 <= time.monotonic() - started < 4.0
    pins.sync()                  # every LEVEL line sent before the PONG has been handled
    assert rising[0] == 2000 and meter.read() is False


def test_a_restarted_terminal_is_told_the_levels_and_a_reconnect_keeps_them(server: GpioServer) -> None:
    url = f"tcp://127.0.0.1:{server.port}"
    first: RemotePins = open_device("gpio", url)
    first.input(6, pull_up=True)
    relay = first.output(22, initial=False)
    relay.write(True)
    first.sync()
    server.drive(6, False)
    first.close()                                        # the terminal stops: its outputs go safe
    assert server.level(22) is False                     # handled before close() returned
    with pytest.raises(ConfigError, match="released"):
        relay.write(True)
    assert server.input_level(6) is False

    second: RemotePins = open_device("gpio", url)        # the terminal starts again
    nozzle = second.input(6, pull_up=True)
    assert nozzle.read() is False                        # the level driven while it was away
    changes: list[bool] = []
    nozzle.on_change(changes.append)
    out = second.output(22, initial=False)
    out.write(True)
    second.sync()

    server.drop()                                        # a glitch: the client reconnects by itself
    server.drive(6, True)                                # changed while disconnected
    server.wait_connected(5, count=3)
    wait_until(lambda: changes == [True])
    server.wait_output(22, True, timeout=3)              # the client re-sent its output level
    second.close()


def test_a_malformed_line_is_refused_with_a_typed_error_and_the_server_carries_on(server: GpioServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as raw:
        reader = raw.makefile("rb")
        assert reader.readline() == b"HELLO gpio 1\n"
        for junk in (b"FLY 17 1\n", b"IN 99 UP\n", b"OUT 5\n", b"\xff\xfe\n", b"IN 17 SIDEWAYS\n",
                     b"LEVEL 17 1\n", b"x" * 200 + b"\n"):
            raw.sendall(junk)
            assert reader.readline().startswith(b"ERR ")
        raw.sendall(b"IN 17 UP\nPING\n")
        assert reader.readline() == b"LEVEL 17 1\n"
        assert reader.readline() == b"PONG\n"
        reader.close()
    assert len(server.errors) == 7
    assert all(isinstance(e, MessageError) and "GPIO" in str(e) for e in server.errors)
    client: RemotePins = open_device("gpio", f"tcp://127.0.0.1:{server.port}")
    assert client.input(17, pull_up=False).read() is False
    client.close()


def test_a_debounced_switch_over_tcp_reports_its_final_level_once(server: GpioServer,
                                                                   pins: RemotePins) -> None:
    door = pins.input(5, pull_up=True, active_low=True, bounce_ms=20)
    changes: list[bool] = []
    door.on_change(changes.append)
    for level in (False, True, False, True, False):
        server.drive(5, level)
    wait_until(lambda: changes == [True])
    time.sleep(0.08)
    assert changes == [True] and door.read() is True


def test_a_terminal_that_vanishes_mid_train_does_not_stop_the_header(server: GpioServer) -> None:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=3)
    raw.sendall(b"IN 27 DOWN\n")
    server.wait_connected(3)
    train = threading.Thread(target=server.pulses, args=(27, 300, 1000))
    train.start()
    time.sleep(0.05)
    raw.close()                                         # gone without a word, lines still coming
    train.join(5)
    assert not train.is_alive()
    server.drive(27, True)
    client: RemotePins = open_device("gpio", f"tcp://127.0.0.1:{server.port}")
    assert client.input(27, pull_up=False).read() is True
    client.close()


def test_the_line_codec_refuses_what_it_cannot_read() -> None:
    assert parse_line(b"IN 4 DOWN") == Message("IN", 4, False)
    assert parse_line(format_line(Message("OUT", 27, True)).rstrip()) == Message("OUT", 27, True)
    assert parse_line(b"PING") == Message("PING")
    for bad in (b"", b"LEVEL 1 1", b"LEVEL 28 1", b"LEVEL 017x 1", b"OUT 5 2", b"LEVEL \xd9\xa3 1",
                b"PING 3", b"A" * 65):
        with pytest.raises(MessageError):
            parse_line(bad)


@given(st.binary(max_size=80))
def test_any_bytes_parse_to_a_message_or_a_message_error(line: bytes) -> None:
    try:
        message = parse_line(line)
    except MessageError:
        return
    assert message.verb in ("IN", "OUT", "LEVEL", "PING", "PONG", "HELLO", "ERR")


@given(st.sampled_from(["IN", "OUT", "LEVEL"]), st.integers(2, 27), st.booleans())
def test_numbered_messages_survive_a_round_trip(verb: str, number: int, flag: bool) -> None:
    line = format_line(Message(verb, number, flag))
    assert line.endswith(b"\n") and parse_line(line[:-1]) == Message(verb, number, flag)


def test_no_header_listening_is_a_gpio_error_and_bad_urls_are_config_errors() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]                    # free once closed
    with pytest.raises(GpioError, match="does not answer"):
        open_device("gpio", f"tcp://127.0.0.1:{port}?timeout=0.3")
    with pytest.raises(ConfigError, match="host:port"):
        open_device("gpio", "tcp://127.0.0.1")
    with pytest.raises(ConfigError, match="timeout"):
        open_device("gpio", "tcp://127.0.0.1:9?timeout=-1")


TERMINAL = """
import sys, threading
from drivers.devices import open_device
pins = open_device("gpio", sys.argv[1])
meter = pins.input(27, pull_up=False)
done = pins.output(22, initial=False)
count = [0]
def edge(level):
    count[0] += level
    if count[0] == 500:
        done.write(True)
meter.on_change(edge)
print("ready", meter.read(), flush=True)
sys.stdin.readline()
pins.close()
"""


def test_a_terminal_in_another_process_counts_the_pulses_and_sets_its_output(server: GpioServer) -> None:
    server.drive(27, True)                              # high before the terminal starts
    child = subprocess.Popen([sys.executable, "-c", TERMINAL, f"tcp://127.0.0.1:{server.port}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready True\n"
        server.drive(27, False)
        server.pulses(27, 500, hz=2000)
        server.wait_output(22, True, timeout=5)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(5) == 0
        server.wait_output(22, False, timeout=5)        # closed: back to the safe level
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
