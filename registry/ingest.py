"""Sales intake: received on a shared subscription, stored in batches by a worker, acknowledged after commit.

Several registry processes may subscribe to the same shared subscription (MQTT 5.0, 4.8.2): the broker hands
each sale to one of them. A sale received twice (a resend, or a worker that died before its ack) is answered
"duplicate" by its unique sale_id, so two workers never store one sale twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from paho.mqtt.properties import Properties
from sqlalchemy.orm import Session, sessionmaker

from contracts import messages as m
from contracts import protocol
from contracts.errors import HostUnavailable, MessageError
from drivers.mqtt import MqttLink
from drivers.mqtt.link import Handler
from registry.keys import RegistryKeys
from registry.service import record_sales

__all__ = ["SALE_BATCH", "AuthFirst", "SaleIngest", "sale_id_of"]

log = logging.getLogger(__name__)

# Sales stored in one transaction at most: one commit (one fsync) for a backlog's worth, while an
# authorization waits for the database no longer than one batch.
SALE_BATCH = 200


class AuthFirst:
    """Authorizations go first: the sales worker starts no batch while one is being answered (SQLite's lock
    is not fair, and back-to-back batches would starve it)."""

    def __init__(self) -> None:
        self._busy = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        with self._idle:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)


class SaleIngest:
    """Decodes sales on the network thread, stores them on a worker of its own, acks each once committed."""

    def __init__(self, sessions: sessionmaker[Session], link: MqttLink, now: Callable[[], dt.datetime],
                 *, auth_first: AuthFirst | None = None, group: str = "registry",
                 keys: RegistryKeys | None = None) -> None:
        """group: the shared-subscription group of the registry's processes (registry.clientnames); keys:
        the registry's, to open an offline fleet sale's card number (registry.fleet.settle)."""
        self.sessions, self.link, self.now, self.group, self.keys = sessions, link, now, group, keys
        self.auth_first = auth_first
        self.malformed = 0
        self.acked = 0              # sales answered stored or duplicate by this process
        self._sales: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._store_sales, name="registry-sales", daemon=True)

    def subscriptions(self) -> list[tuple[str, Handler]]:
        return [(protocol.shared("sales", self.group), self.on_sale)]

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        """What was received is stored; its acks are sent again on a resend if the link is gone."""
        if self._worker.is_alive():
            self._sales.put(None)
            self._worker.join(30)

    def on_sale(self, topic: str, payload: bytes, props: Properties | None) -> None:
        terminal = protocol.terminal_of(topic) or ""
        try:
            sale = m.decode(payload, m.SALE)
        except MessageError as exc:
            self.malformed += 1
            log.warning("malformed sale rejected", extra={"error": str(exc), "terminal": terminal})
            self._reject(terminal, sale_id_of(payload), m.SaleAckReason.MALFORMED)
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
            if self.auth_first is not None:
                self.auth_first.wait_idle()
            try:
                with self.sessions() as s:
                    acks = record_sales(s, [sale for _, sale in batch], self.now(), self.keys)
            except Exception:  # a batch not stored is not acknowledged; the worker goes on
                log.exception("sales not stored", extra={"count": len(batch)})
                continue
            log.info("sales stored", extra={"count": len(batch),
                                            "new": sum(1 for a in acks if a and a["status"] == "stored")})
            for (terminal, _), ack in zip(batch, acks, strict=True):
                if ack is None:
                    continue                      # not stored: unacknowledged, its terminal sends it again
                try:
                    self.link.publish(protocol.topic("terminal_inbox", terminal=terminal),
                                      m.encode(ack, m.SALE_ACK))
                    self.acked += 1
                except HostUnavailable:
                    log.warning("sale ack not sent: broker unreachable", extra={"sale_id": ack["sale_id"]})

    def _reject(self, terminal: str, sale_id: str | None, reason: m.SaleAckReason) -> None:
        """A sale that can never be stored: tell its sender, who parks it instead of resending forever."""
        if sale_id is None or m.decode_field(terminal, "terminal", m.SALE) is None:
            return                                   # nobody to tell, or nothing it could match
        ack = {"sale_id": sale_id, "status": "rejected", "reason": reason.value}
        try:
            self.link.publish(protocol.topic("terminal_inbox", terminal=terminal), m.encode(ack, m.SALE_ACK))
        except HostUnavailable:
            log.warning("sale rejection not sent: broker unreachable", extra={"terminal": terminal})


def sale_id_of(payload: bytes) -> str | None:
    """The sale_id of a payload that is no valid SALE, when it has a well-formed one."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    sale_id = m.decode_field(doc.get("sale_id"), "sale_id", m.SALE)
    return sale_id if isinstance(sale_id, str) else None
