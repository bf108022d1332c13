"""The terminal process: builds its devices from configuration, recovers, then serves cards."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from firmware import messages as m
from firmware.bank_setup import load_dukpt, open_bank
from firmware.config import TerminalConfig
from firmware.errors import CardError, PumpError
from firmware.hostlink import HostLink
from firmware.journal import Journal
from firmware.pump import PumpState
from firmware.sale import Devices, SaleFlow

__all__ = ["load_token_key", "run_terminal"]

log = logging.getLogger(__name__)


def load_token_key(path: Path) -> bytes:
    """The terminal's key for card tokens; created on first start."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _apply_prices(host: HostLink, pumps: Devices, numbers: tuple[int, ...], *,
                  only_unprogrammed: bool = False) -> None:
    prices = (host.config or {}).get("prices", [])
    for pump in numbers:
        if only_unprogrammed and pumps.pumps.status(pump).state is not PumpState.NOT_PROGRAMMED:
            continue
        table = {p["nozzle"]: p["price_milli"] for p in prices if p["pump"] == pump}
        if not table:
            continue
        try:
            if pumps.pumps.status(pump).state in (PumpState.AUTHORIZED, PumpState.FILLING):
                continue   # a pump takes no price change mid-sale; the next config push retries
            pumps.pumps.set_prices(pump, table)
        except PumpError as exc:
            log.warning("price update failed", extra={"pump": pump, "error": str(exc)})


def run_terminal(cfg: TerminalConfig, stop: threading.Event) -> None:
    # Drivers are imported here, at the composition root, so the domain modules stay free of them.
    from drivers.cardreader import open_reader
    from drivers.mqtt import MqttLink
    from drivers.panel import open_panel
    from drivers.pinpad import PinPad, load_pin_key
    from drivers.printer import open_printer
    from drivers.pump import open_pump_controller

    state = cfg.state_dir
    state.mkdir(parents=True, exist_ok=True)
    tid = cfg.terminal.id
    pin_key = load_pin_key(state / cfg.devices.pin_key)
    journal = Journal(state / "journal.db")
    status_topic = m.TOPICS["status"].format(terminal=tid)
    link = MqttLink(cfg.mqtt.host, cfg.mqtt.port, f"forecourt-terminal-{tid}", keepalive=cfg.mqtt.keepalive,
                    will=(status_topic, b"offline"))
    host = HostLink(link, journal, tid, cfg.terminal.station)
    def announce(up: bool) -> None:
        if up:
            link.publish(status_topic, b"online", retain=True)

    link.on_state(announce)
    panel = open_panel(cfg.devices.panel, cfg.terminal.language)
    reader = open_reader(cfg.devices.card_reader)
    pumps = open_pump_controller(cfg.devices.pump_line, cfg.devices.pumps, baudrate=cfg.devices.pump_baudrate)
    printer = open_printer(cfg.devices.printer)
    dukpt = load_dukpt(state / cfg.bank.dukpt, journal) if cfg.bank.acquirer else None
    pinpad = PinPad(panel, pin_key, dukpt)
    devices = Devices(reader=reader, panel=panel, pinpad=pinpad, pumps=pumps, printer=printer)
    token_key = load_token_key(state / "token.key")
    flow = SaleFlow(terminal=tid, station=cfg.terminal.station, pumps=cfg.devices.pumps, devices=devices,
                    journal=journal, host=host, token_key=token_key, timeouts=cfg.timeouts,
                    language=cfg.terminal.language)
    closers: list[Any] = []
    if cfg.bank.acquirer and dukpt is None:
        log.error("DUKPT keys exhausted: bank cards are off until the PIN pad is re-keyed")
    elif cfg.bank.acquirer:
        flow.bank, closers = open_bank(cfg, flow, pinpad, token_key)
        closers[0].start()      # the advice forwarder
    panel.show("starting")
    link.start()
    host.start_sync()
    try:
        link.wait_connected(3.0)
        log.info("terminal started", extra={"terminal": tid, "online": host.online})
        flow.recover()
        _apply_prices(host, devices, cfg.devices.pumps)
        _serve(cfg, flow, host, devices, journal, stop)
    finally:
        for part in closers:
            if hasattr(part, "stop"):
                part.stop()
            else:
                part.close()
        host.stop_sync()
        link.stop()
        pumps.close()
        panel.close()
        journal.close()
        log.info("terminal stopped", extra={"terminal": tid})


def _serve(cfg: TerminalConfig, flow: SaleFlow, host: HostLink, dev: Devices, journal: Journal,
           stop: threading.Event) -> None:
    shown = None
    last_recover = last_check = time.monotonic()
    while not stop.is_set():
        if host.config_changed.is_set():
            host.config_changed.clear()
            _apply_prices(host, dev, cfg.devices.pumps)
        if time.monotonic() - last_check > 1.0:
            _apply_prices(host, dev, cfg.devices.pumps, only_unprogrammed=True)   # a pump that restarted
            last_check = time.monotonic()
        # without the registry fleet cards cannot be authorized; bank cards can, once prices are known
        screen = ("idle" if host.online else
                  "idle_bank_only" if flow.bank is not None and flow.pump_numbers_priced() else "offline")
        if screen != shown:
            dev.panel.show(screen)
            shown = screen
        if time.monotonic() - last_recover > 30 and journal.open_sales():
            flow.recover(pump_wait=0.0)   # sales a pump outage left open
            last_recover = time.monotonic()
        try:
            if not dev.reader.wait_for_card(0.5):
                track = flow.bank.swiped() if flow.bank is not None else None
                if track is not None:
                    flow.run_swipe(track)
                    time.sleep(3.0)          # the outcome stays readable; no card to wait for
                    shown = None
                continue
            try:
                flow.run_sale()
            except CardError:
                raise
            except Exception:   # one sale's surprise must not stop the terminal; its journal row stays
                log.exception("sale failed")
                dev.panel.show("card_error")
            shown = None
            # the outcome (declined and why, lift nozzle) stays readable until the card leaves, or 3 s
            if not dev.reader.wait_for_removal(3.0):
                dev.panel.show("remove_card")
                while not stop.is_set() and not dev.reader.wait_for_removal(0.5):
                    pass
        except CardError as exc:
            log.warning("card reader problem", extra={"error": str(exc)})
            shown = None
            time.sleep(0.5)
        finally:
            try:
                dev.reader.disconnect()
            except CardError:
                pass
