"""Pump drivers: the Wayne DART codec, its master link layer and a PumpController over one line.

Lines are opened by URL (drivers.devices): a serial URL (/dev/ttyUSB0, socket://host:port, loop://)
carries DART; sim:// is the simulated line shipped here (simulator.py, sim_line.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import dart
from .controller import DartController
from .dart import CrcError, DartError, FrameError
from .link import DartLink

if TYPE_CHECKING:
    from drivers.url import DeviceUrl

__all__ = [
    "CrcError",
    "DartController",
    "DartError",
    "DartLink",
    "FrameError",
    "dart",
    "open_dart_line",
    "open_pump_controller",
]


def open_pump_controller(url: str, pumps: Sequence[int], **kw: Any) -> DartController:
    """A started DartController for the line at url: a serial_for_url URL, or sim:// (simulated pumps)."""
    from drivers.devices import open_device

    controller: DartController = open_device("pump_line", url, pumps=pumps, **kw)
    return controller


def open_dart_line(url: DeviceUrl, *, pumps: Sequence[int], **kw: Any) -> DartController:
    """The serial backend: DART over the pyserial URL as configured, polling started."""
    controller = DartController(url.raw, pumps, **kw)
    controller.start()
    return controller
