"""A pulser dispenser behind a pump node on a UART: the `node://` pump line (docs/pulser.md).

    node:///dev/ttyAMA1?pumps=3&k=100&baud=115200&slow=50

The node counts the pulses next to the meter and drives the relays itself; the terminal polls it over the
framed protocol (wire.py) and sees it as one pump.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.errors import ConfigError
from drivers.url import DeviceUrl

from .controller import PulserController
from .link import NodeLink, open_node_port
from .setup import calibrated, k_milli_of, one_pump, slow_of

__all__ = ["open_node_line"]

BAUDS = (9600, 19200, 38400, 57600, 115200)


def open_node_line(url: DeviceUrl, *, pumps: list[int] | tuple[int, ...], state_dir: Path | None = None,
                   event: Any = None, **_: Any) -> PulserController:
    pump, slow = one_pump(url, pumps), slow_of(url)
    baud = int(url.number("baud", 115200))
    if baud not in BAUDS:
        raise ConfigError(f"node URL baud must be one of {BAUDS}", key=url.key)
    if not url.path:
        raise ConfigError("node URL names the UART: node:///dev/ttyAMA1", key=url.key)
    k = calibrated(state_dir, pump, k_milli_of(url))
    link = NodeLink(open_node_port(url.path, baud))
    controller = PulserController({pump: link}, k_milli={pump: k}, slow_cl=slow, event=event)
    controller.start()
    return controller
