"""Pulser dispensers: how fast the terminal counts meter pulses on its own GPIO, and how long one request
to a pump node takes over a UART, each against what the forecourt needs.

- Pulses: a SimPins pulse input feeding the terminal's in-process pulser unit (the same lock and core as on
  the Pi), pulses per second counted, against a truck-lane meter at 130 L/min with K = 1000 pulses/L
  (2,167 Hz). The Pi's own GPIO library adds its latency on top: docs/gpio.md.
- Node round trip: STATUS requests through NodeLink to a simulated node on a pty (the node code itself),
  median and 99th percentile, against the controller's 50 ms poll interval.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.gpio.sim import SimPins
from drivers.pulser import wire
from drivers.pulser.gpio_line import LocalUnit
from drivers.pulser.link import NodeLink, open_node_port
from drivers.pulser.meter import FILLING, PulserCore
from drivers.pulser.node import PumpNode
from drivers.pulser.node_sim import SimNode
from drivers.pulser.setup import JsonFileStore

PULSES = 200_000
TRUCK_HZ = 130 / 60 * 1000
REQUESTS = 500


def count_pulses() -> tuple[float, int]:
    pins = SimPins()
    pins.drive(23, False)                        # the nozzle hangs in its boot
    pins.drive(17, False)                        # the meter's output at rest
    with tempfile.TemporaryDirectory() as state:
        node = PumpNode(PulserCore(k_milli=1_000_000), JsonFileStore(Path(state) / "pulser.json"))
        unit = LocalUnit(node, pins, pulse=17, relay=27, slow_relay=22, nozzle=23)
        unit.request(wire.CONFIG, wire.put_u(1_000_000, 4) + wire.put_u(50, 2))
        unit.request(wire.AUTHORIZE, wire.put_u(1659, 4) + bytes((0,)) + wire.put_u(0, 4))
        pins.drive(23, True)                     # the nozzle lifted (debounced 20 ms): the filling runs
        deadline = time.monotonic() + 2
        while node.core.state != FILLING and time.monotonic() < deadline:
            time.sleep(0.005)
        t0 = time.perf_counter()
        for _ in range(PULSES):
            pins.drive(17, True)
            pins.drive(17, False)
        elapsed = time.perf_counter() - t0
        counted = node.core.count
        unit.close()
    pins.close()
    return PULSES / elapsed, counted


def node_round_trip() -> list[float]:
    sim = SimNode().start()
    link = NodeLink(open_node_port(sim.port, 115200))
    times = []
    try:
        for _ in range(REQUESTS):
            t0 = time.perf_counter()
            link.request(wire.STATUS)
            times.append(time.perf_counter() - t0)
    finally:
        link.close()
        sim.stop()
    return times


def main() -> int:
    rate, counted = count_pulses()
    print(f"terminal GPIO pulse counting: {rate:,.0f} pulses/s ({counted:,} of {PULSES:,} counted); "
          f"a 130 L/min meter at K=1000 gives {TRUCK_HZ:,.0f}/s: {rate / TRUCK_HZ:.0f}x headroom")
    times = sorted(node_round_trip())
    median, p99 = statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000
    line_ms = (6 + 6 + 26) * 10 / 115200 * 1000        # request and status reply, 8N1 at 115200 baud
    print(f"pump node STATUS round trip on a pty: median {median:.2f} ms, p99 {p99:.2f} ms over {REQUESTS} "
          f"requests (a real UART adds {line_ms:.1f} ms of bits at 115200 baud); the controller polls every "
          f"50 ms")
    return 0 if counted == PULSES else 1


if __name__ == "__main__":
    raise SystemExit(main())
