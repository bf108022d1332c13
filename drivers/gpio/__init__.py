"""GPIO pins opened by URL (drivers.devices, kind "gpio": rpigpio://, lgpio://, sim://NAME, tcp://HOST:PORT)
and the devices on them (drivers.gpio.devices, drivers.gpio.txenable); docs/gpio.md."""

from __future__ import annotations

from drivers.gpio.pins import GpioError, InputPin, OutputPin, PinFactory

__all__ = ["GpioError", "InputPin", "OutputPin", "PinFactory"]
