"""The registry process: answers authorization requests and stores sales, over MQTT 5."""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from paho.mqtt.properties import Properties
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import messages as m
from contracts import protocol
from contracts.errors import HostUnavailable, MessageError
from drivers.mqtt import MqttLink
from registry.db import open_database
from registry.keys import RegistryKeys, load_or_create_keys, seal_device_keys
from registry.models import Device, Nozzle, Product, Station
from registry.seed import apply_seed, load_seed
from registry.service import authorize, record_sales

__all__ = ["Registry", "utcnow"]

log = logging.getLogger(__name__)

# Sales stored in one transaction at most: one commit (one fsync) for a backlog's worth, while an
# authorization waits for the database no longer than one batch.
SALE_BATCH = 50


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Registry:
    def __init__(self, db_url: str, state_dir: Path, mqtt_host: str, mqtt_port: int,
                 seed: Path | None = None, kek: Path | None = None) -> None:
        self.engine, self.sessions = open_database(db_url)
        self.keys: RegistryKeys = load_or_create_keys(state_dir / "registry-keys.json", kek)
        if seed is not None:
            with self.sessions() as s:
                apply_seed(s, self.keys, load_seed(seed), utcnow())
        with self.sessions() as s:
            seal_device_keys(s, self.keys)          # rows from before the KEK; a wrong KEK stops here
        # Authorizations on a client of their own: the broker queues and delivers them apart from sales, and
        # its network thread answers them while the sales client works through a backlog (issue 13).
        self.auth_link = MqttLink(mqtt_host, mqtt_port, "forecourt-registry-auth", session_expiry=3600)
        self.auth_link.subscribe(protocol.subscription("auth_request"), self._on_auth)
        self.link = MqttLink(mqtt_host, mqtt_port, "forecourt-registry", session_expiry=3600)
        self.link.subscribe(protocol.subscription("sales"), self._on_sale)
        self.link.on_state(self._on_link)
        self._sales_started = threading.Event()
        # sales received, stored by one worker in batches; each acknowledged once its batch is committed
        self._sales: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._store_sales, name="registry-sales", daemon=True)
        # Authorizations go first: the worker starts no batch while one is being answered (SQLite's
        # lock is not fair, and back-to-back batches would starve it).
        self._auths = 0
        self._auths_done = threading.Condition()
        self.auth_link.on_state(self._on_auth_link)
        self.malformed = 0

    def _on_link(self, up: bool) -> None:
        if up:
            self.publish_configs()

    def start(self) -> None:
        """Connect; sales (and the configurations terminals wait for) once authorizations are subscribed."""
        self._worker.start()
        self.auth_link.start()

    def _on_auth_link(self, up: bool) -> None:
        if up and not self._sales_started.is_set():
            self._sales_started.set()
            self.link.start()

    def stop(self) -> None:
        self.link.stop()
        if self._worker.is_alive():
            self._sales.put(None)        # what was received is stored; its acks are sent again on a resend
            self._worker.join(30)
        self.auth_link.stop()
        self.engine.dispose()

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    def publish_configs(self) -> None:
        """Retained per-terminal configuration: station and prices of its pumps."""
        with self.sessions() as s:
            for device in s.scalars(select(Device)).all():
                payload = m.encode(terminal_config(s, device), m.TERMINAL_CONFIG)
                self.link.publish(protocol.topic("config", terminal=device.id), payload, retain=True)

    def _on_auth(self, topic: str, payload: bytes, props: Properties | None) -> None:
        try:
            req = m.decode(payload, m.AUTH_REQUEST)
        except MessageError as exc:
            self.malformed += 1
            log.warning("malformed authorization request dropped", extra={"error": str(exc)})
            return
        if req["terminal"] != protocol.terminal_of(topic):
            # the broker lets a terminal publish only under its own id: the request names another
            self.malformed += 1
            log.warning("authorization request for another terminal dropped",
                        extra={"terminal": protocol.terminal_of(topic)})
            return
        with self._auths_done:
            self._auths += 1
        try:
            with self.sessions() as s:
                answer = authorize(s, self.keys, req, utcnow())
        finally:
            with self._auths_done:
                self._auths -= 1
                self._auths_done.notify_all()
        self.auth_link.reply(props, m.encode(answer.to_doc(), m.AUTH_RESPONSE))

    def _on_sale(self, topic: str, payload: bytes, props: Properties | None) -> None:
        terminal = protocol.terminal_of(topic) or ""
        try:
            sale = m.decode(payload, m.SALE)
        except MessageError as exc:
            self.malformed += 1
            log.warning("malformed sale rejected", extra={"error": str(exc), "terminal": terminal})
            self._reject(terminal, _sale_id(payload), m.SaleAckReason.MALFORMED)
            return
        if sale["terminal"] != terminal:
            self.malformed += 1
            log.warning("sale on another terminal's topic rejected", extra={"terminal": terminal})
            self._reject(terminal, sale["sale_id"], m.SaleAckReason.WRONG_TERMINAL)
            return
        self._sales.put((terminal, sale))

    def _next_batch(self) -> list[tuple[str, dict[str, Any]]] | None:
        """The sales waiting, up to SALE_BATCH (waits for one); None once stop() asked."""
        first = self._sales.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < SALE_BATCH:
            try:
                more = self._sales.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self._sales.put(None)             # stop after this batch
                break
            batch.append(more)
        return batch

    def _store_sales(self) -> None:
        while (batch := self._next_batch()) is not None:
            with self._auths_done:
                self._auths_done.wait_for(lambda: self._auths == 0)
            try:
                with self.sessions() as s:
                    acks = record_sales(s, [sale for _, sale in batch], utcnow())
            except Exception:  # a batch not stored is not acknowledged; the worker goes on
                log.exception("sales not stored", extra={"count": len(batch)})
                continue
            for (terminal, _), ack in zip(batch, acks, strict=True):
                if ack is None:
                    continue                      # not stored: unacknowledged, its terminal sends it again
                try:
                    self.link.publish(protocol.topic("terminal_inbox", terminal=terminal),
                                      m.encode(ack, m.SALE_ACK))
                except HostUnavailable:
                    log.warning("sale ack not sent: broker unreachable", extra={"sale_id": ack["sale_id"]})

    def _reject(self, terminal: str, sale_id: str | None, reason: m.SaleAckReason) -> None:
        """A sale that can never be stored: tell its sender, who parks it instead of resending forever."""
        if sale_id is None or m.decode_field(terminal, "terminal", m.SALE) is None:
            return                                   # nobody to tell, or nothing it could match
        ack = {"sale_id": sale_id, "status": "rejected", "reason": reason.value}
        self.link.publish(protocol.topic("terminal_inbox", terminal=terminal), m.encode(ack, m.SALE_ACK))


def _sale_id(payload: bytes) -> str | None:
    """The sale_id of a payload that is no valid SALE, when it has a well-formed one."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    sale_id = m.decode_field(doc.get("sale_id"), "sale_id", m.SALE)
    return sale_id if isinstance(sale_id, str) else None


def terminal_config(s: Session, device: Device) -> dict[str, Any]:
    station = s.get(Station, device.station_id)
    nozzles = s.scalars(select(Nozzle).where(Nozzle.station_id == device.station_id)
                        .order_by(Nozzle.pump, Nozzle.nozzle)).all()
    names = {p.code: p.name for p in s.scalars(select(Product)).all()}
    prices = [{"pump": n.pump, "nozzle": n.nozzle, "product": n.product_code,
               "product_name": names.get(n.product_code, n.product_code), "price_milli": n.price_milli}
              for n in nozzles]
    version = abs(hash(tuple((p["pump"], p["nozzle"], p["price_milli"]) for p in prices))) % 2**31
    return {"terminal": device.id, "station": device.station_id,
            "station_name": station.name if station else device.station_id,
            "currency": station.currency if station else "EUR", "version": version, "prices": prices}
