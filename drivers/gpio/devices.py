"""GPIO devices with a meaning: door and tamper switches, the paper-low sensor, status LEDs and a buzzer.

Each takes a pin factory and a BCM number, as gpiozero's devices take a pin factory. A switch is a contact
to ground by default (pull-up, active when low); a normally-closed door contact is `active_low=False`.
Led and Buzzer run their patterns (blink, beeps) on a thread of their own, so the caller never waits.

>>> from drivers.gpio.sim import SimPins
>>> pins = SimPins()
>>> door = Switch(pins, 5, name="door", bounce_ms=0)
>>> pins.drive(5, False)
>>> door.is_active()
True
>>> pins.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from contracts.errors import ConfigError
from drivers.gpio.pins import InputPin, OutputPin, PinFactory

__all__ = ["Buzzer", "Led", "PaperSensor", "Switch"]


class Switch:
    """A debounced input that means something (door open, tamper); on_change gets the new is_active()."""

    def __init__(self, pins: PinFactory, number: int, *, name: str, active_low: bool = True,
                 pull_up: bool = True, bounce_ms: int = 20) -> None:
        self.name = name
        self.number = number
        self.pin: InputPin = pins.input(number, pull_up=pull_up, active_low=active_low, bounce_ms=bounce_ms)

    def is_active(self) -> bool:
        return self.pin.read()

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """callback(active) from the backend's thread on each debounced change; keep it short."""
        self.pin.on_change(callback)


class PaperSensor(Switch):
    """The printer's paper-low sensor: active while the roll is nearly out."""

    def __init__(self, pins: PinFactory, number: int, *, active_low: bool = True, pull_up: bool = True,
                 bounce_ms: int = 200) -> None:
        super().__init__(pins, number, name="paper_low", active_low=active_low, pull_up=pull_up,
                         bounce_ms=bounce_ms)

    def paper_low(self) -> bool:
        return self.is_active()


Step = tuple[bool, float]       # (level, seconds)


class _Pattern:
    """An output that can run a sequence of (level, seconds) steps on a thread, once or repeated."""

    def __init__(self, pins: PinFactory, number: int, *, active_low: bool, name: str) -> None:
        self.name = name
        self.pin: OutputPin = pins.output(number, initial=False, active_low=active_low)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on(self) -> None:
        self._cancel()
        self.pin.write(True)

    def off(self) -> None:
        self._cancel()
        self.pin.write(False)

    def is_on(self) -> bool:
        return self.pin.read()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a pattern that runs once (beeps) to end; False if it is still running after timeout."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        self.off()

    def _run_pattern(self, steps: Sequence[Step], *, repeat: bool) -> None:
        for level, seconds in steps:
            if seconds <= 0 or seconds > 60:
                raise ConfigError(f"{self.name}: each step must last 0..60 s", seconds=seconds)
        self._cancel()
        stop = threading.Event()
        thread = threading.Thread(target=self._play, args=(list(steps), repeat, stop),
                                  name=f"gpio-{self.name}", daemon=True)
        with self._lock:
            self._stop, self._thread = stop, thread
        thread.start()

    def _play(self, steps: list[Step], repeat: bool, stop: threading.Event) -> None:
        while True:
            for level, seconds in steps:
                if stop.is_set():
                    return
                self.pin.write(level)
                if stop.wait(seconds):
                    return
            if not repeat:
                self.pin.write(False)
                return

    def _cancel(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)


class Led(_Pattern):
    """A status LED: on, off, or blinking until told otherwise."""

    def __init__(self, pins: PinFactory, number: int, *, active_low: bool = False, name: str = "led") -> None:
        super().__init__(pins, number, active_low=active_low, name=name)

    def blink(self, period_ms: int = 1000, on_ms: int | None = None) -> None:
        """Blink with `period_ms`, lit for `on_ms` of it (half by default), until on() or off()."""
        lit = period_ms / 2 if on_ms is None else on_ms
        if not 0 < lit < period_ms:
            raise ConfigError(f"{self.name}: on_ms must be within the period", period_ms=period_ms,
                              on_ms=on_ms)
        self._run_pattern([(True, lit / 1000), (False, (period_ms - lit) / 1000)], repeat=True)


class Buzzer(_Pattern):
    """A buzzer (an active one: it sounds while its pin is on)."""

    def __init__(self, pins: PinFactory, number: int, *, active_low: bool = False,
                 name: str = "buzzer") -> None:
        super().__init__(pins, number, active_low=active_low, name=name)

    def beep(self, times: int = 1, ms: int = 100, gap_ms: int | None = None) -> None:
        """Sound `times` beeps of `ms`, `gap_ms` apart (a beep's length by default); returns at once."""
        if not 1 <= times <= 20:
            raise ConfigError(f"{self.name}: times must be 1..20", times=times)
        gap = ms if gap_ms is None else gap_ms
        steps: list[Step] = []
        for _ in range(times):
            steps += [(True, ms / 1000), (False, gap / 1000)]
        self._run_pattern(steps[:-1], repeat=False)
