"""Pump drivers: the Wayne DART codec, its master link layer and a PumpController over one line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import dart
from .controller import DartController
from .dart import CrcError, DartError, FrameError
from .link import DartLink

__all__ = [
    "CrcError",
    "DartController",
    "DartError",
    "DartLink",
    "FrameError",
    "dart",
    "open_pump_controller",
]


def open_pump_controller(url: str, pumps: Sequence[int], **kw: Any) -> DartController:
    """Create a DartController for the line at url (any serial_for_url URL) and start polling."""
    controller = DartController(url, pumps, **kw)
    controller.start()
    return controller
