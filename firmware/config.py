"""Typed terminal configuration, loaded once from TOML and passed down.

An unknown key is an error that names it, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from contracts.errors import ConfigError
from contracts.iso8583_spec import DIALECTS
from firmware.config_files import read_toml

__all__ = [
    "PROFILES",
    "PROFILE_ENV",
    "AccessibilitySection",
    "BankSection",
    "DevicesSection",
    "FleetSection",
    "GpioSection",
    "MqttSection",
    "PurseSection",
    "TerminalConfig",
    "TerminalSection",
    "TimeoutsSection",
    "load_config",
]

# FORECOURT_PROFILE picks the default device URLs, as GPIOZERO_PIN_FACTORY picks gpiozero's pins: "pi"
# (the terminal's own hardware, the default) or "sim" (in-process simulated devices, for a desktop or CI).
# Keys set in [devices] win over either.
PROFILE_ENV = "FORECOURT_PROFILE"
PROFILES: dict[str, dict[str, str]] = {
    "pi": {},
    "sim": {"pump_line": "sim://", "card_reader": "memory://", "printer": "memory://", "audio": "memory://"},
}


def _profile(name: str | None) -> dict[str, str]:
    chosen = name if name is not None else os.environ.get(PROFILE_ENV, "") or "pi"
    if chosen not in PROFILES:
        raise ConfigError(f"unknown profile {chosen!r} (known: {', '.join(PROFILES)})", key=PROFILE_ENV)
    return PROFILES[chosen]


@dataclass(frozen=True)
class TerminalSection:
    id: str
    station: str
    state_dir: str = "."
    language: str = "en"
    # card programs offered, by name (firmware.programs.PROGRAMS); bank runs only with an acquirer
    programs: tuple[str, ...] = ("fleet", "bank")


@dataclass(frozen=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = 1883
    keepalive: int = 15
    # the most sales (first sends and resends) a terminal publishes per second when it forwards a backlog
    sales_per_second: float = 10.0
    # TLS with the device's certificate (written by `forecourt provision init`); files relative to state_dir
    tls: bool = False
    ca: str = "ca.pem"
    cert: str = "device.pem"
    key: str = "device.key"


@dataclass(frozen=True)
class DevicesSection:
    card_reader: str = "pcsc://Forecourt Virtual PCD 00 00"
    # the purse SAM's reader (docs/chip-wallet-keys.md), e.g. "pcsc://Forecourt Virtual PCD 00 01"; "" = none
    sam_reader: str = ""
    pump_line: str = "/dev/ttyAMA0"
    pumps: tuple[int, ...] = (1,)
    # further lines, each serving the pumps its URL's pumps= option names (docs/pulser.md), e.g.
    # "node:///dev/ttyAMA1?pumps=3" or "pulser://?pumps=4&pulse=17&relay=27&nozzle=22"; pump_line: the rest
    pump_lines: tuple[str, ...] = ()
    gpio: str = ""               # GPIO pins (docs/gpio.md): rpigpio://, lgpio://, sim://, tcp://; "" = none
    pump_baudrate: int = 9600    # DART lines run at 9600 or 19200 baud, 8O1
    # decimal places of volume, amount and unit price, e.g. [3, 0, 0]; empty: each pump's own (DART DC7)
    pump_decimals: tuple[int, ...] = ()
    printer: str = "file:///dev/usb/lp0"
    panel: str = "pygame://"
    pin_key: str = "pek.hex"     # AES PIN-encryption key file, relative to state_dir
    # spoken prompts on the headphone output (docs/accessibility.md): espeak://?device=<ALSA name>, "" = none
    audio: str = "espeak://"


@dataclass(frozen=True)
class GpioSection:
    """Pins of the terminal's own switches and signals on devices.gpio, by BCM number; 0 = not fitted.
    A switch is active (door open, housing opened, paper low) at a high level unless named in active_low."""

    door: int = 0
    tamper: int = 0
    paper_low: int = 0
    led_ready: int = 0
    led_fault: int = 0
    buzzer: int = 0
    tx_enable: int = 0           # RS-485 driver enable of pump_line's transceiver (no automatic direction)
    active_low: tuple[str, ...] = ()
    debounce_ms: int = 20


@dataclass(frozen=True)
class TimeoutsSection:
    auth: float = 10.0            # MQTT request/response to the registry
    pin_entry: float = 60.0
    nozzle_lift: float = 120.0
    filling: float = 900.0
    pump_offline: float = 120.0   # how long a sale waits for a pump that stopped answering
    sale_ack: float = 10.0


@dataclass(frozen=True)
class BankSection:
    """Bank cards (EMV chip, magstripe fallback) through an acquirer; off while acquirer is empty."""

    acquirer: str = ""               # tcp://host:port, ISO 8583 with a 2-byte length header
    emv_config: str = "emv.toml"     # AIDs, TACs, CA keys; relative to state_dir
    # AES DUKPT initial key and key id of the PIN pad (an HSM-loaded PED in production)
    dukpt: str = "dukpt.toml"
    magstripe: str = ""              # magnetic stripe head of the hybrid reader: tcp://host:port, "" = none
    merchant_id: str = "FORECOURT000001"
    name_location: str = "Forecourt self-service"
    currency: str = "978"            # ISO 4217 numeric
    preauth_cents: int = 15000       # the pre-authorization asked for: the most one filling may cost
    response_timeout: float = 15.0   # per acquirer message
    # the acquirer's ISO 8583 dialect by name (contracts.iso8583_spec.DIALECTS); the default is strict 1987
    dialect: str = "afd-1987"
    acquirer_id: str = "000000"      # field 32, acquiring institution id code, n..11


@dataclass(frozen=True)
class FleetSection:
    """The network's own fleet cards: a swiped number with one of these prefixes (issuer identification
    numbers, ISO/IEC 7812-1; 7 is the petroleum industry's major industry identifier) is a fleet card."""
    iins: tuple[str, ...] = ("707700",)


@dataclass(frozen=True)
class PurseSection:
    """Chip wallets (docs/chip-wallets.md): the most one filling may reserve on a card, per wallet unit;
    seconds between tries to hand records waiting for the registry over."""
    most_cents: int = 15000
    most_cl: int = 10000
    forward_every: float = 10.0


@dataclass(frozen=True)
class LoyaltySection:
    """The network's loyalty cards: a chip's card record or a swiped number with one of these prefixes."""
    iins: tuple[str, ...] = ("707701",)


@dataclass(frozen=True)
class AccessibilitySection:
    """docs/accessibility.md: what the CLEAR key adds to a timed prompt."""

    more_time: float = 30.0       # seconds per press; the time left never exceeds the prompt's timeout + this


@dataclass(frozen=True)
class TerminalConfig:
    terminal: TerminalSection
    mqtt: MqttSection = field(default_factory=MqttSection)
    devices: DevicesSection = field(default_factory=DevicesSection)
    timeouts: TimeoutsSection = field(default_factory=TimeoutsSection)
    bank: BankSection = field(default_factory=BankSection)
    accessibility: AccessibilitySection = field(default_factory=AccessibilitySection)
    fleet: FleetSection = field(default_factory=FleetSection)
    loyalty: LoyaltySection = field(default_factory=LoyaltySection)
    purse: PurseSection = field(default_factory=PurseSection)
    gpio: GpioSection = field(default_factory=GpioSection)
    source: str = ""

    @property
    def state_dir(self) -> Path:
        base = Path(self.source).parent if self.source else Path.cwd()
        return (base / self.terminal.state_dir).resolve()


def _coerce(section: str, key: str, value: Any, kind: Any) -> Any:
    where = f"{section}.{key}"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == tuple[int, ...]:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                  for v in value):
            raise ConfigError(f"{where} must be a list of integers", key=where)
        return tuple(value)
    if kind == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings", key=where)
        return tuple(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{where} must be {kind.__name__}, got {type(value).__name__}", key=where)
    if kind is str and any(ord(c) < 0x20 or c == "\x7f" for c in value):
        # a NUL makes every path or URL call raise ValueError far from here; a line break splits a log line
        raise ConfigError(f"{where} holds a control character", key=where)
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number", key=where)
    return value


MAX_TIMEOUT = 86_400.0       # seconds: no wait in a sale is meant to last a day
MAX_SALES_PER_SECOND = 1000.0  # a terminal's sync never needs more; beyond it a typo floods the broker


def _check_timeout(where: str, value: float) -> None:
    if not 0 < value <= MAX_TIMEOUT:
        raise ConfigError(f"{where} must be a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}",
                          key=where)


# tcp://host:port, the host a name, an IPv4 address or an [IPv6] literal (RFC 3986 3.2.2)
_TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", re.ASCII)


def _check_tcp(url: str, where: str) -> None:
    """A network peer's URL: tcp://host:port, port 1..65535. (Which scheme a device may use is checked
    against drivers.devices.BACKENDS where the devices are opened; firmware reaches drivers only there.)"""
    match = _TCP.fullmatch(url)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise ConfigError(f"{where} must be tcp://host:port with a port 1..65535", key=where)


def _check_network(cfg: TerminalConfig) -> None:
    mqtt = cfg.mqtt
    if not mqtt.host or any(c.isspace() for c in mqtt.host) or "/" in mqtt.host:
        raise ConfigError("mqtt.host must be a host name or address", key="mqtt.host")
    if not 1 <= mqtt.port <= 65535:
        raise ConfigError("mqtt.port must be 1..65535", key="mqtt.port")
    if not 1 <= mqtt.keepalive <= 65535:           # MQTT 3.1.2.10: a 16-bit number of seconds; 0 = never
        raise ConfigError("mqtt.keepalive must be 1..65535 seconds", key="mqtt.keepalive")
    if not 0.1 <= mqtt.sales_per_second <= MAX_SALES_PER_SECOND:
        raise ConfigError(f"mqtt.sales_per_second must be 0.1..{MAX_SALES_PER_SECOND:.0f}",
                          key="mqtt.sales_per_second")
    for f in dataclasses.fields(TimeoutsSection):
        _check_timeout(f"timeouts.{f.name}", getattr(cfg.timeouts, f.name))
    _check_timeout("bank.response_timeout", cfg.bank.response_timeout)
    _check_timeout("accessibility.more_time", cfg.accessibility.more_time)
    if cfg.bank.acquirer:
        _check_tcp(cfg.bank.acquirer, "bank.acquirer")
    for where, url in (("bank.magstripe", cfg.bank.magstripe), ("devices.printer", cfg.devices.printer),
                       ("devices.panel", cfg.devices.panel)):
        if url.lower().startswith("tcp:"):
            _check_tcp(url, where)


def _check_values(cfg: TerminalConfig) -> None:
    if not cfg.terminal.programs or len(set(cfg.terminal.programs)) != len(cfg.terminal.programs):
        raise ConfigError("terminal.programs must list distinct program names", key="terminal.programs")
    if cfg.devices.pump_baudrate not in (9600, 19200):
        raise ConfigError("devices.pump_baudrate must be 9600 or 19200", key="devices.pump_baudrate")
    bad = [p for p in cfg.devices.pumps if not 1 <= p <= 32]
    if bad or not cfg.devices.pumps or len(set(cfg.devices.pumps)) != len(cfg.devices.pumps):
        raise ConfigError("devices.pumps must list distinct pump numbers 1..32", key="devices.pumps")
    if cfg.devices.pump_decimals and (len(cfg.devices.pump_decimals) != 3
                                      or not all(0 <= d <= 4 for d in cfg.devices.pump_decimals)):
        raise ConfigError("devices.pump_decimals must be three places 0..4: volume, amount, price",
                          key="devices.pump_decimals")
    _check_network(cfg)
    _check_gpio(cfg)
    if not all(re.fullmatch(r"[0-9]{1,11}", iin) for iin in cfg.fleet.iins):
        raise ConfigError("fleet.iins must list card number prefixes of 1..11 digits", key="fleet.iins")
    if not all(re.fullmatch(r"[0-9]{1,11}", iin) for iin in cfg.loyalty.iins):
        raise ConfigError("loyalty.iins must list card number prefixes of 1..11 digits", key="loyalty.iins")
    _check_timeout("purse.forward_every", cfg.purse.forward_every)
    if not 0 < cfg.purse.most_cents <= 10**7 or not 0 < cfg.purse.most_cl <= 10**6:
        raise ConfigError("purse.most_cents and purse.most_cl must be above 0 (at most 10^7 and 10^6)",
                          key="purse")
    bank = cfg.bank
    if not 0 < bank.preauth_cents < 10**8:
        raise ConfigError("bank.preauth_cents must be positive", key="bank.preauth_cents")
    if len(bank.currency) != 3 or not bank.currency.isdigit():
        raise ConfigError("bank.currency must be an ISO 4217 numeric code", key="bank.currency")
    if bank.dialect not in DIALECTS:
        raise ConfigError(f"unknown bank.dialect {bank.dialect!r} (known: {', '.join(DIALECTS)})",
                          key="bank.dialect")
    if not re.fullmatch(r"[0-9]{1,11}", bank.acquirer_id):
        raise ConfigError("bank.acquirer_id must be 1..11 digits (ISO 8583 field 32, n..11)",
                          key="bank.acquirer_id")
    if bank.acquirer:
        # ISO 8583 fields 41 (ans 8) and 42 (ans 15): a longer id would be cut and could collide
        if not 0 < len(cfg.terminal.id) <= 8 or not cfg.terminal.id.isascii():
            raise ConfigError("terminal.id must be 1..8 ASCII characters for the acquirer", key="terminal.id")
        if not 0 < len(bank.merchant_id) <= 15 or not bank.merchant_id.isascii():
            raise ConfigError("bank.merchant_id must be 1..15 ASCII characters", key="bank.merchant_id")


def _check_gpio(cfg: TerminalConfig) -> None:
    pins = {f.name: getattr(cfg.gpio, f.name) for f in dataclasses.fields(GpioSection)
            if f.type == "int" and f.name != "debounce_ms"}
    fitted = [n for n in pins.values() if n]
    if any(not 2 <= n <= 27 for n in fitted) or len(set(fitted)) != len(fitted):
        raise ConfigError("gpio pins must be distinct BCM numbers 2..27 (0 = not fitted)", key="gpio")
    if fitted and not cfg.devices.gpio:
        raise ConfigError("gpio pins are set but devices.gpio names no GPIO backend", key="devices.gpio")
    unknown = sorted(set(cfg.gpio.active_low) - set(pins))
    if unknown:
        raise ConfigError(f"gpio.active_low names unknown pins: {', '.join(unknown)}", key="gpio.active_low")
    if not 0 <= cfg.gpio.debounce_ms <= 1000:
        raise ConfigError("gpio.debounce_ms must be 0..1000", key="gpio.debounce_ms")


def _section(name: str, cls: type, raw: Any, defaults: dict[str, str] | None = None) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table", key=name)
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown key '{key}' in [{name}] (known: {', '.join(sorted(known))})",
                              key=f"{name}.{key}")
    values = {**(defaults or {}), **{k: _coerce(name, k, v, hints[k]) for k, v in raw.items()}}
    try:
        return cls(**values)
    except TypeError as exc:
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in raw and f.default is dataclasses.MISSING)
        raise ConfigError(f"[{name}] is missing {', '.join(missing)}", key=name) from exc


_SECTIONS = {"terminal": TerminalSection, "mqtt": MqttSection, "devices": DevicesSection,
             "timeouts": TimeoutsSection, "bank": BankSection, "accessibility": AccessibilitySection,
             "fleet": FleetSection, "loyalty": LoyaltySection, "purse": PurseSection, "gpio": GpioSection}


def load_config(path: str | os.PathLike[str], *, profile: str | None = None) -> TerminalConfig:
    """Read and validate a terminal TOML file; device defaults come from `profile` (else $FORECOURT_PROFILE,
    else "pi")."""
    device_defaults = _profile(profile)
    p = Path(path)
    raw = read_toml(p, "config")
    for name in raw:
        if name not in _SECTIONS:
            raise ConfigError(f"unknown section [{name}] in {p} (known: {', '.join(_SECTIONS)})",
                              key=name)
    if "terminal" not in raw:
        raise ConfigError(f"{p} has no [terminal] section", key="terminal")
    raw.setdefault("devices", {})
    parts = {name: _section(name, cls, raw[name], device_defaults if name == "devices" else None)
             for name, cls in _SECTIONS.items() if name in raw}
    cfg = TerminalConfig(**parts, source=str(p.resolve()))
    _check_values(cfg)
    return cfg
