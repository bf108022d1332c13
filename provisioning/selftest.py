"""`forecourt provision selftest`: each configured device is opened and must answer - the card reader, every
pump on the line, the printer, and the broker with the device's own certificate (which must hand over the
device's configuration). One result per check; the caller prints them as a table.

Run it while the terminal is stopped: a DART line has one master, and the terminal's poller is one.
"""

from __future__ import annotations

import datetime as dt
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
from firmware.config import TerminalConfig
from firmware.configstore import load_config_keys
from provisioning.status import config_on_broker

__all__ = ["CheckResult", "failed", "run_selftest", "table"]

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


def check_pumps(cfg: TerminalConfig, open_device: OpenDevice, timeout: float) -> list[CheckResult]:
    """Every configured pump answers a status poll (DART: a status reply to the controller's polls)."""
    dev = cfg.devices
    try:
        line = open_device("pump_line", dev.pump_line, pumps=dev.pumps, baudrate=dev.pump_baudrate,
                           decimals=dev.pump_decimals or None)
    except (ForecourtError, OSError) as exc:
        return [CheckResult(f"pump {n}", False, f"line {dev.pump_line}: {_reason(exc)}") for n in dev.pumps]
    results = []
    deadline = time.monotonic() + timeout
    try:
        for n in dev.pumps:
            try:
                status = line.wait_status(n, lambda s: s.state != PumpState.OFFLINE,
                                          max(0.1, deadline - time.monotonic()))
                results.append(CheckResult(f"pump {n}", True, f"answers: {status.state.value}"))
            except (ForecourtError, OSError) as exc:
                results.append(CheckResult(f"pump {n}", False,
                                           f"no answer on {dev.pump_line}: {_reason(exc)}"))
    finally:
        _close(line)
    return results


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


def run_selftest(cfg: TerminalConfig, *, timeout: float = 5.0,
                 open_device: OpenDevice | None = None) -> list[CheckResult]:
    """Every check, in the order a technician walks the terminal."""
    if open_device is None:
        open_device = drivers_open_device      # the real table: devices by URL
    return [check_card_reader(cfg, open_device), *check_pumps(cfg, open_device, timeout),
            check_printer(cfg, timeout), check_broker(cfg, timeout)]


def failed(results: list[CheckResult]) -> bool:
    return not all(r.passed for r in results)


def table(results: list[CheckResult]) -> Iterator[str]:
    """Lines of a plain text table: device, PASS/FAIL, detail."""
    width = max([len("device"), *(len(r.device) for r in results)])
    yield f"{'device':<{width}}  result  detail"
    for r in results:
        yield f"{r.device:<{width}}  {'PASS' if r.passed else 'FAIL':<6}  {r.detail}"
