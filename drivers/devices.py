"""Every device is opened by URL through one table: kind -> URL scheme -> "module:factory".

Modules are imported only when their scheme is used, so pygame, pyscard or python-escpos load only on a
device that has that hardware. A factory takes the parsed URL and keyword options. A new backend is a new
module plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from contracts.errors import ConfigError, MissingComponent
from drivers.url import DeviceUrl, parse_url

__all__ = ["BACKENDS", "CONFIG_KEYS", "open_device"]

_DART_SERIAL = "drivers.pump:open_dart_line"

BACKENDS: dict[str, dict[str, str]] = {
    # DART pumps on an RS-485 line; any pyserial URL (pyserial docs, "URL Handlers"): a device path,
    # socket://, rfc2217://, loop://, spy:// (hex dump for the bench), hwgrep://, alt://
    "pump_line": {
        "": _DART_SERIAL, "socket": _DART_SERIAL, "rfc2217": _DART_SERIAL, "loop": _DART_SERIAL,
        "spy": _DART_SERIAL, "hwgrep": _DART_SERIAL, "alt": _DART_SERIAL,
        "sim": "drivers.pump.sim_line:open_sim_line",          # simulated DART pumps on a pty
        # pulser dispensers (docs/pulser.md): pulse meter, relays and nozzle switch on the terminal's GPIO,
        # or behind a pump node (a microcontroller) on a UART; nodesim:// runs simulated nodes on ptys
        "pulser": "drivers.pulser.gpio_line:open_pulser_line",
        "node": "drivers.pulser.node_line:open_node_line",
        "nodesim": "drivers.pulser.node_sim:open_node_sim_line",
    },
    # GPIO pins (docs/gpio.md): RPi.GPIO (rpi-lgpio provides the same module on a Pi 5), lgpio, the pins
    # simulated in this process (sim://) or on the host simulator's GPIO header (tcp://host:port)
    "gpio": {
        "rpigpio": "drivers.gpio.rpigpio:open_rpigpio_pins",
        "lgpio": "drivers.gpio.lgpio_pins:open_lgpio_pins",
        "sim": "drivers.gpio.sim:open_sim_pins",
        "tcp": "drivers.gpio.remote:open_remote_pins",
    },
    "card_reader": {
        "pcsc": "drivers.cardreader.pcsc:open_pcsc_reader",
        "memory": "drivers.cardreader.memory:open_memory_reader",
    },
    "printer": {
        "tcp": "drivers.printer.escpos_printer:open_network_printer",
        "file": "drivers.printer.escpos_printer:open_file_printer",
        "memory": "drivers.printer.escpos_printer:open_memory_printer",
    },
    "panel": {
        "tcp": "drivers.panel.socket:open_socket_panel",
        "pygame": "drivers.panel.pygame_panel:open_pygame_panel",
    },
    "magstripe": {
        "tcp": "drivers.msr.reader:open_tcp_msr",
        "memory": "drivers.msr.reader:open_memory_msr",
        "none": "drivers.msr.reader:open_no_msr",
    },
    "acquirer": {
        "tcp": "drivers.acquirer.tcp:open_acquirer_link",
    },
    "audio": {"espeak": "drivers.audio.espeak:open_espeak",          # spoken prompts, docs/accessibility.md
              "memory": "drivers.audio.memory:open_memory_speaker"},
}

# The terminal configuration key of each kind, named in errors.
CONFIG_KEYS = {
    "pump_line": "devices.pump_line", "card_reader": "devices.card_reader", "printer": "devices.printer",
    "panel": "devices.panel", "magstripe": "bank.magstripe", "acquirer": "bank.acquirer",
    "audio": "devices.audio", "gpio": "devices.gpio",
}

# Third-party import names -> what to install (Debian package where pip alone is not enough).
_INSTALL = {
    "pygame": "pip install pygame",
    "smartcard": "pip install pyscard (Debian: python3-pyscard, and pcscd)",
    "escpos": "pip install python-escpos",
    "serial": "pip install pyserial",
    "RPi": "pip install RPi.GPIO (on a Raspberry Pi 5: pip install rpi-lgpio)",
    "lgpio": "pip install lgpio (Debian: python3-lgpio)",
    "paho": "pip install paho-mqtt",
}


def _missing(kind: str, url: DeviceUrl, exc: ImportError) -> MissingComponent | None:
    top = (exc.name or "").split(".")[0]
    if top not in _INSTALL:
        return None
    return MissingComponent(f"{top} is not installed: {_INSTALL[top]}", key=url.key, kind=kind,
                            scheme=url.scheme)


def open_device(kind: str, url: str, *, key: str | None = None, **options: Any) -> Any:
    """Open the `kind` device at `url`; options go to the backend's factory.

    Unknown kinds or schemes raise ConfigError naming the key and listing what is known; a hardware
    library that is not installed raises MissingComponent saying what to install.
    """
    schemes = BACKENDS.get(kind)
    if schemes is None:
        raise ConfigError(f"unknown device kind {kind!r} (known: {', '.join(sorted(BACKENDS))})", kind=kind)
    parsed = parse_url(url, key=key or CONFIG_KEYS.get(kind, kind))
    target = schemes.get(parsed.scheme)
    if target is None:
        known = ", ".join(f"{s}://" if s else "a device path" for s in sorted(schemes))
        what = f"scheme {parsed.scheme}://" if parsed.scheme else "without a scheme"
        raise ConfigError(f"{kind} URL {what} is not supported (known: {known})", key=parsed.key)
    module_name, _, factory = target.partition(":")
    try:    # the backend's hardware library is imported here, or by the factory on first use
        return getattr(importlib.import_module(module_name), factory)(parsed, **options)
    except ImportError as exc:
        missing = _missing(kind, parsed, exc)
        if missing is None:
            raise
        raise missing from exc
