"""RS-485 driver enable (DE) for a transceiver without automatic direction control.

TxEnable wraps a pyserial-like port: write() raises DE, writes, waits until the last stop bit has left the
line, then drops DE so that the pump's answer is heard. tcdrain (flush()) is not enough on many UARTs: it
returns when the FIFO is empty, with the last character still in the shift register, or (on a pty, a USB
adapter) at once. So the end is computed from when the write began: n characters of
1 start + bytesize + parity + stopbits bits each (DART is 8O1: 11 bits) at the port's baud rate, or when
flush() returned if that is later (the kernel still held bytes), plus a guard.

The guard is one bit time (104 us at 9600 baud): a receiver samples the stop bit in its middle, so half a bit
would do, and the extra half covers the UART starting a few microseconds after our clock reading. It must
stay well under the pump's turnaround (it answers only after parsing the whole frame, a millisecond or
more at these rates): DE still high when the pump starts sending would garble its first byte. The wait
sleeps until 1 ms before the end and then spins on the clock, because a sleep alone overshoots by the
scheduler's wake-up latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from contracts.errors import ConfigError
from drivers.gpio.pins import OutputPin

__all__ = ["SerialPort", "TxEnable", "char_bits"]

SPIN = 0.001      # the last part of the wait is spun, not slept
_OWN = frozenset({"_port", "de", "guard_bits", "_clock", "_lock"})


class SerialPort(Protocol):
    baudrate: int

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...


def char_bits(port: Any) -> float:
    """Bits per character on the line: start bit + data bits + parity bit (if any) + stop bits.

    >>> class Dart: bytesize, parity, stopbits = 8, "O", 1
    >>> char_bits(Dart())
    11.0
    """
    bytesize = getattr(port, "bytesize", 8)
    parity = getattr(port, "parity", "N")
    stopbits = getattr(port, "stopbits", 1)
    if bytesize not in (5, 6, 7, 8) or stopbits not in (1, 1.5, 2):
        raise ConfigError("serial framing must be 5..8 data bits and 1, 1.5 or 2 stop bits",
                          bytesize=bytesize, stopbits=stopbits)
    return float(1 + bytesize + (0 if parity == "N" else 1) + stopbits)


class TxEnable:
    """A serial port whose writes hold the RS-485 driver-enable output high exactly while they are sent.

    Everything but write(), flush() and close() goes to the wrapped port (read, in_waiting, timeout...),
    setting attributes too (`port.timeout = 0.2`), so the DART link can use it as its port.
    """

    def __init__(self, port: SerialPort, de: OutputPin, *, guard_bits: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= guard_bits <= 20:
            raise ConfigError("guard_bits must be 0..20", guard_bits=guard_bits)
        self._port = port
        self.de = de
        self.guard_bits = guard_bits
        self._clock = clock
        self._lock = threading.Lock()
        de.write(False)

    @property
    def baudrate(self) -> int:
        return self._port.baudrate

    @baudrate.setter
    def baudrate(self, value: int) -> None:     # the wrapped port's, so the timing follows it
        self._port.baudrate = value

    def transmit_time(self, count: int) -> float:
        """Seconds that `count` characters take on the line at the port's present baud rate and framing."""
        baud = self._port.baudrate
        if not baud or baud <= 0:
            raise ConfigError("the port has no baud rate", baudrate=baud)
        return count * char_bits(self._port) / baud

    def write(self, data: bytes) -> int:
        """Send data with DE high; returns once the last stop bit (plus the guard) is out and DE is low."""
        bit = self.transmit_time(1) / char_bits(self._port)
        with self._lock:
            self.de.write(True)
            try:
                start = self._clock()
                written = self._port.write(data)
                count = len(data) if written is None else written
                self._port.flush()
                end = max(start + self.transmit_time(count), self._clock()) + self.guard_bits * bit
                self._wait_until(end)
            finally:
                self.de.write(False)
        return count

    def flush(self) -> None:
        """Nothing is pending after write() returns; kept so the wrapper is a drop-in port."""
        with self._lock:
            self._port.flush()

    def close(self) -> None:
        with self._lock:
            self.de.write(False)
            close = getattr(self._port, "close", None)
            if close is not None:
                close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # the port's settings (timeout, write_timeout...) are set on the port, ours on the wrapper
        if name in _OWN or hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:
            setattr(self._port, name, value)

    def _wait_until(self, end: float) -> None:
        left = end - self._clock()
        if left > SPIN:
            time.sleep(left - SPIN)
        while self._clock() < end:
            pass
