"""The registry process: a composition of handler parts on MQTT 5 (authorizations on a client of their own).

Each part gives (subscription, handler) pairs: the sales intake (registry.ingest), and the parts other modules
add with one line in Registry.__init__. `ingest_only` runs the sales intake alone: several such processes
share the sales on one shared subscription (docs/scaling.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from paho.mqtt.properties import Properties
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts import service_messages as sv
from contracts.errors import ConfigError, HostUnavailable, MessageError
from drivers.mqtt import MqttLink, TlsFiles
from drivers.mqtt.link import Handler
from registry import attendants, prices
from registry.certs import cert_rotation_handlers
from registry.clientnames import client_names
from registry.configs import REPUBLISH_EVERY, ConfigIssuer, programs_signature
from registry.db import open_database
from registry.enroll import enrollment_part
from registry.fleet import stoplist
from registry.fleet.sweep import FleetSweep
from registry.fleetops import FleetOps
from registry.ingest import SALE_BATCH, AuthFirst, SaleIngest, sale_id_of
from registry.keys import RegistryKeys, load_or_create_keys, seal_device_keys
from registry.models import Device
from registry.releases import Releases
from registry.seed import apply_seed, load_seed
from registry.service import authorize
from registry.service_desk import answer as service_answer
from registry.turnover_rollup import TurnoverRollup

__all__ = ["SALE_BATCH", "Registry", "utcnow"]

log = logging.getLogger(__name__)

# how often the registry looks whether the stop-list or an offline limit changed (seconds): a card reported
# lost reaches every online terminal's stop-list within this, plus a configuration's publish
STOP_LIST_POLL = 30.0

_WORKER = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_sale_id = sale_id_of          # fuzz/targets_local.py reads it from here


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Registry:
    def __init__(self, db_url: str, state_dir: Path, mqtt_host: str, mqtt_port: int,
                 seed: Path | None = None, kek: Path | None = None, *, ingest_only: bool = False,
                 worker: str = "", tls: TlsFiles | None = None,
                 stop_list_poll: float = STOP_LIST_POLL) -> None:
        if worker and not _WORKER.fullmatch(worker) or ingest_only and not worker:
            # two processes with one client id would take each other's session over, endlessly
            raise ConfigError("--worker must name this process (1-32 of A-Z a-z 0-9 _ . -); --ingest-only "
                              "needs one", key="--worker")
        self.engine, self.sessions = open_database(db_url)
        self.ingest_only, self.stop_list_poll = ingest_only, stop_list_poll
        self.fleet_sweep = FleetSweep(self.sessions, utcnow)
        self.turnover_rollup = TurnoverRollup(self.sessions, utcnow)      # the reports' daily summary
        self.keys: RegistryKeys = load_or_create_keys(state_dir / "registry-keys.json", kek)
        self.config_issuer = ConfigIssuer(state_dir, keys=self.keys)
        if seed is not None and not ingest_only:
            with self.sessions() as s:
                apply_seed(s, self.keys, load_seed(seed), utcnow())
        with self.sessions() as s:
            seal_device_keys(s, self.keys)          # rows from before the KEK; a wrong KEK stops here
        # Authorizations on a client of their own: the broker queues and delivers them apart from sales, and
        # its network thread answers them while the sales client works through a backlog (issue 13).
        names = client_names(tls.ca.parent if tls else None)     # ids and group no device can guess
        self.auth_link = MqttLink(mqtt_host, mqtt_port, names.client_id("auth"), session_expiry=3600, tls=tls)
        self.auth_link.subscribe(protocol.subscription("auth_request"), self._on_auth)
        # loyalty, vouchers, attendants and top-ups: requests a driver or an attendant waits for, like these
        self.auth_link.subscribe(protocol.subscription("service_request"), self._on_service)
        # Each process its own client id on the shared sales subscription. The main one keeps its session
        # (what arrives while it restarts waits for it); an ingest-only worker has none: mosquitto 2.0.11
        # keeps queueing a dead member's share in its session rather than giving it to the others, while
        # without one the others get everything at once and the sales it held unacknowledged are resent
        # by their terminals (docs/scaling.md).
        self.link = MqttLink(mqtt_host, mqtt_port, names.client_id(worker),
                             session_expiry=0 if ingest_only else 3600, tls=tls)
        self.auth_first = AuthFirst()
        self.ingest = SaleIngest(self.sessions, self.link, utcnow, auth_first=self.auth_first,
                                 group=names.group, keys=self.keys)
        handlers: list[tuple[str, Handler]] = [*self.ingest.subscriptions()]
        self.releases = Releases(self.sessions, self.link, clock=utcnow)
        self.fleetops = FleetOps(self.sessions, self.link, clock=utcnow)
        # enrollment: with the authority (--tls-dir) and a BDK; an accepted device gets its configuration now
        self.enroller = None if ingest_only else enrollment_part(
            self.sessions, self.link, self.keys, state_dir, tls.ca.parent if tls else None, clock=utcnow,
            on_accepted=lambda device_id: self._configs_due.set())
        if not ingest_only:
            handlers += [
                # the registry's other parts, one line each: *part.handlers(...)
                *self.releases.handlers(),
                *self.fleetops.handlers(share=lambda name: protocol.shared(name, names.group)),
                *cert_rotation_handlers(self.sessions, self.link, tls, clock=utcnow),
                *(self.enroller.handlers() if self.enroller else []),
            ]
        for subscription, handler in handlers:
            self.link.subscribe(subscription, handler)
        # configurations are republished on a thread of their own: a reconnect never stalls sales
        self._configs_due = threading.Event()
        self._stopping = threading.Event()
        self._configs = threading.Thread(target=self._publish_configs_when_due, name="registry-configs",
                                         daemon=True)
        if not ingest_only:
            self.link.on_state(self._on_link)
        self._sales_started = threading.Event()
        self.auth_link.on_state(self._on_auth_link)
        self.malformed_auth = 0

    @property
    def malformed(self) -> int:
        """Messages dropped or rejected as malformed: authorization requests and sales."""
        return self.malformed_auth + self.ingest.malformed

    def _on_link(self, up: bool) -> None:
        if up:
            self._configs_due.set()

    def _publish_configs_when_due(self) -> None:
        # on each reconnect, every REPUBLISH_EVERY so that releases are renewed before they expire, and when
        # the stop-list, an offline limit, the attendants, the loyalty programme or the stations, products
        # and prices changed (an operator's command in another process); price changes due are applied here
        last, signature = time.monotonic(), None
        now_signature: tuple[Any, ...] | None
        while not self._stopping.is_set():
            self._configs_due.wait(self.stop_list_poll)
            if self._stopping.is_set():
                break
            try:
                with self.sessions() as s:
                    if prices.apply_due(s, utcnow()):
                        s.commit()
                    now_signature = (stoplist.signature(s), attendants.signature(s), programs_signature(s),
                                     prices.signature(s))
            except SQLAlchemyError:
                now_signature = signature
            due_at = last + REPUBLISH_EVERY.total_seconds()
            if not self._configs_due.is_set() and now_signature == signature and time.monotonic() < due_at:
                continue
            signature, last = now_signature, time.monotonic()
            self._configs_due.clear()
            try:
                self.publish_configs()
            except HostUnavailable:
                log.warning("configurations not republished: broker unreachable")   # again on reconnect
            except Exception:  # the thread lives on; the next reconnect tries again
                log.exception("configurations not republished")

    def start(self) -> None:
        """Connect; sales (and the configurations terminals wait for) once authorizations are subscribed.
        An ingest-only process takes sales alone."""
        self.ingest.start()
        if self.ingest_only:
            self._sales_started.set()
            self.link.start()
            return
        self._configs.start()
        self.releases.start()
        self.fleetops.start()
        self.fleet_sweep.start()
        self.turnover_rollup.start()
        if self.enroller:
            self.enroller.start()
        self.auth_link.start()

    def _on_auth_link(self, up: bool) -> None:
        if up and not self._sales_started.is_set():
            self._sales_started.set()
            self.link.start()

    def stop(self) -> None:
        self._stopping.set()
        self._configs_due.set()
        self.link.stop()
        self.ingest.stop()
        self.releases.stop()
        self.fleetops.stop()
        self.fleet_sweep.stop()
        self.turnover_rollup.stop()
        if self.enroller:
            self.enroller.stop()
        if self._configs.is_alive():
            self._configs.join(10)
        if not self.ingest_only:
            self.auth_link.stop()
        self.engine.dispose()

    def run(self, stop: threading.Event) -> None:
        """Serve until stop is set; under systemd (Type=notify) say READY=1 once started and feed the
        watchdog from this loop (docs/raspberry-pi.md)."""
        from drivers.systemd.notify import notify, watchdog_interval

        self.start()
        notify("READY=1\nSTATUS=serving")
        every = watchdog_interval()
        try:
            while not stop.wait(every / 2 if every else None):
                if self.ingest_only or self._configs.is_alive():    # the configuration publisher lives
                    notify("WATCHDOG=1")
        finally:
            notify("STOPPING=1")
            self.stop()

    def publish_configs(self) -> None:
        """Retained per-device signed configuration (registry.configs), for every active device: a new
        version only where the body changed or the last one nears expiry, else the same one again."""
        with self.sessions() as s:
            ids = list(s.scalars(select(Device.id).where(Device.status == "active").order_by(Device.id)))
            for device_id in ids:
                # one device's database trouble (another host issued the same version) skips that device
                # alone, till the next round; only a broker that is away ends the round (HostUnavailable)
                try:
                    device = s.get(Device, device_id)
                    if device is None or device.status != "active":
                        continue
                    doc = self.config_issuer.issue_config(s, device, utcnow())
                    s.commit()
                except SQLAlchemyError as exc:
                    s.rollback()
                    log.error("configuration not issued", extra={"device": device_id,
                                                                 "error": type(exc).__name__})
                    continue
                payload = m.encode(doc, d.SIGNED_CONFIG)
                self.link.publish(protocol.topic("config", terminal=device_id), payload, retain=True)

    def _answerable(self, what: str, topic: str, req: dict[str, Any], props: Properties | None) -> bool:
        """A request names the terminal whose topic it came on and asks the answer into its own inbox."""
        if req["terminal"] != protocol.terminal_of(topic):
            # the broker lets a terminal publish only under its own id: the request names another
            self.malformed_auth += 1
            log.warning("%s request for another terminal dropped", what,
                        extra={"terminal": protocol.terminal_of(topic)})
            return False
        inbox = protocol.topic("terminal_inbox", terminal=req["terminal"])
        if getattr(props, "ResponseTopic", None) != inbox:
            # the registry may publish anywhere: it answers only into the asking terminal's own inbox
            self.malformed_auth += 1
            log.warning("%s request with another response topic dropped", what,
                        extra={"terminal": req["terminal"]})
            return False
        return True

    def _on_auth(self, topic: str, payload: bytes, props: Properties | None) -> None:
        try:
            req = m.decode(payload, m.AUTH_REQUEST)
        except MessageError as exc:
            self.malformed_auth += 1
            log.warning("malformed authorization request dropped", extra={"error": str(exc)})
            return
        if not self._answerable("authorization", topic, req, props):
            return
        with self.auth_first.answering(), self.sessions() as s:
            answer = authorize(s, self.keys, req, utcnow())
        self.auth_link.reply(props, m.encode(answer.to_doc(), m.AUTH_RESPONSE))

    def _on_service(self, topic: str, payload: bytes, props: Properties | None) -> None:
        try:
            req = sv.decode_request(payload)
        except MessageError as exc:
            self.malformed_auth += 1
            log.warning("malformed service request dropped", extra={"error": str(exc)})
            return
        if not self._answerable("service", topic, req, props):
            return
        with self.auth_first.answering(), self.sessions() as s:
            doc = service_answer(s, self.keys, req, utcnow())
        self.auth_link.reply(props, sv.encode_response(doc))

