"""The terminal's side of the registry conversation: authorization, configuration and sale sync.

It gets an MQTT link passed in (drivers.mqtt.MqttLink or anything shaped like it). Completed sales are
sent store-and-forward from the journal; only the registry's acknowledgement marks one synced.
An authorization request carries the card number sealed (contracts.panseal) under a key derived from the
terminal's PIN key, never in clear: the broker, and its persistence file, see only the sealed form.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.cards import mask_number
from contracts.errors import HostUnavailable, JournalError, MessageError
from contracts.panseal import derive_pan_key, derive_stop_key, seal_pan, stop_entry
from firmware.configstore import ConfigStore, Refused
from firmware.sale.journal import Journal
from firmware.sale.record import SaleRecord
from firmware.station import Station

__all__ = ["RELEASE", "Backlog", "HostLink", "Link", "backlog_of", "resend_delay", "sale_payload"]

log = logging.getLogger(__name__)

RELEASE = "release:"      # journal kv prefix: sales of nothing that close a hold whose answer never came

# Sale sync pacing. WINDOW: sales sent and not yet acknowledged, at most; mosquitto's own default
# max_inflight_messages per client is 20, so the window never outruns what the broker lets through at once.
# RESEND_CAP: the longest wait for an ack before a sale is sent again, however often it went unanswered.
WINDOW = 20
RESEND_CAP = 60.0
BACKLOG_LOG_EVERY = 60.0  # seconds between the info lines that state a backlog


def resend_delay(ack_timeout: float, tries: int, jitter: float, cap: float = RESEND_CAP) -> float:
    """How long a sale sent for the tries-th time (0 = first) waits for its ack: exponential backoff with
    up to 25 % jitter (jitter in [0, 1)), never below ack_timeout nor above cap.

    >>> [resend_delay(10.0, n, 0.0) for n in range(5)]
    [10.0, 20.0, 40.0, 60.0, 60.0]
    >>> resend_delay(10.0, 0, 0.999) <= 12.5
    True
    """
    return min(cap, max(ack_timeout, ack_timeout * 2.0 ** min(tries, 30) * (1.0 + 0.25 * jitter)))


@dataclass(frozen=True)
class Backlog:
    """What waits for the registry: sales (and releases) not acknowledged, and the oldest one's age."""

    count: int
    oldest_age: float       # seconds since the oldest unacknowledged sale finished; 0 without a backlog


def backlog_of(journal: Journal, now: float) -> Backlog:
    """What waits in a journal for the registry's ack at `now` (epoch seconds): unacknowledged completed
    sales and releases, and the oldest one's age (also read without a link, by provisioning's status)."""
    finished = [r.finished_at or r.created_at for r in journal.unsynced()]
    finished += [dt.datetime.strptime(json.loads(d)["finished_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
                 .replace(tzinfo=dt.UTC).timestamp() for d in journal.values(RELEASE).values()]
    return Backlog(len(finished), max(0.0, now - min(finished)) if finished else 0.0)


@dataclass
class _InFlight:
    tries: int      # times sent
    due: float      # clock time at which it is sent again unless acknowledged


class Link(Protocol):
    connected: threading.Event

    def subscribe(self, topic: str, handler: Callable[[str, bytes, Any], None], qos: int = 1) -> None: ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None: ...

    def request(self, topic: str, payload: bytes, response_topic: str, timeout: float) -> bytes: ...

    def on_state(self, callback: Callable[[bool], None]) -> None: ...


def sale_payload(rec: SaleRecord, terminal: str, station: str) -> dict[str, Any]:
    finished = dt.datetime.fromtimestamp(rec.finished_at or rec.created_at, dt.UTC)
    registry_auth = rec.data.get("registry_auth")
    seq = {} if rec.seq is None else {"seq": rec.seq}
    return {**seq,
        # only a program the registry authorized names its authorization (data "registry_auth")
        "sale_id": rec.id, "kind": rec.program,
        "auth_id": registry_auth if isinstance(registry_auth, str) else None,
        "terminal": terminal, "station": station, "pump": rec.pump,
        "nozzle": rec.nozzle or 0, "product": rec.product, "volume_cl": rec.volume_cl or 0,
        "amount_cents": rec.amount_cents or 0, "price_milli": rec.price_milli or 0,
        "card_masked": rec.card_masked, "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "recovered": rec.recovered, "flags": list(rec.flags),
        # an offline fleet sale: the card number sealed to the sale (no auth_id to find the card by)
        **{k: rec.data[k] for k in ("card_sealed", "medium") if isinstance(rec.data.get(k), str)},
        **_loyalty(rec),
        **{k: v for k, v in rec.data.items() if k == "voucher" and type(v) is int and rec.program == k},
    }


def _loyalty(rec: SaleRecord) -> dict[str, str]:
    """A loyalty card shown before paying: its number sealed to the sale (firmware.programs.loyalty)."""
    doc = rec.adjuncts.get("loyalty", {})
    kept = {"loyalty_sealed": doc.get("sealed"), "loyalty_medium": doc.get("medium")}
    return {k: v for k, v in kept.items() if isinstance(v, str)} if isinstance(doc.get("sealed"), str) else {}


class HostLink:
    def __init__(self, link: Link, journal: Journal, terminal: str, station: str, *, pin_key: bytes,
                 auth_timeout: float = 10.0, ack_timeout: float = 10.0, sales_per_second: float = 10.0,
                 window: int = WINDOW, resend_cap: float = RESEND_CAP,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random, configs: ConfigStore | None = None) -> None:
        """pin_key: the terminal's AES PIN key (pek.hex); only a PAN key derived from it is kept.
        ack_timeout ([timeouts] sale_ack): the first wait for a sale's ack; sales_per_second ([mqtt]): the
        most sales (first sends and resends together) published per second. configs: the signed
        configuration store (default: in the journal's directory, the terminal's state dir)."""
        self.link, self.journal, self.auth_timeout = link, journal, auth_timeout
        self.ack_timeout, self.window, self.resend_cap = ack_timeout, window, resend_cap
        self.gap = 1.0 / sales_per_second
        self._clock, self._jitter = clock, jitter
        self._inflight: dict[str, _InFlight] = {}
        self._settled_ids: set[str] = set()      # acknowledged or parked since this round read the journal
        self._lock = threading.Lock()
        self._next_send = 0.0
        self._next_report = 0.0
        self._pan_key = derive_pan_key(pin_key)
        self._stop_key = derive_stop_key(pin_key)
        self.terminal, self.station_id = terminal, station
        self.inbox = protocol.topic("terminal_inbox", terminal=terminal)
        # only a signed configuration is run (firmware.configstore); the last good one is loaded here
        self.configs = configs if configs is not None else ConfigStore(journal.path.parent, terminal=terminal)
        self.station = Station.from_config(self.configs.current, station)
        self.config_changed = threading.Event()
        self.event_sink: Callable[[str, str, str], object] | None = None
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        link.subscribe(self.inbox, self._on_inbox)
        link.subscribe(protocol.topic("config", terminal=terminal), self._on_config)
        link.on_state(self._on_link)

    def _on_link(self, up: bool) -> None:
        if up:
            # (re)connected: what was in flight may have died with the old connection or broker; send it
            # again at once (the window bounds how many) and start its backoff afresh
            with self._lock:
                for entry in self._inflight.values():
                    entry.tries, entry.due = 0, 0.0
            self._kick.set()     # forward what waits in the journal
            if self.configs.expired():     # it still runs (it was good); the registry should know
                self.event("warning", "config_expired", f"running={self.configs.version}")

    @property
    def online(self) -> bool:
        return self.link.connected.is_set()

    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int, request_id: str | None = None,
                  medium: str = "chip", prompts: Mapping[str, str] | None = None) -> m.AuthAnswer:
        """request_id: journaled by the caller first; the registry keys its hold by it. pin_block b"" when
        no PIN was entered; prompts: the answers the registry asked for (contracts.messages.AUTH_PROMPTS).

        The request lives in the broker at most auth_timeout (its MQTT 5 message expiry, set by the
        link's request()): one queued for an absent registry dies there instead of arriving late."""
        rid = request_id or str(uuid.uuid4())
        sealed = seal_pan(self._pan_key, pan, request_id=rid, terminal=self.terminal, station=self.station_id)
        req = {"request_id": rid, "terminal": self.terminal, "station": self.station_id, "pump": pump,
               "pan_sealed": sealed, "expiry": expiry, "pin_block": pin_block.hex().upper()}
        if medium != "chip":
            req["medium"] = medium
        if prompts:
            req["prompts"] = dict(prompts)
        sent = self.online
        try:
            raw = self.link.request(protocol.topic("auth_request", terminal=self.terminal),
                                    m.encode(req, m.AUTH_REQUEST), self.inbox, self.auth_timeout)
            try:
                answer = m.AuthAnswer.from_doc(m.decode(raw, m.AUTH_RESPONSE))
            except MessageError as exc:
                raise HostUnavailable("registry answered with a malformed message") from exc
            if answer.request_id != rid:
                raise HostUnavailable("registry answered another request")
        except HostUnavailable:
            if sent:           # the registry may hold litres for an answer that never came: release them
                self._queue_release(rid, pump, mask_number(pan))
            raise
        return answer

    def stop_entry(self, number: str) -> str:
        """The card number's entry in this terminal's stop-list (the signed configuration's stop_list)."""
        return stop_entry(self._stop_key, number)

    def seal_for_sale(self, number: str, sale_id: str) -> str:
        """The card number sealed to an offline sale (SALE card_sealed: the sale id is the request id)."""
        return seal_pan(self._pan_key, number, request_id=sale_id, terminal=self.terminal,
                        station=self.station_id)

    def release(self, request_id: str, pump: int, card_masked: str) -> None:
        """An approved authorization the sale will not use (the driver cancelled): its hold is closed by
        a sale of nothing, as for an unanswered one."""
        self._queue_release(request_id, pump, card_masked, flag="cancelled_after_approval")

    def _queue_release(self, request_id: str, pump: int, card_masked: str, *,
                       flag: str = "unanswered_authorization") -> None:
        """A sale of nothing on the request's authorization, sent like a sale until acknowledged: it
        closes a hold the registry granted (or, never granted, is stored as nothing and bars the id)."""
        sale_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"forecourt-release:{request_id}"))
        doc = {"sale_id": sale_id, "kind": "fleet", "auth_id": request_id, "terminal": self.terminal,
               "station": self.station_id, "pump": pump, "nozzle": 0, "product": None, "volume_cl": 0,
               "amount_cents": 0, "price_milli": 0, "card_masked": card_masked,
               "finished_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "recovered": False,
               "flags": [flag]}
        self.journal.put(RELEASE + sale_id, json.dumps(doc))
        log.warning("authorization unanswered; its hold is released by a sale of nothing",
                    extra={"request_id": request_id, "sale_id": sale_id})
        self._kick.set()

    # store-and-forward
    def start_sync(self) -> None:
        self._thread = threading.Thread(target=self._sync_loop, name="sync", daemon=True)
        self._thread.start()

    def stop_sync(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def kick(self) -> None:
        """A sale was completed: try to send it now."""
        self._kick.set()

    def resend_now(self) -> None:
        """Send what waits at once, each sale's backoff started afresh (the resend_sales command)."""
        with self._lock:
            for entry in self._inflight.values():
                entry.tries, entry.due = 0, 0.0
        self._next_send = 0.0
        self._kick.set()

    def backlog(self) -> Backlog:
        """Sales and releases the registry has not acknowledged (parked ones excluded: an operator's)."""
        return backlog_of(self.journal, time.time())

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.clear()
            try:
                self._report()
                wake = self._pump() if self.online else self._clock() + 5.0
            except Exception:          # a journal or link fault must not end sync for good
                log.exception("sale sync round failed")
                wake = self._clock() + 5.0
            self._kick.wait(timeout=min(5.0, max(0.0, wake - self._clock())))

    def _report(self) -> None:
        now = self._clock()
        if now < self._next_report:
            return
        self._next_report = now + BACKLOG_LOG_EVERY
        backlog = self.backlog()
        if backlog.count:
            log.info("sales wait for the registry", extra={"backlog": backlog.count,
                                                           "oldest_age_s": round(backlog.oldest_age)})

    def _outbox(self) -> list[tuple[str, Callable[[], bytes]]]:
        """What waits for an ack, oldest sale first, then releases: (sale id, its payload's encoder)."""
        out: list[tuple[str, Callable[[], bytes]]] = [
            (rec.id, partial(self._encode_sale, rec)) for rec in self.journal.unsynced()]
        for key, doc in self.journal.values(RELEASE).items():
            out.append((key.removeprefix(RELEASE), partial(m.encode, json.loads(doc), m.SALE)))
        return out

    def _encode_sale(self, rec: SaleRecord) -> bytes:
        return m.encode(sale_payload(rec, self.terminal, self.station_id), m.SALE)

    def _pump(self) -> float:
        """Send what is due, in order and paced; the clock time at which to look again."""
        with self._lock:
            self._settled_ids.clear()
        outbox = self._outbox()
        with self._lock:             # drop what was acknowledged or parked meanwhile
            live = {sid for sid, _ in outbox}
            self._inflight = {sid: e for sid, e in self._inflight.items() if sid in live}
        wake = self._clock() + 5.0
        for sid, encode in outbox:
            now = self._clock()
            with self._lock:
                entry = self._inflight.get(sid)
                if sid in self._settled_ids:
                    continue                             # acknowledged since the journal was read
                if entry is None and len(self._inflight) >= self.window:
                    continue                             # the window is full: a later ack moves it on
                if entry is not None and entry.due > now:
                    wake = min(wake, entry.due)
                    continue
            if now < self._next_send:
                return min(wake, self._next_send)        # paced: the next slot
            try:
                payload = encode()
            except MessageError as exc:      # no registry could store it: set aside, keep syncing
                if self.journal.park(sid, m.SaleAckReason.MALFORMED.value):
                    log.error("sale cannot be sent; parked for an operator", extra={"sale_id": sid,
                                                                                    "error": str(exc)})
                continue
            try:
                self.link.publish(protocol.topic("sales", terminal=self.terminal), payload, qos=1)
            except HostUnavailable:
                return now + 5.0             # link down: its reconnect kicks this loop
            self._next_send = max(now, self._next_send) + self.gap
            tries = entry.tries if entry is not None else 0
            due = now + resend_delay(self.ack_timeout, tries, self._jitter(), self.resend_cap)
            with self._lock:
                if sid not in self._settled_ids:         # (an ack may beat this line)
                    self._inflight[sid] = _InFlight(tries + 1, due)
            wake = min(wake, due)
        return wake

    def _settled(self, sale_id: str) -> None:
        """Acknowledged (or parked): out of the window, which moves on at once."""
        with self._lock:
            self._inflight.pop(sale_id, None)
            self._settled_ids.add(sale_id)
        self._kick.set()

    def _on_inbox(self, topic: str, payload: bytes, props: Any) -> None:
        try:
            ack = m.decode(payload, m.SALE_ACK)
        except MessageError as exc:
            log.warning("malformed message in inbox dropped", extra={"error": str(exc)})
            return
        if self.journal.get_value(RELEASE + ack["sale_id"]) is not None:
            self.journal.delete(RELEASE + ack["sale_id"])         # whatever the answer: nothing to hold
            self._settled(ack["sale_id"])
            log.info("unanswered authorization released", extra={"sale_id": ack["sale_id"],
                                                                  "status": ack["status"]})
            return
        try:
            rec = self.journal.get(ack["sale_id"])
        except JournalError:
            log.warning("ack for a sale this terminal does not know", extra={"sale_id": ack["sale_id"]})
            return
        if rec.synced:
            self._settled(rec.id)
            return
        if ack["status"] in ("stored", "duplicate"):
            self.journal.mark(rec.id, "synced")
            # "held": stored apart for an operator at the registry; nothing to resend either way
            log_at = logging.WARNING if ack["reason"] else logging.INFO
            log.log(log_at, "sale synced", extra={"sale_id": rec.id, "status": ack["status"],
                                                  "reason": ack["reason"]})
        elif self.journal.park(rec.id, ack["reason"] or "rejected"):
            # the registry will never store it: resending would repeat forever
            log.error("registry rejected sale; parked for an operator",
                      extra={"sale_id": rec.id, "reason": ack["reason"]})
        self._settled(rec.id)

    @property
    def config(self) -> dict[str, Any] | None:
        """The body of the signed configuration run (None: none yet)."""
        return self.configs.current

    def _on_config(self, topic: str, payload: bytes, props: Any) -> None:
        result = self.configs.offer(payload)
        if isinstance(result, Refused):        # logged and counted by the store; the registry is told
            self.event("warning", "config_refused",
                       f"reason={result.reason} offered={result.version} running={self.configs.version}")
        elif result is not None:
            self.station = Station.from_config(result.body, self.station_id)
            self.config_changed.set()

    def event(self, severity: str, code: str, detail: str) -> None:
        """Report an EVENT: through event_sink when one is set (firmware.deviceops queues events and
        sends them on reconnect), else published at once (best effort: one lost offline is in the log)."""
        if self.event_sink is not None:
            self.event_sink(severity, code, detail)
            return
        doc = {"event_id": str(uuid.uuid4()), "terminal": self.terminal, "severity": severity, "code": code,
               "detail": detail, "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        try:
            self.link.publish(protocol.topic("events", terminal=self.terminal), m.encode(doc, d.EVENT))
        except HostUnavailable:
            log.warning("event not sent: registry unreachable", extra={"code": code})
