"""The terminal process: builds its devices and programs from configuration, recovers, then serves
cards. This is the composition root: the only place in firmware/ that imports drivers."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from contracts.errors import CardError
from firmware.attendant.setup import build_desk
from firmware.config import TerminalConfig
from firmware.deviceops import DeviceOps, last_will
from firmware.hostlink import HostLink
from firmware.keyfile import check_private, load_or_create_key
from firmware.programs import build_adjuncts, build_programs
from firmware.programs.build import ProgramDeps
from firmware.sale.runner import SaleRunner
from firmware.sale.world import SaleTimeouts, SaleWorld
from firmware.terminal.cardholder import PanelCardholder
from firmware.terminal.crashpoint import open_journal
from firmware.terminal.dukpt import load_dukpt
from firmware.terminal.hardware import build_cabinet, open_pumps, pump_progress, pump_threads
from firmware.terminal.liveness import Liveness
from firmware.terminal.serve import Loop, apply_prices, card_in, serve
from firmware.updater import RESTART_EXIT, Updater, WatchedConfigs

__all__ = ["run_terminal"]

log = logging.getLogger(__name__)


def _spawn(name: str, work: Callable[[], None]) -> None:
    threading.Thread(target=work, name=name, daemon=True).start()


def _lifecycle(programs: list[Any], verb: str) -> None:
    for program in programs:
        step = getattr(program, verb, None)
        if callable(step):
            step()


def _open_sam(url: str) -> Any:
    """The SAM's reader, its card connected (it stays in for the terminal's life); None without one, or when
    it does not answer (logged: no chip purse sales until it does and the terminal restarts)."""
    if not url:
        return None
    from drivers.devices import open_device

    reader = open_device("card_reader", url, key="devices.sam_reader")
    try:
        reader.connect()
    except CardError as exc:
        log.error("SAM does not answer: no chip purse sales", extra={"error": str(exc)})
        return None
    return reader


def _sale_allowance(cfg: TerminalConfig) -> float:
    """The longest a card's turn may legitimately hold the loop: every wait of a sale (a chip purse keeps
    the card in until the filling ends), each prompt's extra time asked twice, and five minutes more."""
    t = cfg.timeouts
    waits = t.auth * 4 + t.pin_entry + t.nozzle_lift + t.filling + t.pump_offline + t.sale_ack
    return waits + cfg.bank.response_timeout * 2 + cfg.accessibility.more_time * 2 + 300.0


def run_terminal(cfg: TerminalConfig, stop: threading.Event) -> None:
    from drivers.devices import open_device
    from drivers.mqtt import MqttLink, TlsFiles
    from drivers.pinpad import PinPad, load_pin_key

    state = cfg.state_dir
    state.mkdir(parents=True, exist_ok=True)
    tid, dev = cfg.terminal.id, cfg.devices
    pin_key = load_pin_key(check_private(state / dev.pin_key))
    journal = open_journal(state / "journal.db")
    mq = cfg.mqtt
    tls = (TlsFiles(state / mq.ca, state / mq.cert, check_private(state / mq.key))     # the device's own
           if mq.tls else None)
    # a client id no other certificate can guess: the broker drops a client when another takes its id
    client_id = f"forecourt-terminal-{tid}-{secrets.token_hex(6)}"
    link = MqttLink(cfg.mqtt.host, cfg.mqtt.port, client_id, keepalive=cfg.mqtt.keepalive,
                    will=last_will(tid), tls=tls)
    configs = WatchedConfigs(state, terminal=tid)
    host = HostLink(link, journal, tid, cfg.terminal.station, pin_key=pin_key, auth_timeout=cfg.timeouts.auth,
                    ack_timeout=cfg.timeouts.sale_ack, sales_per_second=cfg.mqtt.sales_per_second,
                    configs=configs)
    restart = threading.Event()      # a remote restart command: stop, and exit for the supervisor
    ops = DeviceOps(link, journal, host, tid, software_version=lambda: updater.version,
                    config_version=lambda: configs.version, stop=stop, restart=restart)
    # releases are signed by a configuration key; a rollback or a refusal is an alarm (docs/updates.md),
    # sent through the device's event outbox
    updater = Updater(state, link, tid, configs.trusted, event=ops.event)
    host.event_sink = ops.event       # a configuration refused while offline waits in the outbox too
    panel = open_device("panel", dev.panel, language=cfg.terminal.language)
    if dev.audio:     # spoken prompts, off until the keypad gesture (docs/accessibility.md)
        from drivers.panel.speaking import SpeakingPanel

        panel = SpeakingPanel(panel, open_device("audio", dev.audio, key="devices.audio"),
                              language=cfg.terminal.language)
    reader = open_device("card_reader", dev.card_reader)
    sam = _open_sam(dev.sam_reader)
    gpio = open_device("gpio", dev.gpio) if dev.gpio else None
    pumps = open_pumps(dev, state, gpio, cfg.gpio, ops.event)
    printer = open_device("printer", dev.printer)
    dukpt = load_dukpt(state / cfg.bank.dukpt, journal) if cfg.bank.acquirer else None
    pinpad = PinPad(panel, pin_key, dukpt, more_time=cfg.accessibility.more_time)
    # a stripe head serves bank cards and the network's fleet stripe cards alike
    stripes = (open_device("magstripe", cfg.bank.magstripe or "none://")
               if cfg.bank.acquirer or cfg.bank.magstripe else None)
    port = PanelCardholder(panel, pinpad, stripes, timeout=cfg.timeouts.pin_entry, home=cfg.terminal.language,
                           more_time=cfg.accessibility.more_time)
    deps = ProgramDeps(
        config=cfg, journal=journal, registry=host, pinpad=pinpad, magstripe=stripes is not None,
        open_device=lambda kind, url: open_device(kind, url, response_timeout=cfg.bank.response_timeout),
        sam=sam)
    programs = build_programs(cfg.terminal.programs, deps)
    # the idle screen's voucher key asks for a code when the voucher program runs
    port.code_digits = next((getattr(p, "code_digits", 0) for p in programs if hasattr(p, "code_digits")), 0)
    adjuncts = build_adjuncts(cfg.terminal.programs, deps)
    world = SaleWorld(
        terminal=tid, station_id=cfg.terminal.station, pump_numbers=dev.pumps, programs=programs, port=port,
        display=port, pumps=pumps, printer=printer, journal=journal, station=lambda: host.station,
        token_key=load_or_create_key(state / "token.key"), spawn=_spawn, on_completed=host.kick,
        timeouts=SaleTimeouts(nozzle_lift=cfg.timeouts.nozzle_lift, filling=cfg.timeouts.filling,
                              pump_offline=cfg.timeouts.pump_offline), adjuncts=adjuncts)
    runner = SaleRunner(world)
    offline = any(getattr(p, "sells_offline", False) for p in programs)
    cabinet = build_cabinet(cfg, gpio, journal, ops.event)
    live = Liveness()                   # systemd's watchdog (docs/raspberry-pi.md): fed while all is alive
    for i, thread in enumerate(pump_threads(pumps)):
        live.watch(f"pump-line-{i + 1}", thread)
    for i, turns in enumerate(pump_progress(pumps)):
        live.watch_progress(f"pump-line-{i + 1}-rounds", turns, max_age=30.0)
    live.watch("heartbeat", ops.thread)
    loop = Loop(runner=runner, port=port, reader=reader, stripes=stripes, pumps=pumps, host=host,
                pump_numbers=dev.pumps, sells_offline=offline,
                idle=lambda: ops.idle() or updater.idle(lambda: not runner.needs_recovery()),
                screen_fields=ops.screen_fields,
                desk=build_desk(runner, port, host, reader, stripes, card_in, panel.read_key,
                                timeout=cfg.timeouts.pin_entry),
                cabinet=cabinet, beat=lambda allowance: live.beat("main", allowance),
                sale_allowance=_sale_allowance(cfg))
    panel.show("starting")
    _lifecycle(programs, "start")
    link.start()
    host.start_sync()
    updater.start(ready=lambda: link.connected.is_set() and configs.received.is_set())
    ops.start()
    cabinet.start()
    try:
        link.wait_connected(3.0)
        log.info("terminal started", extra={"terminal": tid, "online": host.online,
                                            "programs": ",".join(p.name for p in programs)})
        runner.recover()               # TimeoutStartSec= bounds this; the watchdog counts from READY=1
        apply_prices(host, pumps, dev.pumps)
        live.beat("main")
        live.ready()
        live.start()
        serve(loop, stop)
    finally:
        live.stopping()
        ops.stop()
        updater.stop()
        _lifecycle(programs, "close")
        host.stop_sync()
        link.stop()
        pumps.close()
        cabinet.close()
        if gpio is not None:
            gpio.close()
        panel.close()
        if stripes is not None:
            stripes.close()
        journal.close()
        log.info("terminal stopped", extra={"terminal": tid})
    if updater.restart_due.is_set() or restart.is_set():
        raise SystemExit(RESTART_EXIT)      # the supervisor starts the terminal (the version now current)
