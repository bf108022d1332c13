"""A pulser dispenser wired to the terminal's own GPIO: the `pulser://` pump line.

    pulser://?pumps=4&pulse=17&relay=27&slow_relay=22&nozzle=23&k=100&slow=50

pulse: the meter's pulse input (rising edges counted); relay: the motor or the valve's fast stage;
slow_relay: the valve's slow stage (optional: with one relay the motor runs until the preset); nozzle: the
nozzle switch (active while the nozzle is out; active_low=nozzle for a switch to ground). The pulser core
(meter.PulserCore) runs here behind the same request handler as on a pump node, its snapshot in the state
directory (pulser-<pump>.json), so a terminal killed mid-filling settles from the pulses counted. Outputs
start, and are left by close(), at the safe level: relays off.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError, PumpLinkError, PumpStateError
from drivers.url import DeviceUrl

from . import wire
from .controller import PulserController
from .link import NAK_TEXT
from .meter import PulserCore
from .node import PumpNode
from .setup import JsonFileStore, calibrated, k_milli_of, one_pump, slow_of

__all__ = ["LocalUnit", "open_pulser_line"]

log = logging.getLogger(__name__)


def _pin(url: DeviceUrl, name: str, required: bool = True) -> int:
    text = url.option(name, "")
    if not text and not required:
        return 0
    if not text.isdigit() or not 2 <= int(text) <= 27:
        raise ConfigError(f"pulser URL needs {name}=<BCM pin 2..27>", key=url.key, option=name)
    return int(text)


class LocalUnit:
    """A PumpNode in this process, fed by GPIO inputs and driving GPIO relays."""

    def __init__(self, node: PumpNode, pins: Any, *, pulse: int, relay: int, slow_relay: int, nozzle: int,
                 active_low: tuple[str, ...] = (), tick: float = 0.01) -> None:
        self.node, self._lock = node, threading.Lock()
        self._relay = pins.output(relay, initial=False, active_low="relay" in active_low)
        self._slow = (pins.output(slow_relay, initial=False, active_low="slow_relay" in active_low)
                      if slow_relay else None)
        self._nozzle = pins.input(nozzle, active_low="nozzle" in active_low, bounce_ms=20)
        self._pulse = pins.input(pulse, active_low="pulse" in active_low, bounce_ms=0)
        self._pulse.on_change(self._on_pulse)
        self._nozzle.on_change(self._on_nozzle)
        self._stop = threading.Event()
        self._closed = False
        self._tick = tick
        self.turns = 0                         # ticks so far (the watchdog sees the unit make progress)
        with self._lock:
            node.core.nozzle(self._nozzle.read(), self._now())
            self._drive()
        self._thread = threading.Thread(target=self._run, name=f"pulser-{id(self):x}", daemon=True)
        self._thread.start()

    @staticmethod
    def _now() -> int:
        return time.monotonic_ns() // 1_000_000

    def _drive(self) -> None:
        if self._closed:                   # shut down: the relays stay off, whatever still comes in
            return
        fast, slow = self.node.core.outputs()
        if self._slow is None:
            self._relay.write(fast or slow)
        else:
            self._relay.write(fast)
            self._slow.write(slow)

    def _on_pulse(self, level: bool) -> None:
        if level:
            with self._lock:
                self.node.core.pulses(1, self._now())
                self._drive()          # the preset closes the valve at the very pulse that reaches it

    def _on_nozzle(self, out: bool) -> None:
        with self._lock:
            self.node.core.nozzle(out, self._now())
            self._drive()

    @property
    def thread(self) -> threading.Thread:
        """The unit's tick thread (watched by the terminal's liveness check)."""
        return self._thread

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self.turns += 1
            try:
                with self._lock:
                    self.node.tick(self._now())
                    self._drive()
            except OSError as exc:         # the snapshot could not be written (a full or failing disk)
                log.error("pulser state not saved", extra={"error": str(exc)})

    def request(self, kind: int, payload: bytes = b"") -> bytes:
        with self._lock:
            try:
                rkind, body = self.node.handle(kind, payload, self._now())
            except OSError as exc:
                raise PumpLinkError("pulser state could not be saved", error=str(exc)) from exc
            finally:
                self._drive()
        if rkind == wire.NAK:
            raise PumpStateError("pulser refused: " + NAK_TEXT.get(body[0], "error"), code=body[0])
        return body

    def close(self) -> None:
        """Relays off for good (a pulse or the nozzle after this opens nothing), the last pulses saved."""
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            self._closed = True
            self._relay.write(False)
            if self._slow is not None:
                self._slow.write(False)
            try:
                self.node.save(self._now() + self.node.save_ms)
            except OSError as exc:
                log.error("pulser state not saved at close", extra={"error": str(exc)})


def open_pulser_line(url: DeviceUrl, *, pumps: list[int] | tuple[int, ...], gpio: Any = None,
                     state_dir: Path | None = None,
                     event: Any = None, **_: Any) -> PulserController:
    """The pulser:// backend: one dispenser on `gpio` (a drivers.gpio pin factory), polling started."""
    if gpio is None:
        raise ConfigError("a pulser:// pump line needs devices.gpio", key=url.key)
    pump, slow = one_pump(url, pumps), slow_of(url)
    k = calibrated(state_dir, pump, k_milli_of(url))
    store = JsonFileStore(state_dir / f"pulser-{pump}.json") if state_dir is not None else None
    node = PumpNode(PulserCore(k_milli=k), store)
    active_low = tuple(n for n in url.option("active_low", "").split(",") if n)
    unit = LocalUnit(node, gpio, pulse=_pin(url, "pulse"), relay=_pin(url, "relay"),
                     slow_relay=_pin(url, "slow_relay", required=False), nozzle=_pin(url, "nozzle"),
                     active_low=active_low)
    controller = PulserController({pump: unit}, k_milli={pump: k}, slow_cl=slow, event=event)
    controller.start()
    return controller
