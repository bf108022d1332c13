"""`forecourt provision selftest`: each configured device is opened and must answer - the card reader, every
pump on each of its lines, the printer, the GPIO header's switches, lamps and buzzer, and the broker with
the device's own certificate (which must hand over the device's configuration). One result per check; the
caller prints them as a table.

Run it while the terminal is stopped: a DART line has one master, and the terminal's poller is one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import device_messages as d
from contracts import messages as m
from contracts.errors import ConfigError, ForecourtError, MessageError
from contracts.pump import PumpState
from contracts.signing import SignatureError, verify_envelope
from drivers.devices import open_device as drivers_open_device
from drivers.url import parse_url
from firmware.config import DevicesSection, TerminalConfig
from firmware.configstore import load_config_keys
from firmware.terminal.hardware import line_pumps, open_pumps
from provisioning.status import config_on_broker

__all__ = ["CheckResult", "check_gpio", "check_pumps", "failed", "run_selftest", "table"]

OpenDevice = Callable[..., Any]


@dataclass(frozen=True)
class CheckResult:
    device: str        # what was checked: "card reader", "pump 2", "printer", "broker"
    passed: bool
    detail: str        # what it answered, or why it failed (never a key or card data)


def _reason(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, ForecourtError | OSError) else type(exc).__name__
    return " ".join(text.split())[:160] or type(exc).__name__


def _close(device: Any) -> None:
    close = getattr(device, "close", None) or getattr(device, "disconnect", None)
    if callable(close):
        try:
            close()
        except (ForecourtError, OSError):
            pass     # the check's verdict stands; a device that fails to close is not a second fault


def check_card_reader(cfg: TerminalConfig, open_device: OpenDevice) -> CheckResult:
    """The reader opens and tells whether a card is in it (PC/SC: SCardGetStatusChange answers)."""
    url = cfg.devices.card_reader
    try:
        reader = open_device("card_reader", url)
    except (ForecourtError, OSError) as exc:
        return CheckResult("card reader", False, _reason(exc))
    try:
        present = reader.card_present()
    except (ForecourtError, OSError) as exc:
        return CheckResult("card reader", False, _reason(exc))
    finally:
        _close(reader)
    return CheckResult("card reader", True, f"{url}: answers, {'a card' if present else 'no card'} inserted")


def _open_gpio(cfg: TerminalConfig) -> Any:
    """The GPIO header of devices.gpio (None when there is none); the caller closes it."""
    return drivers_open_device("gpio", cfg.devices.gpio) if cfg.devices.gpio else None


def _line_groups(cfg: TerminalConfig) -> list[tuple[str, tuple[int, ...], DevicesSection]]:
    """Each pump line: its URL, its pumps, and [devices] narrowed to it (for open_pumps)."""
    dev = cfg.devices
    served = line_pumps(dev)
    rest = tuple(n for n in dev.pumps if not any(n in pumps for pumps in served.values()))
    groups = [(dev.pump_line, rest, dataclasses.replace(dev, pumps=rest, pump_lines=()))] if rest else []
    return groups + [(url, pumps, dataclasses.replace(dev, pumps=pumps, pump_lines=(url,)))
                     for url, pumps in served.items()]


def check_pumps(cfg: TerminalConfig, timeout: float) -> list[CheckResult]:
    """Every configured pump answers a status poll, on every line of the configuration (the DART line,
    pulser dispensers, pump nodes), each line opened as the terminal opens it (open_pumps)."""
    try:
        groups = _line_groups(cfg)
    except ConfigError as exc:
        return [CheckResult(f"pump {n}", False, _reason(exc)) for n in cfg.devices.pumps]
    results: dict[int, CheckResult] = {}
    opened: list[tuple[str, tuple[int, ...], Any]] = []
    gpio: Any = None
    try:
        try:
            gpio = _open_gpio(cfg)
        except (ForecourtError, OSError):
            gpio = None           # the gpio row says why; the lines that need it fail below
        for url, pumps, dev in groups:
            try:
                opened.append((url, pumps, open_pumps(dev, cfg.state_dir, gpio, cfg.gpio)))
            except (ForecourtError, OSError) as exc:
                why = f"line {url}: {_reason(exc)}"
                results.update({n: CheckResult(f"pump {n}", False, why) for n in pumps})
        deadline = time.monotonic() + timeout
        for url, pumps, line in opened:
            for n in pumps:
                try:
                    status = line.wait_status(n, lambda s: s.state != PumpState.OFFLINE,
                                              max(0.1, deadline - time.monotonic()))
                    results[n] = CheckResult(f"pump {n}", True, f"answers on {url}: {status.state.value}")
                except (ForecourtError, OSError) as exc:
                    results[n] = CheckResult(f"pump {n}", False, f"no answer on {url}: {_reason(exc)}")
    finally:
        for _, _, line in opened:
            _close(line)
        if gpio is not None:
            _close(gpio)
    return [results[n] for n in cfg.devices.pumps]


def check_printer(cfg: TerminalConfig, timeout: float) -> CheckResult:
    """The printer's port opens. A network printer is connected to and left without a byte (an empty job
    prints nothing); a device file must be writable. No status byte: DLE EOT (ESC/POS real-time status) is
    not answered by every printer, and the bytes would land in a job on those that ignore it."""
    url = parse_url(cfg.devices.printer, key="devices.printer")
    try:
        if url.scheme == "tcp":
            with socket.create_connection(url.address(), timeout=timeout):
                pass
            return CheckResult("printer", True, f"{url.raw}: connected")
        if url.scheme == "file":
            path = Path(url.host + url.path)
            # no O_CREAT: an unplugged printer must not become a regular file at its device path
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY))
            return CheckResult("printer", True, f"{path}: opens for writing")
        if url.scheme == "memory":
            return CheckResult("printer", True, "memory://: simulated")
    except OSError as exc:
        return CheckResult("printer", False, f"{url.raw}: {_reason(exc)}")
    return CheckResult("printer", False, f"{url.raw}: no check for this scheme")


def check_broker(cfg: TerminalConfig, timeout: float, now: dt.datetime | None = None) -> CheckResult:
    """The broker takes the device certificate and hands over the device's retained configuration, which
    must verify against the configuration keys the device trusts (config-keys.json)."""
    where = f"{cfg.mqtt.host}:{cfg.mqtt.port}{' (TLS)' if cfg.mqtt.tls else ''}"
    try:
        raw = config_on_broker(cfg, timeout=timeout, client="selftest")
    except ForecourtError as exc:
        return CheckResult("broker", False, _reason(exc))
    if raw is None:
        return CheckResult("broker", False, f"{where}: connected, but no configuration for "
                                            f"{cfg.terminal.id} within {timeout:g} s")
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    try:
        doc = m.decode(raw, d.SIGNED_CONFIG)
        verify_envelope(doc, load_config_keys(cfg.state_dir), terminal=cfg.terminal.id, now=moment)
    except SignatureError as exc:
        return CheckResult("broker", False, f"{where}: connected, configuration refused ({exc.reason})")
    except (MessageError, ConfigError) as exc:
        return CheckResult("broker", False, f"{where}: connected, configuration unusable: {_reason(exc)}")
    return CheckResult("broker", True, f"{where}: connected, configuration version {doc['version']} "
                                       f"verified (key {doc['key_id']})")


SWITCHES = (("door", "door", "door open", "door shut"),
            ("tamper", "tamper", "tamper switch tripped: housing open", "housing shut"),
            ("paper_low", "paper sensor", "paper low", "paper in"))
LAMPS = (("led_ready", "led ready"), ("led_fault", "led fault"))
LIT_FOR = 0.3              # seconds an LED is lit for the technician to see it


def check_gpio(cfg: TerminalConfig) -> list[CheckResult]:
    """With devices.gpio: the header opens; each fitted switch is read (door open, housing open, paper low
    fail), the tamper latch must be clear; each LED is lit once, the buzzer beeps once (the technician
    sees and hears them); the RS-485 transmit-enable pin is claimed and left off."""
    url = cfg.devices.gpio
    if not url:
        return []
    try:
        gpio = _open_gpio(cfg)
    except (ForecourtError, OSError) as exc:
        return [CheckResult("gpio", False, f"{url}: {_reason(exc)}")]
    try:
        return [CheckResult("gpio", True, f"{url}: opened"), *_gpio_parts(cfg, gpio)]
    finally:
        _close(gpio)


def _gpio_parts(cfg: TerminalConfig, gpio: Any) -> Iterator[CheckResult]:
    from drivers.gpio.devices import Buzzer, Led, Switch

    pins = cfg.gpio
    for name, device, bad, good in SWITCHES:
        number = getattr(pins, name)
        if not number:
            continue
        try:
            switch = Switch(gpio, number, name=name, active_low=name in pins.active_low, bounce_ms=0)
            active = switch.is_active()
        except (ForecourtError, OSError) as exc:
            yield CheckResult(device, False, f"GPIO{number}: {_reason(exc)}")
            continue
        try:
            latched = _tamper_latch(cfg) if name == "tamper" and not active else None
        except ForecourtError as exc:
            yield CheckResult(device, False, f"GPIO{number}: {good}; the tamper latch: {_reason(exc)}")
            continue
        if latched is not None:
            yield CheckResult(device, False, f"GPIO{number}: {good}, but latched since {latched}: inspect, "
                                             "then forecourt provision tamper-clear")
        else:
            yield CheckResult(device, not active, f"GPIO{number}: {bad if active else good}")
    for name, device in LAMPS:
        if getattr(pins, name):
            yield _toggled(device, getattr(pins, name),
                           functools.partial(Led, gpio, active_low=name in pins.active_low, name=name))
    if pins.buzzer:
        yield _toggled("buzzer", pins.buzzer,
                       functools.partial(Buzzer, gpio, active_low="buzzer" in pins.active_low))
    if pins.tx_enable:
        try:
            gpio.output(pins.tx_enable, initial=False, active_low="tx_enable" in pins.active_low)
            yield CheckResult("tx enable", True, f"GPIO{pins.tx_enable}: claimed, driver off (receiving)")
        except (ForecourtError, OSError) as exc:
            yield CheckResult("tx enable", False, f"GPIO{pins.tx_enable}: {_reason(exc)}")


def _toggled(device: str, number: int, make: Callable[[int], Any]) -> CheckResult:
    """An LED lit once, a buzzer sounded once: the pin drives; whether it lit or sounded, the technician
    sees or hears."""
    try:
        part = make(number)
        if hasattr(part, "beep"):
            part.beep(1, int(LIT_FOR * 1000))
            part.wait(2 * LIT_FOR + 1)
            done = "beeped once"
        else:
            part.on()
            time.sleep(LIT_FOR)
            part.off()
            done = "lit once"
    except (ForecourtError, OSError) as exc:
        return CheckResult(device, False, f"GPIO{number}: {_reason(exc)}")
    return CheckResult(device, True, f"GPIO{number}: {done}")


def _tamper_latch(cfg: TerminalConfig) -> str | None:
    """When the tamper latch was set (the terminal's journal), None when it is clear."""
    from firmware.sale.journal import Journal
    from firmware.terminal.cabinet import TAMPER_LATCH

    path = cfg.state_dir / "journal.db"
    if not path.exists():
        return None
    journal = Journal(path)
    try:
        return journal.get_value(TAMPER_LATCH)
    finally:
        journal.close()


def run_selftest(cfg: TerminalConfig, *, timeout: float = 5.0,
                 open_device: OpenDevice | None = None) -> list[CheckResult]:
    """Every check, in the order a technician walks the terminal."""
    if open_device is None:
        open_device = drivers_open_device      # the real table: devices by URL
    return [check_card_reader(cfg, open_device), *check_pumps(cfg, timeout), check_printer(cfg, timeout),
            *check_gpio(cfg), check_broker(cfg, timeout)]


def failed(results: list[CheckResult]) -> bool:
    return not all(r.passed for r in results)


def table(results: list[CheckResult]) -> Iterator[str]:
    """Lines of a plain text table: device, PASS/FAIL, detail."""
    width = max([len("device"), *(len(r.device) for r in results)])
    yield f"{'device':<{width}}  result  detail"
    for r in results:
        yield f"{r.device:<{width}}  {'PASS' if r.passed else 'FAIL':<6}  {r.detail}"
