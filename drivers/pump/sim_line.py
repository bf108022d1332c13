"""A simulated DART RS-485 line on a pseudo-terminal: one thread answers for every configured pump.

The `sim://` pump line backend: open_device("pump_line", "sim://?flow=50", pumps=[1, 2]) starts a line
with simulated pumps 1 and 2 (flow in cl/s) and a DartController on it, which stops the line on close().
Otherwise the terminal opens `.port` (the pty slave path) as it would /dev/ttyUSB0. The simulator keeps
its own slave fd open, so the master side never sees EIO when the terminal closes and reopens the port
(a restart after a crash). Frames that fail CRC or framing get no answer, as on a real line (Wayne DART
line protocol spec).
"""

from __future__ import annotations

import logging
import os
import select
import termios
import threading
import tty
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from contracts.errors import ConfigError
from drivers.url import DeviceUrl

from . import dart
from .controller import DartController
from .simulator import SimFaults, SimPump

__all__ = [
    "DartLineSimulator",
    "SimFaults",
    "SimPump",
    "SimulatedDartController",
    "open_sim_line",
    "raw_pty",
    "simulated_line",
]

log = logging.getLogger(__name__)


def raw_pty() -> tuple[int, int, str]:
    """A pseudo-terminal in raw mode for a simulated line: (master fd, slave fd, the slave's path that a
    terminal opens as it would /dev/ttyUSB0)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class DartLineSimulator:
    """Answers as every pump in `pumps` on one pty. Use start()/stop() or a with-block."""

    def __init__(self, pumps: Iterable[SimPump]) -> None:
        self.pumps: dict[int, SimPump] = {}
        for p in pumps:
            if p.number in self.pumps:
                raise ValueError(f"pump {p.number} configured twice")
            self.pumps[p.number] = p
        self._master = -1
        self._slave = -1
        self._port = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.frames: deque[dart.Frame] = deque(maxlen=10000)  # latest good frames from the master, in order
        self.bad_frames = 0                  # frames dropped for CRC or framing errors
        self.noise_interval: float | None = None   # set: the line babbles a noise byte this often (s)
        self.noise_bytes = 0                 # noise bytes written so far

    @property
    def port(self) -> str:
        """Path of the pty slave, for serial_for_url()."""
        if not self._port:
            raise RuntimeError("simulator not started")
        return self._port

    def pump(self, number: int) -> SimPump:
        return self.pumps[number]

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._master, self._slave, self._port = raw_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dart-line-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._thread = None
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1
        self._port = ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def sent_commands(self, pump: int, trans: int = dart.CD1) -> list[bytes]:
        """Data of every accepted transaction `trans` the master sent to `pump`."""
        sim = self.pumps[pump]
        with sim.lock:
            return [data for t, data in sim.received if t == trans]

    def _unstick_parity(self) -> None:
        """Linux ptys drop PARENB but keep PARODD, and then refuse (EINVAL) the next tcsetattr asking for
        odd parity, so a terminal could not reopen the port. Clear the stale PARODD; a pty has no parity."""
        attrs = termios.tcgetattr(self._slave)
        if attrs[2] & termios.PARODD and not attrs[2] & termios.PARENB:
            attrs[2] &= ~termios.PARODD
            termios.tcsetattr(self._slave, termios.TCSANOW, attrs)

    def _run(self) -> None:
        splitter = dart.FrameSplitter()
        while not self._stop.is_set():
            try:
                self._unstick_parity()
                noise = self.noise_interval
                ready, _, _ = select.select([self._master], [], [], noise or 0.02)
                if noise:
                    os.write(self._master, b"\x00")     # not an address: no frame can start with it
                    self.noise_bytes += 1
                if not ready:
                    continue
                chunk = os.read(self._master, 4096)
            except (OSError, termios.error) as exc:   # fd closed under us by stop()
                log.debug("dart sim read ended", extra={"error": str(exc)})
                return
            for raw in splitter.feed(chunk):
                try:
                    frame = dart.decode_resync(raw)
                except dart.DartError:
                    with self._lock:
                        self.bad_frames += 1
                    continue        # a pump stays silent on a CRC or framing error
                with self._lock:
                    self.frames.append(frame)
                sim = self.pumps.get(frame.addr - 0x4F)
                if sim is None:
                    continue
                reply = sim.handle(frame)
                if reply:
                    try:
                        os.write(self._master, reply)
                    except OSError:
                        return


def simulated_line(url: DeviceUrl, pumps: Iterable[int], *, flow_cl_per_s: float = 50.0) -> DartLineSimulator:
    """A (not started) line of simulated pumps; `?flow=` in the URL overrides the flow rate (cl/s),
    `?decimals=3,0,0` the pumps' decimal places of volume, amount and unit price (default 2,2,3)."""
    flow = url.number("flow", flow_cl_per_s)
    try:
        vol, amo, unp = (int(d) for d in url.option("decimals", "2,2,3").split(","))
    except ValueError as exc:
        raise ConfigError("decimals must be three numbers: volume,amount,price", url=url.raw) from exc
    return DartLineSimulator(SimPump(n, flow_cl_per_s=flow, decimals=(vol, amo, unp))
                             for n in dict.fromkeys(pumps))


class SimulatedDartController(DartController):
    """A DartController on its own simulated line; `simulator` plays the pumps and their customers."""

    def __init__(self, simulator: DartLineSimulator, pumps: Iterable[int], **options: Any) -> None:
        super().__init__(simulator.port, list(pumps), **options)
        self.simulator = simulator

    def close(self) -> None:
        super().close()
        self.simulator.stop()


def open_sim_line(url: DeviceUrl, *, pumps: Iterable[int], **options: Any) -> SimulatedDartController:
    """The sim:// backend: simulated pumps `pumps` on a pty, and a started DartController over it."""
    line = simulated_line(url, pumps).start()
    try:
        controller = SimulatedDartController(line, pumps, **options)
        controller.start()
    except BaseException:
        line.stop()
        raise
    return controller
