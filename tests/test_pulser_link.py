"""drivers.pulser.link over a real pty to a simulated node: line noise that looks like the start of a frame
(SOF and a plausible length) costs at most one retry, never the pump (no OFFLINE)."""

from __future__ import annotations

import os
import time

from contracts.pump import PumpState
from drivers.devices import open_device


def test_noise_like_a_frame_start_does_not_take_the_pump_offline() -> None:
    controller = open_device("pump_line", "nodesim://?pumps=3&k=100&flow=2000", pumps=[3])
    try:
        controller.wait_status(3, lambda s: s.state is not PumpState.OFFLINE, 5)
        link, sim = controller.units[3], controller.sim
        states = []
        for _ in range(10):
            link.port.write(b"\xa5\x30")                  # towards the node: it waits for 54 bytes
            os.write(sim._master, b"\xa5\x30")            # towards the terminal: the same
            controller.set_prices(3, {1: 1659})           # a request right behind the noise
            states.append(controller.status(3).state)
            time.sleep(0.05)
        assert PumpState.OFFLINE not in states
        assert controller.status(3).state is PumpState.RESET
        assert link.retries <= 10
    finally:
        controller.close()
