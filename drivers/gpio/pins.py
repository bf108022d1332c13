"""The pin interface every GPIO backend implements, and the parts the backends share.

Numbers are BCM (Broadcom) GPIO numbers; on a 40-pin header GPIO2..GPIO27 are the usable ones. Inputs report
their logical level (the electrical level inverted when active_low). With bounce_ms > 0 a change is reported
only once the electrical level has stayed put for bounce_ms (a switch that chatters reports its final level,
once); with bounce_ms = 0 every edge is reported, in order, as a pulse meter needs.

>>> check_number(17)
17
>>> check_number(40)
Traceback (most recent call last):
...
contracts.errors.ConfigError: GPIO number must be 2..27 (BCM numbering, 40-pin header) (key=gpio number=40)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from contracts.errors import ConfigError, ForecourtError

__all__ = ["FIRST_PIN", "LAST_PIN", "Claims", "Debouncer", "GpioError", "InputPin", "OutputPin",
           "PinFactory", "SoftInput", "check_number"]

_log = logging.getLogger(__name__)

FIRST_PIN, LAST_PIN = 2, 27     # GPIO0/1 are the HAT EEPROM's I2C; 28+ are not on the 40-pin header


class GpioError(ForecourtError):
    """A GPIO backend failed at run time: the host simulator's header is unreachable, the chip is busy."""


class InputPin(Protocol):
    number: int

    def read(self) -> bool:
        """The logical level (after active_low)."""
        ...

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """Call callback(new logical level) from a backend thread on each (debounced) change."""
        ...


class OutputPin(Protocol):
    number: int

    def write(self, value: bool) -> None: ...

    def read(self) -> bool:
        """The logical level last written."""
        ...


class PinFactory(Protocol):
    def input(self, number: int, *, pull_up: bool = True, active_low: bool = False,
              bounce_ms: int = 0) -> InputPin: ...

    def output(self, number: int, *, initial: bool = False, active_low: bool = False) -> OutputPin: ...

    def close(self) -> None:
        """Outputs to their safe level (their initial one), every pin released."""
        ...


def check_number(number: int, *, key: str = "gpio") -> int:
    """number itself when it is a usable BCM GPIO number on a 40-pin header; ConfigError otherwise."""
    if isinstance(number, bool) or not isinstance(number, int) or not FIRST_PIN <= number <= LAST_PIN:
        raise ConfigError(f"GPIO number must be {FIRST_PIN}..{LAST_PIN} (BCM numbering, 40-pin header)",
                          key=key, number=number)
    return number


def check_bounce(bounce_ms: int, *, key: str = "gpio") -> int:
    if isinstance(bounce_ms, bool) or not isinstance(bounce_ms, int) or not 0 <= bounce_ms <= 10_000:
        raise ConfigError("bounce_ms must be 0..10000", key=key, bounce_ms=bounce_ms)
    return bounce_ms


class Claims:
    """The pin numbers one factory holds; a number claimed twice is a ConfigError."""

    def __init__(self, key: str = "gpio") -> None:
        self.key = key
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def claim(self, number: int) -> int:
        check_number(number, key=self.key)
        with self._lock:
            if number in self._held:
                raise ConfigError(f"GPIO{number} is already in use", key=self.key, number=number)
            self._held.add(number)
        return number

    def release(self, number: int) -> None:
        with self._lock:
            self._held.discard(number)

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)


class SoftInput:
    """An input whose electrical level a backend feeds in; it inverts, debounces and calls back.

    Without debouncing, callbacks run in the thread that feeds the level, before feed() returns; with
    debouncing, on the factory's Debouncer thread. One pin's callbacks never run concurrently and see the
    levels in the order fed. `sample`, when given, reads the real electrical level once a bounce settles.
    """

    def __init__(self, number: int, *, level: bool, active_low: bool = False, bounce_ms: int = 0,
                 debouncer: Debouncer | None = None, sample: Callable[[], bool] | None = None) -> None:
        if bounce_ms and debouncer is None:
            raise ConfigError("a debounced input needs a Debouncer", number=number)
        self.number = number
        self.active_low = active_low
        self.bounce_ms = bounce_ms
        self._debouncer = debouncer
        self._sample = sample
        self._raw = level            # the last electrical level fed
        self._reported = level       # the electrical level last reported
        self._callbacks: list[Callable[[bool], None]] = []
        self._lock = threading.Lock()
        self._dispatch = threading.RLock()
        self.closed = False

    def read(self) -> bool:
        with self._lock:
            return self._reported != self.active_low

    def on_change(self, callback: Callable[[bool], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def preset(self, level: bool) -> None:
        """Take `level` as the known level without calling back (a backend's first reading)."""
        with self._lock:
            self._raw = self._reported = level

    def feed(self, level: bool) -> None:
        """The electrical level is now `level` (an edge, or a level re-read after a reconnect)."""
        if not self.bounce_ms:
            self._report(level)
            return
        with self._lock:
            self._raw = level
        if self._debouncer is not None:
            self._debouncer.schedule(self, time.monotonic() + self.bounce_ms / 1000)

    def settle(self) -> None:
        """The level has been stable for bounce_ms: report it if it differs (the Debouncer calls this)."""
        with self._lock:
            level = self._raw
        if self._sample is not None:
            try:
                level = self._sample()
            except Exception:  # noqa: BLE001 - a failing read keeps the level fed; the next edge retries
                _log.exception("gpio: reading a pin after its bounce failed", extra={"pin": self.number})
        self._report(level)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._callbacks.clear()

    def _report(self, level: bool) -> None:
        # _dispatch keeps one pin's callbacks in order; _lock is never held while they run, so a callback
        # may wait for a thread that is reading the pin
        with self._dispatch:
            with self._lock:
                self._raw = level
                if self.closed or level == self._reported:
                    return
                self._reported = level
                callbacks = list(self._callbacks)
            logical = level != self.active_low
            for callback in callbacks:
                try:
                    callback(logical)
                except Exception:  # noqa: BLE001 - a callback bug must not stop the backend thread
                    _log.exception("gpio: input callback failed", extra={"pin": self.number})


class Debouncer:
    """One thread per factory that settles debounced inputs once their level has stayed put long enough."""

    def __init__(self, name: str = "gpio-debounce") -> None:
        self.name = name
        self._due: dict[SoftInput, float] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def schedule(self, pin: SoftInput, due: float) -> None:
        """Settle pin at monotonic time `due` (a later call for the same pin moves it)."""
        with self._cond:
            if self._stopped:
                return
            self._due[pin] = due
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._due.clear()
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    ready = [pin for pin, due in self._due.items() if due <= now]
                    if ready:
                        for pin in ready:
                            del self._due[pin]
                        break
                    wait = min(self._due.values()) - now if self._due else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
            for pin in ready:
                pin.settle()
