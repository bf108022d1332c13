"""The terminal's own hardware from its configuration, part of the composition root (drivers are imported
inside the functions): the pump lines (devices.pump_line for most pumps, DART; each of devices.pump_lines
for the pumps its URL names: pulser dispensers, pump nodes) and the housing's switches and lamps on
devices.gpio ([gpio])."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError
from contracts.pump import PumpController
from firmware.config import DevicesSection, GpioSection, TerminalConfig
from firmware.sale.journal import Journal
from firmware.terminal.cabinet import Cabinet, Event

__all__ = ["build_cabinet", "line_pumps", "open_pumps", "outputs_off", "pump_progress", "pump_threads"]


def line_pumps(dev: DevicesSection) -> dict[str, tuple[int, ...]]:
    """Each URL of devices.pump_lines -> the pumps it serves (its pumps= option); ConfigError for a pump not
    in devices.pumps or served twice."""
    from drivers.url import parse_url

    served: dict[str, tuple[int, ...]] = {}
    seen: set[int] = set()
    for i, url in enumerate(dev.pump_lines):
        key = f"devices.pump_lines[{i}]"
        text = parse_url(url, key=key).option("pumps", "")
        try:
            pumps = tuple(int(p) for p in text.split(",") if p)
        except ValueError:
            pumps = ()
        if not pumps or any(p not in dev.pumps for p in pumps) or seen & set(pumps):
            raise ConfigError("each pump line names pumps=<n>[,<n>] from devices.pumps, each pump once",
                              key=key)
        seen |= set(pumps)
        served[url] = pumps
    return served


def open_pumps(dev: DevicesSection, state_dir: Path, gpio: Any = None,
               pins: GpioSection | None = None, event: Event | None = None) -> PumpController:
    """One controller for every pump in devices.pumps, started; event: a pulser line's events (a pump node
    restarted) to the registry."""
    from drivers.devices import open_device
    from drivers.pump.lines import PumpLines

    served = line_pumps(dev)
    rest = tuple(p for p in dev.pumps if not any(p in pumps for pumps in served.values()))
    lines: dict[int, PumpController] = {}
    opened: list[PumpController] = []
    try:
        if rest:
            dart = open_device("pump_line", dev.pump_line, pumps=rest, baudrate=dev.pump_baudrate,
                               decimals=dev.pump_decimals or None, **_tx_enable(gpio, pins))
            opened.append(dart)
            lines.update(dict.fromkeys(rest, dart))
        for i, (url, pumps) in enumerate(served.items()):
            line = open_device("pump_line", url, key=f"devices.pump_lines[{i}]", pumps=pumps, gpio=gpio,
                               state_dir=state_dir, event=event)
            opened.append(line)
            lines.update(dict.fromkeys(pumps, line))
    except BaseException:
        for line in opened:
            line.close()
        raise
    if len(opened) == 1:
        return opened[0]
    return PumpLines(lines)


def _tx_enable(gpio: Any, pins: GpioSection | None) -> dict[str, Any]:
    """A serial factory for a DART line whose RS-485 transceiver needs its driver enabled by a pin."""
    if gpio is None or pins is None or not pins.tx_enable:
        return {}
    from drivers.gpio.txenable import TxEnable
    from drivers.pump.link import open_port

    de = gpio.output(pins.tx_enable, initial=False, active_low="tx_enable" in pins.active_low)

    def factory(url: str, *, baudrate: int) -> Any:
        port: Any = open_port(url, baudrate, 0.01)
        return TxEnable(port, de)

    return {"serial_factory": factory}


def build_cabinet(cfg: TerminalConfig, gpio: Any, journal: Journal, event: Event) -> Cabinet:
    """The door, tamper and paper switches, LEDs and buzzer fitted ([gpio]; 0 = not fitted). A switch is
    active at a high level unless named in gpio.active_low."""
    pins = cfg.gpio
    if gpio is None:
        return Cabinet(journal, event)
    from drivers.gpio.devices import Buzzer, Led, PaperSensor, Switch

    def fitted(name: str, make: Callable[[int, bool], Any]) -> Any:
        number = getattr(pins, name)
        return make(number, name in pins.active_low) if number else None

    bounce = pins.debounce_ms
    return Cabinet(
        journal, event,
        door=fitted("door", lambda n, low: Switch(gpio, n, name="door", active_low=low, bounce_ms=bounce)),
        tamper=fitted("tamper", lambda n, low: Switch(gpio, n, name="tamper", active_low=low,
                                                      bounce_ms=bounce)),
        paper=fitted("paper_low", lambda n, low: PaperSensor(gpio, n, active_low=low)),
        led_ready=fitted("led_ready", lambda n, low: Led(gpio, n, active_low=low, name="led_ready")),
        led_fault=fitted("led_fault", lambda n, low: Led(gpio, n, active_low=low, name="led_fault")),
        buzzer=fitted("buzzer", lambda n, low: Buzzer(gpio, n, active_low=low)))


def pump_threads(pumps: Any) -> list[Any]:
    """The threads of the pump lines (for the watchdog): each line's polling thread, and the tick thread of
    each pulser on the terminal's own GPIO; a callable each, asked each time."""
    lines = getattr(pumps, "lines", None)
    found: list[Any] = []
    for line in lines() if lines else [pumps]:
        found.append(lambda line=line: getattr(line, "_thread", None))
        for unit in getattr(line, "units", {}).values():
            if isinstance(getattr(unit, "thread", None), threading.Thread):
                found.append(lambda unit=unit: unit.thread)
    return found


def outputs_off(cfg: TerminalConfig) -> list[int]:
    """Every GPIO output the configuration names to its safe level (relays off, DE low, lamps and buzzer
    off); the pins set. A killed terminal leaves its pins as they were, a valve open among them: the unit's
    ExecStopPost= runs this (`forecourt terminal --outputs-off`) before systemd starts the terminal again."""
    if not cfg.devices.gpio:
        return []
    from drivers.devices import open_device
    from drivers.url import parse_url

    wanted: dict[int, bool] = {}                 # pin -> active_low
    for url in cfg.devices.pump_lines:
        parsed = parse_url(url, key="devices.pump_lines")
        if parsed.scheme != "pulser":
            continue
        inverted = parsed.option("active_low", "").split(",")
        for name in ("relay", "slow_relay"):
            text = parsed.option(name, "")
            if text.isdigit():
                wanted[int(text)] = name in inverted
    pins = cfg.gpio
    for name in ("led_ready", "led_fault", "buzzer", "tx_enable"):
        if getattr(pins, name):
            wanted[getattr(pins, name)] = name in pins.active_low
    gpio = open_device("gpio", cfg.devices.gpio)
    try:
        for number, active_low in sorted(wanted.items()):
            gpio.output(number, initial=False, active_low=active_low)
    finally:
        gpio.close()
    return sorted(wanted)


def pump_progress(pumps: Any) -> list[Callable[[], int]]:
    """The round counters of the pump lines' polling threads and GPIO pulsers' tick threads (for the
    watchdog: a thread that lives but no longer turns is stuck)."""
    lines = getattr(pumps, "lines", None)
    parts: list[Any] = []
    for line in lines() if lines else [pumps]:
        parts += [line, *getattr(line, "units", {}).values()]
    return [_turns_of(part) for part in parts if isinstance(getattr(part, "turns", None), int)]


def _turns_of(part: Any) -> Callable[[], int]:
    return lambda: int(part.turns)
