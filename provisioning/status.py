"""`forecourt provision status`: who this terminal is and how it stands - id, station, certificate subject,
fingerprint and expiry, configuration and software versions, the sync backlog and whether the broker takes
its certificate. Also the one way the provisioning tools connect as the device (selftest, rotate-cert).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from contracts import protocol
from contracts.errors import ConfigError, ForecourtError, HostUnreachable, MissingComponent
from drivers.mqtt.link import MqttLink, TlsFiles
from firmware.config import TerminalConfig
from firmware.configstore import ConfigStore
from firmware.hostlink import backlog_of
from firmware.sale.journal import Journal
from firmware.update_slots import FACTORY, Slots
from provisioning.identity import CertInfo, certificate_info

__all__ = [
    "BrokerRefused",
    "BrokerUnreachable",
    "DeviceStatus",
    "collect_status",
    "config_on_broker",
    "connect",
    "connect_as_device",
    "lines",
    "software_version",
]


def software_version(state_dir: Path | None = None) -> str:
    """The version that runs: the updater's current one in state_dir (what the heartbeat reports), else the
    forecourt package's version as installed here."""
    return Slots(state_dir).running() if state_dir is not None else FACTORY


class BrokerUnreachable(HostUnreachable, MissingComponent):
    """No connection to the broker at all (exit 3: the network or the broker is down)."""


class BrokerRefused(HostUnreachable, ConfigError):
    """The broker refused the certificate given (TLS alert or CONNACK; exit 2: the credentials are wrong)."""


def connect(host: str, port: int, client_id: str, *, tls: TlsFiles | None, timeout: float,
            identity: str) -> MqttLink:
    """A started MQTT link, connected within timeout, else BrokerRefused with the broker's reason or
    BrokerUnreachable. identity names the certificate in the error ("device", "claim")."""
    where = f"{host}:{port}"
    try:                    # fail at once, with the system's reason, when nothing listens there
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise BrokerUnreachable(f"broker {where} unreachable: {exc.strerror or exc}", broker=where) from exc
    link = MqttLink(host, port, client_id, tls=tls)
    link.start()
    deadline = time.monotonic() + timeout
    while not link.wait_connected(0.1):
        if link.refused or time.monotonic() >= deadline:     # a refusal is final: paho would only retry
            break
    else:
        return link
    reason = link.refused
    link.stop()
    if reason:
        hint = ""
        if any(word in reason.lower() for word in ("expired", "not yet valid", "bad_certificate")):
            # validity is judged by the clocks: a device's clock far off looks like a bad certificate
            hint = (f"; check this device's clock (it says {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC) "
                    "and the certificate's dates (forecourt provision status)")
        raise BrokerRefused(f"broker {where} refused the {identity} certificate: {reason}{hint}",
                            broker=where)
    raise BrokerUnreachable(f"broker {where} unreachable: no connection within {timeout:g} s", broker=where)


def connect_as_device(cfg: TerminalConfig, *, client: str, timeout: float) -> MqttLink:
    """Connected as the device ([mqtt] tls, ca, cert, key); client names the tool: the client id is
    forecourt-<client>-<id>, so the running terminal's own session is left alone."""
    state, mqtt = cfg.state_dir, cfg.mqtt
    tls = TlsFiles(state / mqtt.ca, state / mqtt.cert, state / mqtt.key) if mqtt.tls else None
    return connect(mqtt.host, mqtt.port, f"forecourt-{client}-{cfg.terminal.id}", tls=tls, timeout=timeout,
                   identity="device")


def config_on_broker(cfg: TerminalConfig, *, timeout: float, client: str) -> bytes | None:
    """Connect as the device and read its retained configuration (raw; None when none came in time)."""
    link = connect_as_device(cfg, client=client, timeout=timeout)
    got = threading.Event()
    payloads: list[bytes] = []

    def on_config(topic: str, payload: bytes, props: object) -> None:
        payloads.append(payload)
        got.set()

    try:
        link.subscribe(protocol.topic("config", terminal=cfg.terminal.id), on_config)
        got.wait(timeout)
    finally:
        link.stop()
    return payloads[0] if payloads else None


@dataclass(frozen=True)
class DeviceStatus:
    terminal: str
    station: str
    certificate: CertInfo | None
    certificate_problem: str          # why there is no certificate info ("" when there is)
    config_version: int               # 0: none yet
    software_version: str
    backlog: int                      # sales and releases the registry has not acknowledged
    oldest_unsent_s: float
    broker: str                       # "reachable (TLS)" or the reason it is not
    now: dt.datetime


def _config_version(cfg: TerminalConfig, now: dt.datetime) -> int:
    """The version the terminal's config store runs (0: none, or none it can trust)."""
    try:
        return ConfigStore(cfg.state_dir, terminal=cfg.terminal.id, now=now.replace(tzinfo=None)).version
    except ConfigError:
        return 0


def _backlog(cfg: TerminalConfig, now: float) -> tuple[int, float]:
    """What firmware.hostlink.HostLink.backlog counts, read from the journal without a link: unacknowledged
    completed sales and releases, and the oldest one's age. A terminal with no journal yet has none."""
    path = cfg.state_dir / "journal.db"
    if not path.exists():
        return 0, 0.0
    journal = Journal(path)
    try:
        backlog = backlog_of(journal, now)
    finally:
        journal.close()
    return backlog.count, backlog.oldest_age


def _broker(cfg: TerminalConfig, timeout: float) -> str:
    try:
        connect_as_device(cfg, client="status", timeout=timeout).stop()
    except ForecourtError as exc:
        return str(exc)
    return "reachable" + (" (TLS, device certificate)" if cfg.mqtt.tls else " (no TLS)")


def collect_status(cfg: TerminalConfig, *, now: dt.datetime | None = None, timeout: float = 5.0,
                   probe_broker: bool = True) -> DeviceStatus:
    moment = now or dt.datetime.now(dt.UTC)
    cert: CertInfo | None = None
    problem = ""
    try:
        cert = certificate_info((cfg.state_dir / cfg.mqtt.cert).read_bytes())
    except FileNotFoundError:
        problem = f"no certificate ({cfg.mqtt.cert}): run forecourt provision init"
    except (OSError, ConfigError) as exc:
        problem = str(exc)
    count, oldest = _backlog(cfg, moment.timestamp())
    return DeviceStatus(
        terminal=cfg.terminal.id, station=cfg.terminal.station, certificate=cert, certificate_problem=problem,
        config_version=_config_version(cfg, moment), software_version=software_version(cfg.state_dir),
        backlog=count, oldest_unsent_s=oldest, now=moment,
        broker=_broker(cfg, timeout) if probe_broker else "not checked")


def lines(status: DeviceStatus) -> Iterator[str]:
    """The status as 'name  value' lines for a technician."""
    rows = [("terminal", status.terminal), ("station", status.station)]
    cert = status.certificate
    if cert is None:
        rows.append(("certificate", status.certificate_problem))
    else:
        left = cert.days_left(status.now)
        rows += [("certificate", cert.subject), ("issuer", cert.issuer), ("fingerprint", cert.fingerprint),
                 ("expires", f"{cert.not_after:%Y-%m-%d %H:%M} UTC "
                             + (f"({left} days left)" if left >= 0 else f"(EXPIRED {-left} days ago)"))]
    rows += [("config version", str(status.config_version) if status.config_version else "none yet"),
             ("software", status.software_version),
             ("backlog", f"{status.backlog} unsent" + (f", oldest {status.oldest_unsent_s:.0f} s"
                                                       if status.backlog else "")),
             ("broker", status.broker)]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        yield f"{name:<{width}}  {value}"

