"""RS-485 driver enable on a real pseudo-terminal: DE is high exactly while the characters are on the line."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import serial  # type: ignore[import-untyped]

from contracts.errors import ConfigError
from drivers.gpio.sim import SimPins
from drivers.gpio.txenable import TxEnable, char_bits

DE_PIN = 18
TIGHT = 0.0015      # how much longer than the line time DE stays up: guard and wake-up
SLACK = 0.030       # the same on a loaded machine (another process may hold the core for a while)


class Pty:
    def __init__(self, **framing: object) -> None:
        self.master, self.slave = os.openpty()
        self.port = serial.serial_for_url(os.ttyname(self.slave), timeout=1, **framing)

    def close(self) -> None:
        self.port.close()
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture
def dart_pty() -> Iterator[Pty]:
    pty = Pty(baudrate=9600, bytesize=8, parity="O", stopbits=1)      # DART: 9600 8O1
    yield pty
    pty.close()


def de_timeline(pins: SimPins) -> list[tuple[bool, float]]:
    timeline: list[tuple[bool, float]] = []
    pins.on_output(lambda number, level: timeline.append((level, time.monotonic())) if number == DE_PIN
                   else None)
    return timeline


@pytest.mark.parametrize("size", [1, 8, 40])
def test_de_is_high_for_the_line_time_of_the_bytes_and_not_much_longer(dart_pty: Pty, size: int) -> None:
    pins = SimPins()
    timeline = de_timeline(pins)
    port = TxEnable(dart_pty.port, pins.output(DE_PIN))
    assert char_bits(dart_pty.port) == 11
    frame = bytes(range(0x50, 0x50 + size))
    line_time = size * 11 / 9600
    overs = []
    for _ in range(5):
        timeline.clear()
        assert port.write(frame) == size
        assert [level for level, _ in timeline] == [True, False]
        high = timeline[1][1] - timeline[0][1]
        assert high >= line_time, (high, line_time)
        overs.append(high - line_time)
        assert os.read(dart_pty.master, 1024) == frame
    # the guard is one bit (104 us); the best of five shows the design, the worst allows for a loaded machine
    assert min(overs) < TIGHT and max(overs) < SLACK, overs
    assert pins.level(DE_PIN) is False
    pins.close()


def test_the_timing_follows_the_ports_framing_and_baud_rate() -> None:
    pty = Pty(baudrate=19200, bytesize=8, parity="N", stopbits=2)     # 11 bits, twice as fast
    pins = SimPins()
    timeline = de_timeline(pins)
    port = TxEnable(pty.port, pins.output(DE_PIN))
    port.write(b"\x00" * 20)
    first = timeline[-1][1] - timeline[-2][1]
    assert 20 * 11 / 19200 <= first < 20 * 11 / 19200 + SLACK
    assert os.read(pty.master, 1024) == b"\x00" * 20
    port.baudrate = 4800                                              # set through the wrapper
    assert pty.port.baudrate == 4800 and port.transmit_time(10) == pytest.approx(10 * 11 / 4800)
    port.write(b"\x00" * 5)
    assert 5 * 11 / 4800 <= timeline[-1][1] - timeline[-2][1] < 5 * 11 / 4800 + SLACK
    pty.close()
    pins.close()


def test_reads_and_settings_go_to_the_port_and_de_stays_low_while_listening() -> None:
    pins = SimPins()
    dart_pty = Pty(baudrate=9600)       # 8N1: pyserial cannot set a timeout again on a pty with parity
    port = TxEnable(dart_pty.port, pins.output(DE_PIN))
    os.write(dart_pty.master, b"\x02\x03reply")
    assert port.read(7) == b"\x02\x03reply"
    assert port.in_waiting == 0 and pins.level(DE_PIN) is False
    port.timeout = 0.05                                                  # the port's setting
    assert dart_pty.port.timeout == 0.05 and port.timeout == 0.05
    assert port.read(1) == b""                                           # times out on the port
    port.guard_bits = 2.0                                                # the wrapper's own
    assert not hasattr(dart_pty.port, "guard_bits")
    dart_pty.close()
    pins.close()


def test_a_failed_write_drops_de_and_bad_framing_is_a_config_error(dart_pty: Pty) -> None:
    pins = SimPins()
    port = TxEnable(dart_pty.port, pins.output(DE_PIN))
    dart_pty.port.close()
    with pytest.raises(serial.SerialException):
        port.write(b"\x01\x02")
    assert pins.level(DE_PIN) is False

    class Odd:
        baudrate, bytesize, parity, stopbits = 9600, 9, "N", 1

    with pytest.raises(ConfigError, match="data bits"):
        char_bits(Odd())
    with pytest.raises(ConfigError, match="guard_bits"):
        TxEnable(dart_pty.port, pins.output(DE_PIN + 1), guard_bits=-1)
    pins.close()
