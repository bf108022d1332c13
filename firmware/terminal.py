"""The terminal process: builds its devices from configuration, recovers, then serves cards."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from contracts import messages as m
from contracts.errors import CardError, PumpError
from contracts.pump import PumpState
from firmware.bank_setup import load_dukpt, open_bank
from firmware.config import TerminalConfig
from firmware.hostlink import HostLink
from firmware.journal import Journal
from firmware.keyfile import load_or_create_key
from firmware.sale import Devices, SaleFlow

__all__ = ["run_terminal"]

log = logging.getLogger(__name__)


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
    token_key = load_or_create_key(state / "token.key")     # keyed hash of card numbers
    flow = SaleFlow(terminal=tid, station=cfg.terminal.station, pumps=cfg.devices.pumps, devices=devices,
                    journal=journal, host=host, token_key=token_key, timeouts=cfg.timeouts,
                    language=cfg.terminal.language)
    if cfg.bank.acquirer:
        # built even with the DUKPT keys used up: queued advices and held approvals still need it
        flow.bank = open_bank(cfg, flow, pinpad)
        if dukpt is None:
            log.error("DUKPT keys exhausted: bank cards are refused until the PIN pad is re-keyed")
    panel.show("starting")
    if flow.bank is not None:
        flow.bank.start()
    link.start()
    host.start_sync()
    try:
        link.wait_connected(3.0)
        log.info("terminal started", extra={"terminal": tid, "online": host.online})
        flow.recover()
        _apply_prices(host, devices, cfg.devices.pumps)
        _serve(cfg, flow, host, devices, journal, stop)
    finally:
        if flow.bank is not None:
            flow.bank.close()
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
        if time.monotonic() - last_recover > 30 and _needs_recovery(flow, journal):
            flow.recover(pump_wait=0.0)   # sales a pump outage or a failed sale left open
            last_recover = time.monotonic()
        try:
            if dev.reader.wait_for_card(0.5):
                _one_sale(flow, dev, flow.run_sale)
                # the outcome (declined and why, lift nozzle) stays readable until the card leaves, or 3 s
                if not dev.reader.wait_for_removal(3.0):
                    dev.panel.show("remove_card")
                    while not stop.is_set() and not dev.reader.wait_for_removal(0.5):
                        pass
                shown = None
                continue
            track = flow.bank.swiped() if flow.bank is not None else None
            if track is not None:
                _one_sale(flow, dev, functools.partial(flow.run_swipe, track))
                stop.wait(3.0)          # the outcome stays readable; there is no card to wait for
                shown = None
        except CardError as exc:
            log.warning("card reader problem", extra={"error": str(exc)})
            shown = None
            time.sleep(0.5)
        finally:
            try:
                dev.reader.disconnect()
            except CardError:
                pass


def _needs_recovery(flow: SaleFlow, journal: Journal) -> bool:
    return bool(journal.open_sales()) or (flow.bank is not None and flow.bank.needs_recovery())


def _one_sale(flow: SaleFlow, dev: Devices, sale: Callable[[], str | None]) -> None:
    """Run one sale; a surprise in it is logged and the terminal goes on (its journal row stays open
    for recovery). A card reader problem goes to the caller."""
    try:
        sale()
    except CardError:
        raise
    except Exception:
        log.exception("sale failed")
        dev.panel.show("card_error")
        if flow.bank is not None and flow.bank.needs_recovery():
            flow.bank.recover()         # an approval the failed sale held is given back now
