"""Pins through lgpio (`lgpio://`, `lgpio://?chip=4`): the Linux GPIO character device, any Raspberry Pi.

The header is gpiochip0, on a Pi 5 too with current kernels; older Pi 5 kernels named it gpiochip4
(`?chip=4`). Inputs are claimed with alerts on both edges; the kernel reports each edge with its level, so
a pulse meter is counted edge by edge, and lgpio's debounce (the level must stay put for the debounce
time before it is reported) serves bounce_ms. close() puts our outputs to their initial level, cancels our
callbacks, frees only our lines and closes the chip.
"""

from __future__ import annotations

from typing import Any

from contracts.errors import ConfigError
from drivers.gpio.pins import Claims, GpioError, SoftInput, check_bounce
from drivers.url import DeviceUrl

__all__ = ["LgpioOutput", "LgpioPins", "open_lgpio_pins"]

_WATCHDOG = 2      # the level lgpio passes to a callback on a watchdog timeout, not an edge


class LgpioOutput:
    def __init__(self, lgpio: Any, handle: int, number: int, *, initial: bool, active_low: bool) -> None:
        self.number = number
        self.initial = initial
        self.active_low = active_low
        self._lgpio, self._handle = lgpio, handle
        self._value = initial

    def write(self, value: bool) -> None:
        self._value = bool(value)
        try:
            self._lgpio.gpio_write(self._handle, self.number, int(self.electrical()))
        except self._lgpio.error as exc:
            raise GpioError(f"cannot set GPIO{self.number}", number=self.number) from exc

    def read(self) -> bool:
        return self._value

    def electrical(self) -> bool:
        return self._value != self.active_low


class LgpioPins:
    """A PinFactory over an lgpio-shaped module and an open gpiochip handle."""

    def __init__(self, lgpio: Any, chip: int, *, key: str = "gpio") -> None:
        self.key = key
        self.chip = chip
        self._lgpio = lgpio
        try:
            self._handle: int = lgpio.gpiochip_open(chip)
        except lgpio.error as exc:
            raise GpioError(f"cannot open /dev/gpiochip{chip} (is it there? is the user in group gpio?)",
                            key=key, chip=chip) from exc
        self._claims = Claims(key)
        self._inputs: dict[int, SoftInput] = {}
        self._callbacks: list[Any] = []
        self._outputs: dict[int, LgpioOutput] = {}

    def input(self, number: int, *, pull_up: bool = True, active_low: bool = False,
              bounce_ms: int = 0) -> SoftInput:
        check_bounce(bounce_ms, key=self.key)
        self._claims.claim(number)
        lg, handle = self._lgpio, self._handle
        flags = lg.SET_PULL_UP if pull_up else lg.SET_PULL_DOWN
        try:
            lg.gpio_claim_alert(handle, number, lg.BOTH_EDGES, flags)
            if bounce_ms:
                lg.gpio_set_debounce_micros(handle, number, bounce_ms * 1000)
            pin = SoftInput(number, level=bool(lg.gpio_read(handle, number)), active_low=active_low)

            def edge(_chip: int, _gpio: int, level: int, _tick: int) -> None:
                if level != _WATCHDOG:
                    pin.feed(bool(level))

            self._callbacks.append(lg.callback(handle, number, lg.BOTH_EDGES, edge))
        except lg.error as exc:
            self._claims.release(number)
            raise GpioError(f"cannot use GPIO{number} as an input", key=self.key, number=number) from exc
        self._inputs[number] = pin
        return pin

    def output(self, number: int, *, initial: bool = False, active_low: bool = False) -> LgpioOutput:
        self._claims.claim(number)
        pin = LgpioOutput(self._lgpio, self._handle, number, initial=bool(initial), active_low=active_low)
        try:
            self._lgpio.gpio_claim_output(self._handle, number, int(pin.electrical()), 0)
        except self._lgpio.error as exc:
            self._claims.release(number)
            raise GpioError(f"cannot use GPIO{number} as an output", key=self.key, number=number) from exc
        self._outputs[number] = pin
        return pin

    def close(self) -> None:
        lg = self._lgpio
        outputs, self._outputs = list(self._outputs.values()), {}
        inputs, self._inputs = list(self._inputs.values()), {}
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback.cancel()
        for out in outputs:
            out.write(out.initial)
        for pin in inputs:
            pin.close()
        for number in [p.number for p in inputs] + [o.number for o in outputs]:
            lg.gpio_free(self._handle, number)
            self._claims.release(number)
        lg.gpiochip_close(self._handle)


def open_lgpio_pins(url: DeviceUrl, **options: Any) -> LgpioPins:
    """`lgpio://[?chip=N]`: this machine's header through lgpio (gpiochip N, default 0)."""
    if options:
        raise ConfigError(f"lgpio:// takes no options (got {', '.join(sorted(options))})", key=url.key)
    if url.host or url.port is not None or url.path not in ("", "/") or set(url.query) - {"chip"}:
        raise ConfigError("lgpio:// URL takes only ?chip=N", key=url.key)
    chip = url.number("chip", 0)
    if chip != int(chip) or not 0 <= chip <= 63:
        raise ConfigError("URL option chip must be a gpiochip number 0..63", key=url.key, option="chip")
    # lazily: drivers.devices turns its absence into MissingComponent
    import lgpio  # type: ignore[import-untyped, import-not-found, unused-ignore]

    return LgpioPins(lgpio, int(chip), key=url.key)
