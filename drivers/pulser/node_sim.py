"""Simulated pump nodes, each on a pseudo-terminal: the node code itself (node.PumpNode) with a meter that
gives pulses while the relays are on and the nozzle is out. The `nodesim://` pump line starts them in
this process; the host simulator runs them for its pulser pumps (`.port` is the pty a terminal opens as
it would /dev/ttyAMA1).

    nodesim://?pumps=3&k=100&flow=200         (flow: cl/s through the fast stage; the slow stage gives 1/5)

meter_k= sets the pulses per litre the simulated meter really gives (default: k=, a perfect calibration),
so a calibration against a proving measure can be played.

A node can be restarted (power cycle: relays off, the snapshot saved so far restored, one more boot) and
can lose frames (`drop_requests`, `drop_replies`), as a noisy UART would.
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import Any

from drivers.pump.sim_line import raw_pty
from drivers.url import DeviceUrl

from .controller import PulserController
from .link import NodeLink, open_node_port
from .meter import PulserCore
from .node import PumpNode
from .setup import calibrated, k_milli_of, one_pump, slow_of

__all__ = ["MemoryStore", "SimNode", "open_node_sim_line"]


class MemoryStore:
    """A node's flash: the last snapshot saved survives a restart."""

    def __init__(self) -> None:
        self.snap: dict[str, Any] | None = None
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return dict(self.snap) if self.snap is not None else None

    def save(self, snap: dict[str, Any]) -> None:
        self.snap, self.saves = dict(snap), self.saves + 1


class SimNode:
    def __init__(self, *, flow_cl_per_s: float = 200.0, slow_ratio: float = 0.2, k_milli: int = 100000,
                 store: MemoryStore | None = None) -> None:
        self.flow, self.slow_ratio, self.meter_k = flow_cl_per_s, slow_ratio, k_milli
        self.store = store or MemoryStore()
        self.lock = threading.RLock()
        self.node = PumpNode(PulserCore(), self.store)
        self.nozzle_out = False
        self.drop_requests = 0       # the next n requests are lost on the line
        self.drop_replies = 0        # the next n replies are lost on the line
        self.restarts = 0
        self._carry = 0.0
        self._master = self._slave = -1
        self._port = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> str:
        if not self._port:
            raise RuntimeError("node not started")
        return self._port

    @property
    def core(self) -> PulserCore:
        return self.node.core

    def start(self) -> SimNode:
        if self._thread is not None:
            return self
        self._master, self._slave, self._port = raw_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pump-node-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=2)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    # -- the forecourt -------------------------------------------------------------------------------------
    def lift(self) -> None:
        with self.lock:
            self.nozzle_out = True
            self.node.core.nozzle(True, _ms())

    def hang(self) -> None:
        with self.lock:
            self.nozzle_out = False
            self.node.core.nozzle(False, _ms())

    def restart(self) -> None:
        """A power cycle: whatever was not saved is lost, the relays drop, the node boots from its store."""
        with self.lock:
            self.node = PumpNode(PulserCore(), self.store)
            self.node.core.nozzle(self.nozzle_out, _ms())
            self._carry = 0.0
            self.restarts += 1

    # -- inside ----------------------------------------------------------------------------------------------
    def _flow(self, dt: float) -> None:
        fast, slow = self.node.core.outputs()
        if not self.nozzle_out or not (fast or slow):
            self._carry = 0.0
            return
        rate = self.flow if fast else self.flow * self.slow_ratio            # cl/s
        self._carry += rate * dt * self.meter_k / 100000                     # pulses
        while self._carry >= 1.0 and any(self.node.core.outputs()):
            self._carry -= 1.0
            self.node.core.pulses(1, _ms())            # one pulse at a time: the preset closes at its pulse

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.005)
            with self.lock:
                now = time.monotonic()
                self._flow(now - last)
                last = now
                if ready:
                    try:
                        data = os.read(self._master, 512)
                    except OSError:
                        data = b""
                    if data and self.drop_requests:
                        self.drop_requests -= 1
                        data = b""
                    reply = self.node.receive(data, _ms()) if data else b""
                    if reply and self.drop_replies:
                        self.drop_replies -= 1
                        reply = b""
                    if reply:
                        os.write(self._master, reply)
                self.node.tick(_ms())


def _ms() -> int:
    return time.monotonic_ns() // 1_000_000


def open_node_sim_line(url: DeviceUrl, *, pumps: list[int] | tuple[int, ...], state_dir: Path | None = None,
                       event: Any = None, **_: Any) -> PulserController:
    """The nodesim:// backend: a simulated node on a pty and a controller on it; close() stops both. The
    terminal uses the technician's calibration; the simulated meter keeps the URL's meter_k (else k)."""
    pump, slow = one_pump(url, pumps), slow_of(url)
    nominal = k_milli_of(url)
    k = calibrated(state_dir, pump, nominal)
    real = round(url.number("meter_k", nominal / 1000) * 1000)
    sim = SimNode(flow_cl_per_s=url.number("flow", 200.0), k_milli=real).start()
    controller = PulserController({pump: NodeLink(open_node_port(sim.port, 115200))}, k_milli={pump: k},
                                  slow_cl=slow, on_close=sim.stop, event=event)
    controller.sim = sim          # type: ignore[attr-defined]
    controller.start()
    return controller
