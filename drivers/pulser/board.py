"""The pump node's main() on a real board under MicroPython (RP2040 or ESP32 class).

Copy meter.py, wire.py, node.py and this file to the board's flash (`mpremote cp ... :`) and call
`board.main()` from main.py. The meter's pulse output raises a pin interrupt whose handler only adds one
to a counter; the main loop hands the count to the core, answers the terminal on the UART, debounces the
nozzle switch, drives the relays and feeds the watchdog. The core's snapshot is kept in a JSON file in
flash, replaced by writing a temporary file and renaming it over the old one (a power cut leaves one
whole snapshot). Relays are driven off before anything else at boot.

`Board` takes the `machine` module as an argument, so tests/micropython/node_harness.py runs this very
loop under MicroPython against a simulated meter. Like meter.py: no dataclasses, enum, typing,
__future__ imports or f-strings.
"""

import json
import os
import time

try:
    from drivers.pulser.meter import PulserCore
    from drivers.pulser.node import PumpNode
except ImportError:          # on the board: the modules sit side by side
    from meter import PulserCore  # type: ignore[no-redef,import-not-found]
    from node import PumpNode  # type: ignore[no-redef,import-not-found]

try:                         # for mypy only; MicroPython has no typing module
    from typing import Any  # noqa: F401 - named in the type comments
except ImportError:
    pass

__all__ = ["CONFIG", "Board", "FlashStore", "main"]

# The wiring; RP2040 numbers shown (UART1 on GP4/GP5). On an ESP32 use e.g. uart 2, tx 17, rx 16.
CONFIG = {
    "uart": 1, "tx": 4, "rx": 5, "baud": 115200,
    "pulse": 15,                 # the meter's pulse output (rising edges counted)
    "relay": 16,                 # motor or valve fast stage
    "slow_relay": 17,            # valve slow stage; None with one relay (it then runs until the preset)
    "relay_active_low": False,   # True for relay boards that switch on a low input
    "nozzle": 14,                # nozzle switch to ground, internal pull-up: low while the nozzle is out
    "nozzle_active_low": True,
    "debounce_ms": 20,
    "wdt_ms": 2000,              # RP2040 allows up to 8388 ms
    "save_ms": 500,              # snapshot at most this often while pulses come in (flash wear)
    "store": "/pulser.json",
}


class FlashStore:
    """The node's snapshot in one JSON file; save() writes a temporary file and renames it over the old
    one (LittleFS and MicroPython's FAT driver both replace the target)."""

    def __init__(self, path):  # type: (str) -> None
        self.path, self.tmp = path, path + ".tmp"

    def load(self):  # type: () -> dict[str, int] | None
        """The last snapshot, None before the first one. A damaged file raises ValueError: the node then
        stays down with its relays off rather than start again from zero totals."""
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError:
            return None
        snap = json.loads(text)
        if not isinstance(snap, dict):
            raise ValueError("pump node store holds no snapshot")  # noqa: TRY004 - a bad file, as bad JSON
        return snap

    def save(self, snap):  # type: (dict[str, int]) -> None
        with open(self.tmp, "w") as f:
            f.write(json.dumps(snap))
        os.rename(self.tmp, self.path)


class Board:
    """A PumpNode with its hardware: pins, UART and watchdog from `machine`, snapshot in flash."""

    def __init__(self, machine, config, now_ms):  # type: (Any, dict[str, Any], int) -> None
        pin = machine.Pin
        self._on = 0 if config["relay_active_low"] else 1
        self.relay = pin(config["relay"], pin.OUT, value=1 - self._on)       # off before anything else
        slow = config.get("slow_relay")
        self.slow = pin(slow, pin.OUT, value=1 - self._on) if slow is not None else None
        self._machine = machine
        self.counted = [0]                    # the only state the interrupt handler touches
        self.nozzle_pin = pin(config["nozzle"], pin.IN, pin.PULL_UP)
        self._nozzle_on = 0 if config["nozzle_active_low"] else 1
        self._debounce = config["debounce_ms"]
        self.node = PumpNode(PulserCore(), FlashStore(config["store"]), config["save_ms"])
        self._seen, self._seen_at = self._nozzle_level(), now_ms
        self.node.core.nozzle(self._seen, now_ms)
        self.uart = machine.UART(config["uart"], baudrate=config["baud"], tx=pin(config["tx"]),
                                 rx=pin(config["rx"]))
        self.pulse_pin = pin(config["pulse"], pin.IN)
        self.pulse_pin.irq(handler=self._on_pulse, trigger=pin.IRQ_RISING)
        self.wdt = machine.WDT(timeout=config["wdt_ms"])     # armed once the store has loaded

    def _on_pulse(self, _pin):  # type: (object) -> None
        self.counted[0] += 1                  # no allocation here: safe in a hard interrupt too

    def _nozzle_level(self):  # type: () -> bool
        return bool(self.nozzle_pin.value() == self._nozzle_on)

    def step(self, now_ms):  # type: (int) -> None
        """One turn of the main loop."""
        self.wdt.feed()
        state = self._machine.disable_irq()
        pulses, self.counted[0] = self.counted[0], 0
        self._machine.enable_irq(state)
        core = self.node.core
        if pulses:
            core.pulses(pulses, now_ms)
            self._drive()                     # the preset closes the valve as soon as it is seen
        level = self._nozzle_level()
        if level != self._seen:
            self._seen, self._seen_at = level, now_ms
        elif level != core.nozzle_out and now_ms - self._seen_at >= self._debounce:
            core.nozzle(level, now_ms)
        if self.uart.any():
            data = self.uart.read()
            if data:
                reply = self.node.receive(data, now_ms)
                if reply:
                    self.uart.write(reply)
        self.node.tick(now_ms)
        self._drive()

    def _drive(self):  # type: () -> None
        fast, slow = self.node.core.outputs()
        if self.slow is None:
            self.relay.value(self._on if fast or slow else 1 - self._on)
        else:
            self.relay.value(self._on if fast else 1 - self._on)
            self.slow.value(self._on if slow else 1 - self._on)


def main(config=None):  # type: (dict[str, Any] | None) -> None
    """Run the node for ever (the watchdog resets the board if the loop ever stalls)."""
    import machine  # type: ignore[import-not-found]

    board = Board(machine, CONFIG if config is None else config, 0)
    last, now = time.ticks_ms(), 0  # type: ignore[attr-defined]
    while True:
        tick = time.ticks_ms()  # type: ignore[attr-defined]
        now += time.ticks_diff(tick, last)  # type: ignore[attr-defined]  # ticks wrap; now never does
        last = tick
        board.step(now)
        time.sleep_ms(1)  # type: ignore[attr-defined]
