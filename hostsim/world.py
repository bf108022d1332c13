"""The simulated forecourt: real mosquitto, real pcscd with a virtual card, a DART pump line on a pty,
a network receipt printer, the registry and the terminal as separate processes. All on loopback.

The broker speaks TLS with client certificates and the ACL (registry.broker): the simulator makes a fleet
authority in STATE/pki, the registry connects with its certificate, and the terminal is already
provisioned with a device key and certificate (device.key, device.pem, ca.pem) for the seed device.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
import tomllib
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from sqlalchemy import create_engine, select, update
from sqlalchemy.exc import OperationalError

from drivers.mqtt import TlsFiles
from drivers.pump.sim_line import DartLineSimulator
from drivers.pump.simulator import SimPump
from firmware.configstore import write_config_keys
from firmware.sale.journal import Journal
from firmware.updater import RESTART_EXIT
from hostsim.acquirer_host import AcquirerHost, Rules, approve_all
from hostsim.bank_world import BDK, make_acquirer, write_bank_files
from hostsim.card_profiles import FIXTURES, CardProfile, card_index, load_cards
from hostsim.panel_server import PanelServer
from hostsim.pcscd import PcscDaemon
from hostsim.printer_server import PrinterServer
from hostsim.pulser_site import PulserSite
from hostsim.purse_slot import PurseSlot
from hostsim.services import (
    Process,
    ServiceError,
    child_env,
    client_certificate,
    forecourt_command,
    free_port,
    start_mosquitto,
)
from hostsim.swipe_server import SwipeServer
from hostsim.vpcd import VirtualCardServer
from hostsim.web_service import WebApp
from provisioning.keys import install_pin_key
from registry.configs import config_keys
from registry.db import open_database
from registry.keyinject import install_bdk
from registry.models import Card, Device, DeviceEvent, Transaction
from registry.pki import Authority, fingerprint

__all__ = ["FIXTURES", "CardProfile", "Simulator", "card_index", "load_cards"]

def _station_pumps(seed: dict[str, Any]) -> dict[int, dict[int, tuple[str, int]]]:
    pumps: dict[int, dict[int, tuple[str, int]]] = {}
    for n in seed["nozzles"]:
        pumps.setdefault(n["pump"], {})[n["nozzle"]] = (n["product"], 0)   # prices come from the terminal
    return pumps


class Simulator:
    def __init__(self, state_dir: Path, *, flow_cl_per_s: float = 1000.0,
                 terminal_pumps: tuple[int, ...] = (1,),
                 seed: Path = FIXTURES / "seed.toml", programs: tuple[str, ...] = (),
                 web: bool = False, purse: bool = False, pulser: bool = False) -> None:
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.seed_path = seed
        self.seed = tomllib.loads(seed.read_text())
        self.device = self.seed["devices"][0]
        self.terminal_pumps = terminal_pumps
        self.programs = programs          # terminal.programs; () leaves the terminal's default
        self.pump_line = DartLineSimulator(SimPump(n, nozzles, flow_cl_per_s=flow_cl_per_s)
                                           for n, nozzles in sorted(_station_pumps(self.seed).items()))
        self.cards = VirtualCardServer()
        self.purse = PurseSlot() if purse else None      # the terminal's SAM, for chip wallets (issue 18)
        # the terminal's GPIO header and pulser pumps 3 (pump node) and 4 (own GPIO), issue 17
        self.site = PulserSite(flow_cl_per_s=min(flow_cl_per_s, 400.0)) if pulser else None
        self.site_lines = True     # the terminal drives pumps 3 and 4 as the site's pulsers (else on DART)
        self.panel = PanelServer()
        self.printer = PrinterServer()
        self.swipe = SwipeServer()
        # a scenario swaps it to make the bank decline, time out...
        self.acquirer_rules: Rules = approve_all
        self.acquirer: AcquirerHost = make_acquirer(lambda req: self.acquirer_rules(req))
        self.pcscd: PcscDaemon | None = None
        self.mosquitto: Process | None = None
        self.registry: Process | None = None
        self.terminal: Process | None = None
        self.web: WebApp | None = WebApp(self.state, self.registry_url, self.state / "registry",
                                         self.state / "pki") if web else None     # the back office
        self.broker_port = 0
        self._authority: Authority | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self, *, broker: bool = True) -> Simulator:
        try:
            self.cards.start()
            sam_port = self.purse.start().port if self.purse is not None else None
            self.pcscd = PcscDaemon(self.state / "pcscd", self.cards.port, sam_port=sam_port).start()
            self.pump_line.start()
            if self.site is not None:
                self.site.start()
            self.panel.start()
            self.printer.start()
            self.swipe.start()
            self.acquirer.start()
            self.broker_port = free_port()
            if broker:
                self.start_broker()
            self.start_registry()
            self._write_terminal_config()
            self.start_terminal()
            if self.web is not None:
                self.web.start()
        except BaseException:
            self.stop()
            raise
        return self

    def start_broker(self) -> None:
        self.mosquitto = start_mosquitto(self.state, self.broker_port, tls_dir=self.authority.directory)

    def stop_broker(self) -> None:
        if self.mosquitto is not None:
            self.mosquitto.stop()
            self.mosquitto = None

    def reload_broker(self) -> None:
        """SIGHUP: mosquitto reads its certificates, CRL and ACL again (after a revocation). Connections
        already open stay; restart the broker (stop_broker, start_broker) to drop them as well."""
        if self.mosquitto is not None:
            self.mosquitto.kill(signal.SIGHUP)

    def start_registry(self) -> None:
        reg = self.state / "registry"
        reg.mkdir(exist_ok=True)
        install_bdk(reg, BDK)          # the X9.24-3 test BDK: the registry injects DUKPT keys at enrollment
        self.registry = Process("registry", forecourt_command(
            "registry", "--db", self.registry_url, "--mqtt", f"127.0.0.1:{self.broker_port}",
            "--state-dir", str(reg), "--seed", str(self.seed_path), "--stop-list-poll", "1",
            "--tls-dir", str(self.authority.directory)), self.state / "registry.log", child_env())

    def start_terminal(self, env: dict[str, str] | None = None) -> None:
        """Start the terminal process; env adds variables (NOTIFY_SOCKET, as systemd would set)."""
        self.terminal = Process("terminal",
                                forecourt_command("terminal", "--config", str(self.terminal_config)),
                                self.state / "terminal.log", {**child_env(), **(env or {})})

    def kill_terminal(self) -> None:
        if self.terminal is not None:
            self.terminal.kill(signal.SIGKILL)
            self.terminal.stop()
            self.terminal = None

    def supervise_terminal(self) -> bool:
        """What systemd's Restart= does on the device: start the terminal again when it exited asking for
        it (firmware.updater.RESTART_EXIT, after installing or rolling back an update). True: restarted."""
        if self.terminal is None or self.terminal.poll() != RESTART_EXIT:
            return False
        self.terminal.stop()
        self.start_terminal()
        return True

    def power_cut(self) -> int:
        """SIGKILL the terminal, as a power cut would, and start it again; returns the new pid."""
        self.kill_terminal()
        self.start_terminal()
        if self.terminal is None:
            raise RuntimeError("terminal did not start")
        return self.terminal.pid

    def reconfigure_terminal(self, pumps: tuple[int, ...], *, site_lines: bool = True) -> None:
        """Restart the terminal (stopped cleanly) controlling these pumps; site_lines False puts pumps 3
        and 4 back on the DART line (the GPIO header and its switches stay)."""
        self.site_lines = site_lines
        if self.terminal is not None:
            self.terminal.stop()
            self.terminal = None
        self.terminal_pumps = pumps
        self._write_terminal_config()
        self.start_terminal()

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        for proc in (self.terminal, self.registry, self.mosquitto):
            if proc is not None:
                proc.stop()
        self.terminal = self.registry = self.mosquitto = None
        if self.pcscd is not None:
            self.pcscd.stop()
            self.pcscd = None
        for part in (self.cards, self.pump_line, self.panel, self.printer, self.swipe, self.acquirer,
                     self.purse, self.site):
            if part is not None:
                part.stop()

    def __enter__(self) -> Self:
        if self.terminal is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration ------------------------------------------------------------------------------
    @property
    def authority(self) -> Authority:
        """The fleet CA in STATE/pki: made on the first start, loaded on the next ones."""
        if self._authority is None:
            pki = self.state / "pki"
            self._authority = Authority.load(pki) if (pki / "ca.key").exists() else Authority.create(pki)
        return self._authority

    def service_tls(self, name: str) -> TlsFiles:
        """The certificate of "registry" or "claim" in the authority's directory."""
        d = self.authority.directory
        return TlsFiles(d / "ca.pem", d / f"{name}.pem", d / f"{name}.key")

    @property
    def terminal_tls(self) -> TlsFiles:
        tdir = self.terminal_config.parent
        return TlsFiles(tdir / "ca.pem", tdir / "device.pem", tdir / "device.key")

    def _provision_certificate(self) -> None:
        """The seed device's key and certificate, as enrollment leaves them (kept across restarts), and in
        the registry's device row the certificate it may revoke."""
        files = self.terminal_tls
        if files.cert.exists():
            return
        files = client_certificate(self.authority, self.device["id"], files.cert.parent, stem="device")
        self._record_certificate(files.cert.read_text())

    def _record_certificate(self, cert_pem: str, timeout: float = 30.0) -> None:
        """Certificate, fingerprint and expiry on the seed device's row, once the registry has made it (the
        registry process migrates and seeds its database; this only writes one row)."""
        path = self.state / "registry" / "registry.db"
        expires = x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc.replace(tzinfo=None)
        change = update(Device).where(Device.id == self.device["id"]).values(
            cert_pem=cert_pem, cert_fingerprint=fingerprint(cert_pem), cert_expires_at=expires)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                engine = create_engine(self.registry_url)
                try:
                    with engine.begin() as conn:
                        if conn.execute(change).rowcount:
                            return
                except OperationalError:
                    pass                                  # not migrated yet
                finally:
                    engine.dispose()
            time.sleep(0.1)
        raise ServiceError(f"the registry never made device {self.device['id']}; see registry.log")

    @property
    def pulser_pumps(self) -> tuple[int, ...]:
        """The terminal's pumps that are pulser dispensers, not on the DART line."""
        return (3, 4) if self.site is not None and self.site_lines else ()

    @property
    def registry_url(self) -> str:
        return f"sqlite:///{self.state / 'registry' / 'registry.db'}"

    @property
    def terminal_config(self) -> Path:
        return self.state / "terminal" / "terminal.toml"

    def _write_terminal_config(self) -> None:
        tdir = self.terminal_config.parent
        tdir.mkdir(exist_ok=True)
        install_pin_key(tdir, bytes.fromhex(self.device["pin_key"]))
        write_config_keys(tdir, config_keys(self.state / "registry"))     # as provisioning does
        write_bank_files(tdir)
        self._provision_certificate()
        sam = ""
        if self.purse is not None and self.pcscd is not None:
            self.purse.fit(self.registry_url, self.state / "registry", self.device["id"])
            sam = f'sam_reader = "pcsc://{self.pcscd.sam_reader_name}"\n[purse]\nforward_every = 2\n'
        if self.pcscd is None:
            raise RuntimeError("pcscd must be started before the terminal is configured")
        pumps = ", ".join(str(p) for p in self.terminal_pumps)
        site_devices = self.site.terminal_devices(lines=self.site_lines) if self.site is not None else ""
        site_gpio = self.site.terminal_gpio() if self.site is not None else ""
        named = ", ".join(f'"{p}"' for p in self.programs)
        programs = f"programs = [{named}]\n" if self.programs else ""
        self.terminal_config.write_text(f"""# written by the host simulator
[terminal]
id = "{self.device['id']}"
station = "{self.device['station']}"
state_dir = "."
{programs}
[mqtt]
host = "127.0.0.1"
port = {self.broker_port}
keepalive = 5
tls = true
ca = "ca.pem"
cert = "device.pem"
key = "device.key"

[devices]
card_reader = "pcsc://{self.pcscd.reader_name}"
pump_line = "{self.pump_line.port}"
pumps = [{pumps}]
printer = "tcp://127.0.0.1:{self.printer.port}"
panel = "tcp://127.0.0.1:{self.panel.port}"
pin_key = "pek.hex"
{site_devices}{sam}
[bank]
acquirer = "tcp://127.0.0.1:{self.acquirer.port}"
magstripe = "tcp://127.0.0.1:{self.swipe.port}"
name_location = "Forecourt Demo Station"
preauth_cents = 15000
response_timeout = 5

[timeouts]
auth = 5
nozzle_lift = 30
pump_offline = 30
{site_gpio}""")

    # -- reading back -------------------------------------------------------------------------------
    def journal(self) -> Journal:
        return Journal(self.terminal_config.parent / "journal.db")

    def registry_sale(self, sale_id: str) -> dict[str, Any] | None:
        engine, sessions = open_database(self.registry_url)
        try:
            with sessions() as s:
                tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
                if tx is None:
                    return None
                return {c.name: _plain(getattr(tx, c.name)) for c in Transaction.__table__.columns}
        finally:
            engine.dispose()

    def registry_sales(self) -> list[dict[str, Any]]:
        engine, sessions = open_database(self.registry_url)
        try:
            with sessions() as s:
                rows = s.scalars(select(Transaction).where(Transaction.device_id == self.device["id"])).all()
                return [{c.name: _plain(getattr(t, c.name)) for c in Transaction.__table__.columns}
                        for t in rows]
        finally:
            engine.dispose()

    def registry_events(self) -> list[dict[str, Any]]:
        """The terminal's events the registry stored (alarms among them), oldest first."""
        engine, sessions = open_database(self.registry_url)
        try:
            with sessions() as s:
                rows = s.scalars(select(DeviceEvent).where(DeviceEvent.device_id == self.device["id"])
                                 .order_by(DeviceEvent.id)).all()
                return [{"code": e.code, "severity": e.severity, "detail": e.detail} for e in rows]
        finally:
            engine.dispose()

    def registry_card(self, masked: str) -> dict[str, Any] | None:
        engine, sessions = open_database(self.registry_url)
        try:
            with sessions() as s:
                card = s.scalar(select(Card).where(Card.masked == masked))
                return None if card is None else {"masked": card.masked, "status": card.status,
                                                  "pin_tries": card.pin_tries}
        finally:
            engine.dispose()


def _plain(v: Any) -> Any:
    return v.isoformat() + "Z" if isinstance(v, dt.datetime) else v
