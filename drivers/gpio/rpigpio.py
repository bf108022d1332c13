"""Pins through the RPi.GPIO module (`rpigpio://`); on a Raspberry Pi 5 the rpi-lgpio package provides it.

BCM numbering. Debouncing is done here (drivers.gpio.pins.SoftInput), not by RPi.GPIO's bouncetime: that
one ignores every edge for bouncetime after an edge, so a contact that bounces back can end up reported in
the wrong state; here the pin is re-read once it has stayed put for bounce_ms. RPi.GPIO's callback gets the
channel, not the level, so each edge is read back with GPIO.input(): a pulse meter with pulses shorter than
about a millisecond is better on lgpio:// (the kernel reports each edge's level) or on a pump node.
close() puts our outputs to their initial level and cleans up only our channels: RPi.GPIO's cleanup()
returns them to inputs, as at power-on, so the wiring must keep a released output safe (a pull resistor).
"""

from __future__ import annotations

from typing import Any

from contracts.errors import ConfigError
from drivers.gpio.pins import Claims, Debouncer, GpioError, SoftInput, check_bounce
from drivers.url import DeviceUrl

__all__ = ["RpiGpioOutput", "RpiGpioPins", "open_rpigpio_pins"]


class RpiGpioOutput:
    def __init__(self, gpio: Any, number: int, *, initial: bool, active_low: bool) -> None:
        self.number = number
        self.initial = initial
        self.active_low = active_low
        self._gpio = gpio
        self._value = initial

    def write(self, value: bool) -> None:
        self._value = bool(value)
        try:
            self._gpio.output(self.number, self.electrical())
        except (RuntimeError, ValueError) as exc:
            raise GpioError(f"cannot set GPIO{self.number}", number=self.number) from exc

    def read(self) -> bool:
        return self._value

    def electrical(self) -> bool:
        return self._value != self.active_low


class RpiGpioPins:
    """A PinFactory over an RPi.GPIO-shaped module (`gpio`), BCM numbering."""

    def __init__(self, gpio: Any, *, key: str = "gpio") -> None:
        self.key = key
        self._gpio = gpio
        self._claims = Claims(key)
        self._inputs: dict[int, SoftInput] = {}
        self._outputs: dict[int, RpiGpioOutput] = {}
        self._debouncer = Debouncer("gpio-rpigpio-debounce")
        mode = gpio.getmode()
        if mode is None:
            gpio.setmode(gpio.BCM)
        elif mode != gpio.BCM:
            raise ConfigError("RPi.GPIO is already set to BOARD numbering in this process; pins here are BCM",
                              key=key)
        gpio.setwarnings(False)       # "channel already in use" after a crash is expected: we set it up anew

    def input(self, number: int, *, pull_up: bool = True, active_low: bool = False,
              bounce_ms: int = 0) -> SoftInput:
        check_bounce(bounce_ms, key=self.key)
        self._claims.claim(number)
        gpio = self._gpio

        def sample() -> bool:
            return bool(gpio.input(number))

        try:
            gpio.setup(number, gpio.IN, pull_up_down=gpio.PUD_UP if pull_up else gpio.PUD_DOWN)
            pin = SoftInput(number, level=sample(), active_low=active_low, bounce_ms=bounce_ms,
                            debouncer=self._debouncer, sample=sample)
            gpio.add_event_detect(number, gpio.BOTH, callback=lambda _channel: pin.feed(sample()))
        except (RuntimeError, ValueError) as exc:
            self._claims.release(number)
            raise GpioError(f"cannot use GPIO{number} as an input", key=self.key, number=number) from exc
        self._inputs[number] = pin
        return pin

    def output(self, number: int, *, initial: bool = False, active_low: bool = False) -> RpiGpioOutput:
        self._claims.claim(number)
        pin = RpiGpioOutput(self._gpio, number, initial=bool(initial), active_low=active_low)
        gpio = self._gpio
        try:
            gpio.setup(number, gpio.OUT, initial=gpio.HIGH if pin.electrical() else gpio.LOW)
        except (RuntimeError, ValueError) as exc:
            self._claims.release(number)
            raise GpioError(f"cannot use GPIO{number} as an output", key=self.key, number=number) from exc
        self._outputs[number] = pin
        return pin

    def close(self) -> None:
        gpio = self._gpio
        outputs, self._outputs = list(self._outputs.values()), {}
        inputs, self._inputs = list(self._inputs.values()), {}
        self._debouncer.stop()
        for out in outputs:
            out.write(out.initial)
        for pin in inputs:
            gpio.remove_event_detect(pin.number)
            pin.close()
        ours = [pin.number for pin in inputs] + [out.number for out in outputs]
        if ours:
            gpio.cleanup(ours)       # only our channels: other code in the process may hold others
        for number in ours:
            self._claims.release(number)


def open_rpigpio_pins(url: DeviceUrl, **options: Any) -> RpiGpioPins:
    """`rpigpio://`: this machine's header through RPi.GPIO (or rpi-lgpio's RPi.GPIO on a Pi 5)."""
    if options:
        raise ConfigError(f"rpigpio:// takes no options (got {', '.join(sorted(options))})", key=url.key)
    if url.host or url.port is not None or url.query or url.path not in ("", "/"):
        raise ConfigError("rpigpio:// URL takes no host, path or options", key=url.key)
    # lazily: drivers.devices turns its absence into MissingComponent
    import RPi.GPIO as gpio  # type: ignore[import-untyped, import-not-found, unused-ignore]

    return RpiGpioPins(gpio, key=url.key)
