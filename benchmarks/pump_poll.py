"""DART driver CPU per frame while polling 32 pumps on one line, against the frame's wire time at 9600 8O1.

Setup: the driver's DartLineSimulator answers as SimPump 1..32 on a pty; a DartController (poll_interval 0,
so it polls back to back) drives the line; `--filling` of the pumps dispense meanwhile, so the mix holds
DC1/DC2/DC3 data frames and their ACKs, not only POLL/EOT.

Method: the controller's port is wrapped (serial_factory) in a thin counting proxy. At the POLL that starts
the measured window and at the one that ends it (both to pump 1, after `--warmup` cycles), the proxy, which
runs in the controller's poll thread, reads time.thread_time(): the poll thread's own CPU, whatever the
simulator thread does meanwhile (the GIL makes wall-clock useless here). Frames are those the driver wrote
plus those it read (stop flags that are not escaped); wire time is every byte written and read at 11 bits
(start, 8 data, odd parity, stop) per byte at 9600 baud. The proxy's own work (one call per read/write, a
bytes.count) is counted in the driver's CPU, so the figure errs high. As a cross-check the line also shows
process CPU minus the simulator thread's CPU (read through its pthread CPU clock), i.e. driver plus the idle
main thread. On a pty the pump answers at once, so the line is far busier than a real one at 9600 baud;
CPU per frame is what carries over.

Run: .venv/bin/python benchmarks/pump_poll.py [--cycles 1000] [--filling 4] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import threading
import time
from typing import Any

from contracts.pump import PumpState
from drivers.pump import DartController, dart
from drivers.pump.sim_line import DartLineSimulator
from drivers.pump.simulator import SimPump

BAUD = 9600
BITS_PER_BYTE = 11          # 8O1: start + 8 data + parity + stop
TARGET = 0.02               # driver CPU under 2% of the line's wire time


def _thread_clock(name: str) -> int:
    for t in threading.enumerate():
        if t.name == name and t.ident is not None:
            return time.pthread_getcpuclockid(t.ident)
    raise RuntimeError("thread not running: " + name)


class CountingPort:
    """Serial proxy: counts bytes and frames, and snapshots CPU clocks at cycle boundaries, in the caller's
    (the poll thread's) context."""

    def __init__(self, port: Any, first_poll: bytes, warmup: int, cycles: int, profile: bool) -> None:
        self._port = port
        self._first_poll = first_poll
        self._start_at, self._end_at = warmup, warmup + cycles
        self.cycle = 0
        self.tx_bytes = self.rx_bytes = self.tx_frames = self.rx_frames = 0
        self.marks: list[dict[str, float]] = []
        self.done = threading.Event()
        self.profiler = cProfile.Profile(time.thread_time) if profile else None   # CPU, not wall
        self._sim_clock: int | None = None

    # explicit members, not __getattr__: the proxy's own cost lands in the measured figure
    @property
    def timeout(self) -> float | None:
        return self._port.timeout  # type: ignore[no-any-return]

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._port.timeout = value

    @property
    def in_waiting(self) -> int:
        return self._port.in_waiting  # type: ignore[no-any-return]

    def reset_input_buffer(self) -> None:
        self._port.reset_input_buffer()

    def close(self) -> None:
        self._port.close()

    def _mark(self) -> None:
        if self._sim_clock is None:
            self._sim_clock = _thread_clock("dart-line-sim")
        self.marks.append({"thread": time.thread_time(), "process": time.process_time(),
                           "sim": time.clock_gettime(self._sim_clock), "wall": time.perf_counter(),
                           "tx_bytes": self.tx_bytes, "rx_bytes": self.rx_bytes,
                           "tx_frames": self.tx_frames, "rx_frames": self.rx_frames})

    def write(self, data: bytes) -> int | None:
        if data == self._first_poll:
            if self.cycle == self._start_at:
                self._mark()
                if self.profiler is not None:
                    self.profiler.enable()
            elif self.cycle == self._end_at:
                if self.profiler is not None:
                    self.profiler.disable()
                self._mark()
                self.done.set()
            self.cycle += 1
        self.tx_bytes += len(data)
        self.tx_frames += 1
        return self._port.write(data)  # type: ignore[no-any-return]

    def read(self, size: int = 1) -> bytes:
        data = self._port.read(size)
        if data:
            self.rx_bytes += len(data)
            self.rx_frames += data.count(b"\xfa") - data.count(b"\x10\xfa")
        return data  # type: ignore[no-any-return]


def run(pumps: int = 32, cycles: int = 1000, warmup: int = 20, filling: int = 4,
        profile: bool = False) -> dict[str, Any]:
    import serial  # type: ignore[import-untyped]

    numbers = list(range(1, pumps + 1))
    sims = [SimPump(n, flow_cl_per_s=20.0) for n in numbers]
    holder: list[CountingPort] = []

    with DartLineSimulator(sims) as line:
        def factory(url: str, **kw: Any) -> CountingPort:
            port = serial.serial_for_url(url, bytesize=8, parity=serial.PARITY_ODD, stopbits=1, timeout=0.01,
                                         **kw)
            # counting starts only after setup, so the window holds steady-state polling alone
            holder.append(CountingPort(port, dart.encode_short(dart.pump_address(1), dart.POLL),
                                       10**9, cycles, profile))
            return holder[-1]

        ctl = DartController(line.port, numbers, poll_interval=0.0, reply_timeout=0.05,
                             serial_factory=factory)
        with ctl:
            for n in numbers:
                ctl.wait_status(n, lambda s: s.state != PumpState.OFFLINE, 10.0)
            for n in numbers[:filling]:
                ctl.set_prices(n, {1: 1659, 2: 1789})
                ctl.authorize(n, nozzles=[1])
                line.pump(n).lift(1)
                line.pump(n).dispense(100_000, wait=False)
            port = holder[-1]
            port._start_at = port.cycle + warmup       # measure from warmup cycles after now
            port._end_at = port._start_at + cycles
            if not port.done.wait(60.0 + cycles):
                raise RuntimeError("poll cycles did not complete")
    a, b = port.marks
    frames = (b["tx_frames"] - a["tx_frames"]) + (b["rx_frames"] - a["rx_frames"])
    nbytes = (b["tx_bytes"] - a["tx_bytes"]) + (b["rx_bytes"] - a["rx_bytes"])
    cpu = b["thread"] - a["thread"]
    wire = nbytes * BITS_PER_BYTE / BAUD
    cross = (b["process"] - a["process"]) - (b["sim"] - a["sim"])
    result: dict[str, Any] = {
        "pumps": pumps, "cycles": cycles, "filling": filling, "frames": frames, "bytes": nbytes,
        "cpu_us_per_frame": 1e6 * cpu / frames, "wire_ms_per_frame": 1e3 * wire / frames,
        "cpu_wire_ratio": cpu / wire, "cross_check_ratio": cross / wire,
        "sim_cpu_s": b["sim"] - a["sim"], "wall_s": b["wall"] - a["wall"],
    }
    if port.profiler is not None:
        out = io.StringIO()
        pstats.Stats(port.profiler, stream=out).sort_stats("tottime").print_stats(25)
        result["profile"] = out.getvalue()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--pumps", type=int, default=32)
    ap.add_argument("--cycles", type=int, default=1000, help="measured poll cycles over all pumps")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--filling", type=int, default=4, help="pumps dispensing during the run")
    ap.add_argument("--profile", action="store_true", help="cProfile the poll thread over the window")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.pumps, args.cycles, args.warmup, args.filling, args.profile)
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if k != "profile"}))
    else:
        print("pump_poll: {pumps} pumps, {cycles} cycles, {filling} filling: {frames} frames, driver CPU "
              "{cpu_us_per_frame:.1f} us/frame vs wire {wire_ms_per_frame:.2f} ms/frame at 9600 8O1 = "
              "{ratio:.2f}% (target < 2%; process-minus-simulator {cross:.2f}%)".format(
                  ratio=100 * r["cpu_wire_ratio"], cross=100 * r["cross_check_ratio"], **r))
    if "profile" in r:
        print(r["profile"], file=sys.stderr)
    return 0 if r["cpu_wire_ratio"] < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
