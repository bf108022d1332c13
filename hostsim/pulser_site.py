"""The simulator's own-hardware side (issue 17): the terminal's GPIO header on loopback TCP with its door,
tamper and paper switches, LEDs and buzzer, and two pulser dispensers:

- pump 3 behind a pump node (the node code on a pty, drivers.pulser.node_sim.SimNode), `node://` line;
- pump 4 wired to the terminal's own GPIO (`pulser://` line): a meter here gives pulses on the header
  while the terminal's relays are on and the nozzle is out.

Both meters give K = 100 pulses per litre (1 pulse = 1 cl).
"""

from __future__ import annotations

import threading
import time
from typing import Self

from drivers.pulser.node_sim import SimNode
from hostsim.gpio_server import GpioServer

__all__ = ["PINS", "GpioMeter", "PulserSite"]

K = 100
# BCM numbers of the simulated terminal's header
PINS = {"door": 5, "tamper": 6, "paper_low": 21, "led_ready": 13, "led_fault": 19, "buzzer": 26,
        "pulse": 17, "relay": 27, "slow_relay": 22, "nozzle": 23}
NODE_PUMP, GPIO_PUMP = 3, 4


class GpioMeter:
    """A pulse meter, two-stage valve and nozzle switch on the simulated header: pulses while the fast or
    slow relay is on and the nozzle is out (the slow stage gives slow_ratio of the flow)."""

    def __init__(self, header: GpioServer, *, flow_cl_per_s: float = 200.0, slow_ratio: float = 0.2) -> None:
        self.header, self.flow, self.slow_ratio = header, flow_cl_per_s, slow_ratio
        self.nozzle_out = False
        self.pulses = 0                     # pulses given so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpio-meter", daemon=True)

    def start(self) -> Self:
        self.header.drive(PINS["nozzle"], False)
        self.header.drive(PINS["pulse"], False)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def lift(self) -> None:
        self.nozzle_out = True
        self.header.drive(PINS["nozzle"], True)

    def hang(self) -> None:
        self.nozzle_out = False
        self.header.drive(PINS["nozzle"], False)

    def _rate(self) -> float:
        """Pulses per second now."""
        if not self.nozzle_out:
            return 0.0
        fast = self.header.level(PINS["relay"], default=False)
        slow = self.header.level(PINS["slow_relay"], default=False)
        flow = self.flow if fast else self.flow * self.slow_ratio if slow else 0.0
        return flow * K / 100

    def _run(self) -> None:
        carry, last = 0.0, time.monotonic()
        while not self._stop.wait(0.002):
            now = time.monotonic()
            rate = self._rate()
            carry = carry + rate * (now - last) if rate else 0.0
            last = now
            while carry >= 1.0 and self._rate():
                carry -= 1.0
                self.header.drive(PINS["pulse"], True)
                self.header.drive(PINS["pulse"], False)
                self.pulses += 1


class PulserSite:
    def __init__(self, *, flow_cl_per_s: float = 200.0) -> None:
        self.header = GpioServer()
        self.node = SimNode(flow_cl_per_s=flow_cl_per_s, k_milli=K * 1000)
        self.meter = GpioMeter(self.header, flow_cl_per_s=flow_cl_per_s)

    def start(self) -> Self:
        self.header.start()
        for name in ("door", "tamper", "paper_low"):
            self.header.drive(PINS[name], False)        # shut, intact, paper enough
        self.node.start()
        self.meter.start()
        return self

    def stop(self) -> None:
        self.meter.stop()
        self.node.stop()
        self.header.stop()

    def terminal_devices(self, *, lines: bool = True) -> str:
        """The [devices] lines of the terminal's configuration (inside its [devices] table); without lines,
        the header alone (pumps 3 and 4 stay on the DART line)."""
        p = PINS
        header = f'gpio = "tcp://127.0.0.1:{self.header.port}"\n'
        if not lines:
            return header
        return (header +
                f'pump_lines = ["node://{self.node.port}?pumps={NODE_PUMP}&k={K}", '
                f'"pulser://?pumps={GPIO_PUMP}&k={K}&pulse={p["pulse"]}&relay={p["relay"]}'
                f'&slow_relay={p["slow_relay"]}&nozzle={p["nozzle"]}"]\n')

    def terminal_gpio(self) -> str:
        """The terminal's [gpio] section."""
        names = ("door", "tamper", "paper_low", "led_ready", "led_fault", "buzzer")
        return "[gpio]\n" + "".join(f"{n} = {PINS[n]}\n" for n in names)
