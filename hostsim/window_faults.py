"""The simulator window's fault buttons, each doing the real thing to the running Simulator.

broker_down stops the simulator's mosquitto process (its port then refuses), broker_up starts it again on
the same port (in the background: the window keeps drawing while it comes up); acquirer_timeout pauses the
simulated acquirer host for ACQUIRER_PAUSE_S (every 0100 meanwhile gets no answer); noise toggles the DART
line babbling garbage bytes at the terminal; pull_card takes the card out of the reader, whatever the
terminal is doing; power_cut SIGKILLs the terminal process and starts it again (its journal recovers).
Each returns the line the window shows; none raises for a fault that cannot apply now.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ACQUIRER_PAUSE_S", "NOISE_INTERVAL_S", "Faults"]

ACQUIRER_PAUSE_S = 30.0      # longer than the terminal's response timeout (5 s in the simulator's config)
NOISE_INTERVAL_S = 0.05      # a garbage byte on the line this often while the noise is on


class Faults:
    """Fault injection on a started Simulator (or one shaped like it)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self._broker_thread: threading.Thread | None = None
        self.last_error = ""

    def run(self, name: str) -> str:
        action: Callable[[], str] | None = getattr(self, name, None)
        if name.startswith("_") or action is None or name not in FAULT_NAMES:
            return f"unknown fault {name}"
        try:
            return action()
        except (OSError, RuntimeError) as exc:        # a process that would not start or stop
            self.last_error = f"{name} failed: {type(exc).__name__}: {exc}"
            return self.last_error

    @property
    def noisy(self) -> bool:
        return bool(getattr(self.sim.pump_line, "noise_interval", None))

    @property
    def broker_starting(self) -> bool:
        return self._broker_thread is not None and self._broker_thread.is_alive()

    def broker_down(self) -> str:
        if self.sim.mosquitto is None:
            return "broker already down"
        self.sim.stop_broker()
        return "broker stopped"

    def broker_up(self) -> str:
        if self.sim.mosquitto is not None or self.broker_starting:
            return "broker already up"
        self._broker_thread = threading.Thread(target=self._start_broker, name="broker-up", daemon=True)
        self._broker_thread.start()
        return "broker starting"

    def _start_broker(self) -> None:
        try:
            self.sim.start_broker()
        except Exception as exc:  # noqa: BLE001 - shown in the window, the thread must not die silently
            self.last_error = f"broker did not start: {exc}"

    def wait_broker(self, timeout: float) -> None:
        if self._broker_thread is not None:
            self._broker_thread.join(timeout)

    def acquirer_timeout(self) -> str:
        if self.sim.acquirer.paused_for():
            self.sim.acquirer.resume()
            return "acquirer answers again"
        self.sim.acquirer.pause(ACQUIRER_PAUSE_S)
        return f"acquirer silent for {ACQUIRER_PAUSE_S:.0f} s"

    def noise(self) -> str:
        line = self.sim.pump_line
        if self.noisy:
            line.noise_interval = None
            return "pump line quiet"
        line.noise_interval = NOISE_INTERVAL_S
        return "pump line noisy"

    def pull_card(self) -> str:
        if getattr(self.sim.cards, "card", None) is None:
            return "no card in the reader"
        self.sim.cards.remove()
        return "card pulled"

    def power_cut(self) -> str:
        pid = self.sim.power_cut()
        return f"power cut: terminal restarted, pid {pid}"


FAULT_NAMES = ("broker_down", "broker_up", "acquirer_timeout", "noise", "pull_card", "power_cut")
