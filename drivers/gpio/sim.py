"""Simulated pins in this process, like gpiozero's MockFactory: tests and the simulator drive the inputs.

`drive(number, level)` sets an input's electrical level; callbacks of an undebounced input run in the
caller's thread before drive() returns (so a test that drives 2,000 edges has counted them all when the
loop ends); a debounced input reports from the factory's debounce thread once the level stayed put for
bounce_ms. `level(number)` is an output's electrical level. An undriven input reads its pull (high with
pull_up). `sim://NAME` URLs share one SimPins per NAME in the process (`shared(NAME)`); `sim://` is a
private one.

>>> pins = SimPins()
>>> door = pins.input(17, pull_up=True, active_low=True)
>>> door.read()
False
>>> pins.drive(17, False)
>>> door.read()
True
>>> relay = pins.output(22, initial=False)
>>> relay.write(True)
>>> pins.level(22)
True
>>> pins.close()
>>> pins.level(22)
False
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from contracts.errors import ConfigError
from drivers.gpio.pins import Claims, Debouncer, SoftInput, check_bounce, check_number
from drivers.url import DeviceUrl

__all__ = ["SimOutput", "SimPins", "open_sim_pins", "pulse_train", "shared"]

OutputListener = Callable[[int, bool], None]


class SimOutput:
    """An output pin of SimPins; its electrical level is what level(number) returns."""

    def __init__(self, pins: SimPins, number: int, *, initial: bool, active_low: bool) -> None:
        self.number = number
        self.initial = initial
        self.active_low = active_low
        self._pins = pins
        self._value = initial
        self.closed = False

    def write(self, value: bool) -> None:
        if self.closed:
            raise ConfigError(f"GPIO{self.number} was released", number=self.number)
        self._value = bool(value)
        self._pins._set_output(self.number, self._value != self.active_low)

    def read(self) -> bool:
        return self._value


class SimPins:
    """An in-process GPIO header: a PinFactory plus drive(), level(), on_output() and pulses()."""

    def __init__(self, name: str = "", *, key: str = "gpio") -> None:
        self.name = name
        self.key = key
        self._claims = Claims(key)
        self._lock = threading.RLock()
        self._out_dispatch = threading.RLock()
        self._driven: dict[int, bool] = {}          # inputs' electrical levels set by drive()
        self._levels: dict[int, bool] = {}          # outputs' electrical levels
        self._inputs: dict[int, SoftInput] = {}
        self._outputs: dict[int, SimOutput] = {}
        self._listeners: list[OutputListener] = []
        self._debouncer = Debouncer(f"gpio-sim-{name or 'private'}")

    # PinFactory
    def input(self, number: int, *, pull_up: bool = True, active_low: bool = False,
              bounce_ms: int = 0) -> SoftInput:
        check_bounce(bounce_ms, key=self.key)
        self._claims.claim(number)
        with self._lock:
            level = self._driven.get(number, pull_up)
            pin = SoftInput(number, level=level, active_low=active_low, bounce_ms=bounce_ms,
                            debouncer=self._debouncer)
            self._inputs[number] = pin
        return pin

    def output(self, number: int, *, initial: bool = False, active_low: bool = False) -> SimOutput:
        self._claims.claim(number)
        pin = SimOutput(self, number, initial=bool(initial), active_low=active_low)
        with self._lock:
            self._outputs[number] = pin
        self._set_output(number, pin.initial != active_low)
        return pin

    def close(self) -> None:
        """Outputs back to their initial level, every pin released; the header itself stays usable."""
        with self._lock:
            outputs, self._outputs = list(self._outputs.values()), {}
            inputs, self._inputs = list(self._inputs.values()), {}
            debouncer, self._debouncer = self._debouncer, Debouncer(self._debouncer.name)
        debouncer.stop()
        for out in outputs:
            self._set_output(out.number, out.initial != out.active_low)
            out.closed = True
            self._claims.release(out.number)
        for pin in inputs:
            pin.close()
            self._claims.release(pin.number)

    # the simulated world's side
    def drive(self, number: int, level: bool) -> None:
        """Set input `number` to electrical `level` (True = high)."""
        check_number(number, key=self.key)
        with self._lock:
            self._driven[number] = bool(level)
            pin = self._inputs.get(number)
        if pin is not None:
            pin.feed(bool(level))

    def pulses(self, number: int, count: int, hz: float) -> None:
        """Drive `count` high-then-low pulses at `hz` (0: as fast as possible); returns when done."""
        pulse_train(lambda level: self.drive(number, level), count, hz)

    def level(self, number: int) -> bool:
        """An output's electrical level; ConfigError when `number` was never an output."""
        with self._lock:
            if number not in self._levels:
                raise ConfigError(f"GPIO{number} is not an output", key=self.key, number=number)
            return self._levels[number]

    def on_output(self, callback: OutputListener) -> None:
        """Call callback(number, electrical level) on each change of an output, in the writer's thread."""
        with self._lock:
            self._listeners.append(callback)

    def claimed(self) -> list[int]:
        return self._claims.held()

    def _set_output(self, number: int, level: bool) -> None:
        with self._out_dispatch:        # listeners see the changes in order, without holding _lock
            with self._lock:
                changed = self._levels.get(number) != level
                self._levels[number] = level
                listeners = list(self._listeners) if changed else []
            for listener in listeners:
                listener(number, level)


def pulse_train(drive: Callable[[bool], None], count: int, hz: float) -> None:
    """Call drive(True), drive(False) `count` times at `hz` pulses per second (50 % duty).

    The schedule is absolute (edge k at start + k / (2 * hz)), so late wake-ups do not add up.
    """
    if count < 0 or hz < 0:
        raise ConfigError("pulses need count >= 0 and hz >= 0", count=count, hz=hz)
    half = 1 / (2 * hz) if hz else 0.0
    start = time.monotonic()
    for edge in range(2 * count):
        if half:
            delay = start + edge * half - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        drive(edge % 2 == 0)


_shared: dict[str, SimPins] = {}
_shared_lock = threading.Lock()


def shared(name: str) -> SimPins:
    """The process's one SimPins called `name` (created on first use)."""
    with _shared_lock:
        pins = _shared.get(name)
        if pins is None:
            pins = _shared[name] = SimPins(name)
        return pins


def open_sim_pins(url: DeviceUrl, **options: Any) -> SimPins:
    """`sim://NAME`: the shared SimPins NAME; `sim://`: a new private one."""
    if options:
        raise ConfigError(f"sim:// GPIO takes no options (got {', '.join(sorted(options))})", key=url.key)
    if url.query or url.port is not None or url.path not in ("", "/"):
        raise ConfigError("sim:// GPIO URL is sim://NAME, nothing more", key=url.key)
    return shared(url.host) if url.host else SimPins(key=url.key)
