"""Enrollment, registry side: a new device's ENROLL_REQUEST (sent under the claim identity with a one-time
token) becomes a Device, and an accepted device gets its certificate, the CA, the configuration keys and its
keys sealed to the device key (registry.keyinject). handle_enroll and replies_for_accepted work on the session
and the authority; Enroller (below) connects them to MQTT for the registry process.

A refusal (REASONS) changes nothing. A token opens one device, even under racing requests (its row is
claimed by one conditional UPDATE); clock and CSR are checked first, so a retry keeps the token.
A serial registered ahead (registry.devices.import_expected) for the token's station is accepted at once;
any other device waits "pending" for an operator, then replies_for_accepted gives its "accepted" reply.
The certificate is issued on acceptance and kept in the device's row (what revocation lists). A pending
request and each retained reply still to clear are rows of enrollment_requests (registry.enroll_state), so
any registry host on the database answers, and nothing is kept beside the CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.device_messages import RESERVED_IDS
from contracts.errors import ForecourtError, HostUnavailable, MessageError
from contracts.messages import parse_timestamp
from drivers.mqtt.link import Handler
from registry import enroll_reply as reply
from registry import enroll_state as state
from registry.devices import ID, awaiting_enrollment, token_digest
from registry.enroll_reply import csr_public_key, wire_time
from registry.keyinject import BDK_FILE, KeyInjector
from registry.keys import RegistryKeys
from registry.models import Device, EnrollmentToken, ExpectedDevice
from registry.pki import Authority
from registry.ticker import Ticker

__all__ = ["CLOCK_SKEW", "REASONS", "Enroller", "PendingReply", "delivered", "enrollment_handlers",
           "enrollment_part", "handle_enroll", "replies_for_accepted", "wire_time"]

log = logging.getLogger(__name__)

CLOCK_SKEW = dt.timedelta(minutes=5)
REASONS = ("token_unknown", "token_expired", "token_used", "clock_skew", "serial_taken", "id_taken",
           "bad_csr", "device_refused", "registry_error")
KEEP_REPLY = dt.timedelta(days=7)       # an accepted reply waits this long for its device to connect
KEEP_REFUSED = dt.timedelta(hours=1)


def _refused(doc: Mapping[str, Any], reason: str, now: dt.datetime) -> dict[str, Any]:
    return {"request_id": doc["request_id"], "status": "refused", "reason": reason,
            "server_time": wire_time(now)}


def made_up_id(serial: str) -> str:
    """A device id for a serial number when neither token nor import names one."""
    return "T-" + hashlib.sha256(serial.encode("utf-8")).hexdigest()[:10].upper()


def handle_enroll(session: Session, authority: Authority, keys: RegistryKeys, doc: Mapping[str, Any],
                  now: dt.datetime, *, client: str, injector: KeyInjector,
                  config_keys: Mapping[str, str]) -> dict[str, Any]:
    """The ENROLL_REPLY to a decoded ENROLL_REQUEST received from claim client `client` (now: naive UTC).
    Committed when the reply is accepted or pending; nothing changes when it is refused."""
    client_time = parse_timestamp(doc["client_time"])
    if abs(client_time - now) > CLOCK_SKEW:
        return _refused(doc, "clock_skew", now)
    public_key = csr_public_key(doc["csr_pem"])
    if public_key is None:
        return _refused(doc, "bad_csr", now)
    digest = token_digest(doc["token"])
    token = session.get(EnrollmentToken, digest)
    if token is None:
        return _refused(doc, "token_unknown", now)
    if token.used_at is not None:
        again = partial(reply.accepted_again, authority=authority, keys=keys, doc=doc, now=now,
                        injector=injector, config_keys=config_keys)
        return _again(session, token.used_by, doc, now, again) or _refused(doc, "token_used", now)
    if token.expires_at <= now:
        return _refused(doc, "token_expired", now)
    serial = doc["serial"]
    if session.scalar(select(Device.id).where(Device.serial == serial)) is not None:
        return _refused(doc, "serial_taken", now)
    expected = session.get(ExpectedDevice, serial)
    at_once = expected is not None and expected.station_id == token.station_id
    device_id = (token.device_id or (expected.device_id if expected is not None else None)
                 or made_up_id(serial))
    seeded = session.get(Device, device_id)
    if device_id in RESERVED_IDS or not ID.fullmatch(device_id) or (seeded is not None and not (
            awaiting_enrollment(seeded) and seeded.station_id == token.station_id)):
        return _refused(doc, "id_taken", now)
    # one winner per token: the row is claimed only while unused (a second request updates no row)
    claimed = session.execute(update(EnrollmentToken)
                              .where(EnrollmentToken.digest == digest, EnrollmentToken.used_at.is_(None))
                              .values(used_at=now, used_by=device_id)
                              .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:       # type: ignore[attr-defined]
        session.rollback()
        return _refused(doc, "token_used", now)
    try:
        device = _take_or_make(session, keys, injector, seeded, device_id, token.station_id, doc, now,
                               at_once=at_once)
    except IntegrityError:          # another request took the serial or the id meanwhile
        session.rollback()
        return _refused(doc, "serial_taken", now)
    if device is None:
        session.rollback()
        return _refused(doc, "id_taken", now)
    at_once = device.status == "active"
    if at_once:
        answer = reply.accepted(session, authority, keys, device, doc["csr_pem"], doc["request_id"], now,
                                injector=injector, config_keys=config_keys)
    else:
        state.wait(session, client=client, request_id=doc["request_id"], device_id=device_id,
                   csr_pem=doc["csr_pem"], now=now)
        answer = {"request_id": doc["request_id"], "status": "pending", "reason": "waiting for an operator",
                  "device_id": device_id, "station": device.station_id, "server_time": wire_time(now)}
    session.commit()
    return answer


def _again(session: Session, device_id: str | None, doc: Mapping[str, Any], now: dt.datetime,
           accepted_again: Callable[[Device], dict[str, Any] | None]) -> dict[str, Any] | None:
    """The same request again (a device resuming one whose answer it missed): "pending" again while it
    waits (the tick sends the final answer); "accepted" again, certificate and keys, when the device was
    accepted for this very key (its retained answer may have been replaced on its topic); not token_used."""
    if device_id and state.waiting(session, device_id, doc["request_id"]):
        return {"request_id": doc["request_id"], "status": "pending", "reason": "waiting for an operator",
                "device_id": device_id, "server_time": wire_time(now)}
    device = session.get(Device, device_id) if device_id else None
    return accepted_again(device) if device is not None else None


def _take_or_make(session: Session, keys: RegistryKeys, injector: KeyInjector, seeded: Device | None,
                  device_id: str, station: str, doc: Mapping[str, Any], now: dt.datetime, *,
                  at_once: bool) -> Device | None:
    """A new Device row, or the seeded one taken (its PIN key kept; one taker, by a conditional UPDATE);
    either is active at once when its serial was registered ahead for the station, else a new one is
    pending and a seeded one keeps its status. None when another request took the seeded row first.
    IntegrityError when the serial is taken meanwhile."""
    fields: dict[str, Any] = {"serial": doc["serial"], "first_seen_at": now,
                              "reported_software_version": doc["software_version"]}
    if seeded is None:
        device = Device(id=device_id, station_id=station, status="active" if at_once else "pending",
                        pin_key_hex=keys.seal_device_key(injector.pin_key(device_id)), **fields)
        session.add(device)
        session.flush()
        return device
    if at_once:
        fields["status"] = "active"
    taken = session.execute(update(Device).where(Device.id == device_id, Device.serial.is_(None),
                                                 Device.cert_fingerprint.is_(None),
                                                 Device.status.in_(("pending", "active"))).values(**fields)
                            .execution_options(synchronize_session=False))
    if taken.rowcount != 1:         # type: ignore[attr-defined]
        return None
    session.refresh(seeded)
    return seeded


@dataclass(frozen=True)
class PendingReply:
    """A reply for a device that was waiting: publish it retained on enroll_reply for client, then call
    delivered() (row: its enrollment_requests row)."""

    device_id: str
    client: str
    doc: dict[str, Any]
    row: int = 0


def replies_for_accepted(session: Session, authority: Authority, keys: RegistryKeys, now: dt.datetime, *,
                         injector: KeyInjector, config_keys: Mapping[str, str]) -> list[PendingReply]:
    """The replies owed to waiting devices an operator has since accepted ("accepted", with certificate
    and keys) or decommissioned ("refused", device_refused). Committed; each is this caller's to publish
    (registry.enroll_state.take) until it calls delivered(), or give_back() when the broker is away."""
    replies = []
    for row in state.owed(session, now):
        device = session.get(Device, row.device_id) if row.device_id else None
        if device is not None and device.status not in ("active", "decommissioned"):
            continue                                     # still pending
        csr = row.csr_pem if device is not None and device.status == "active" else None
        if not state.take(session, row, "accepted" if csr else "refused", now):
            continue                                     # another registry host answers it
        if device is None or csr is None:
            doc = _refused({"request_id": row.request_id}, "device_refused", now)
        else:
            doc = reply.accepted(session, authority, keys, device, csr, row.request_id, now,
                                 injector=injector, config_keys=config_keys)
        replies.append(PendingReply(row.device_id or "", row.client, doc, row.id))
    session.commit()
    return replies


def delivered(session: Session, reply: PendingReply, now: dt.datetime) -> None:
    """The reply is on the broker (retained): nothing more is owed to the device (committed)."""
    state.answered(session, client=reply.client, now=now, row_id=reply.row)


# -- the registry process's part ----------------------------------------------------------------------------

_CLIENT = re.compile(re.escape(protocol.PREFIX) + r"/enroll/([A-Za-z0-9_.:-]{1,64})/request")


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None: ...


class Enroller:
    """Answers enrollment requests, and every `period` seconds sends the replies owed to devices an operator
    accepted or refused since (the operator's command runs in another process: the database tells)."""

    def __init__(self, sessions: sessionmaker[Session], link: Publisher, authority: Authority,
                 keys: RegistryKeys, injector: KeyInjector, config_keys: Callable[[], Mapping[str, str]], *,
                 clock: Callable[[], dt.datetime], period: float = 2.0,
                 on_accepted: Callable[[str], None] = lambda device_id: None) -> None:
        self.sessions, self.link, self.authority, self.keys = sessions, link, authority, keys
        self.injector, self.config_keys, self.clock, self.period = injector, config_keys, clock, period
        self.on_accepted = on_accepted          # e.g. publish its first signed configuration now
        self._lock = threading.Lock()            # one enrollment at a time: requests and the tick
        self._ticker = Ticker("registry-enroll", self._send_owed, period, log=log,
                              failed="enrollment tick failed")
        self.malformed = 0

    def handlers(self) -> list[tuple[str, Handler]]:
        return [(protocol.subscription("enroll_request"), self.on_request)]

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def on_request(self, topic: str, payload: bytes, props: Any = None) -> None:
        match = _CLIENT.fullmatch(topic)
        try:
            doc = m.decode(payload, d.ENROLL_REQUEST)
        except MessageError as exc:
            self.malformed += 1
            log.warning("malformed enrollment request dropped", extra={"error": str(exc)})
            return
        if match is None:
            self.malformed += 1
            log.warning("enrollment request on an unexpected topic dropped")
            return
        client = match.group(1)
        try:
            with self._lock, self.sessions() as s:
                reply = handle_enroll(s, self.authority, self.keys, doc, self.clock(), client=client,
                                      injector=self.injector, config_keys=self.config_keys())
        except ForecourtError as exc:      # the registry's own trouble (a key file, the CA): nothing stored
            log.error("enrollment failed", extra={"client": client, "error": str(exc)})
            reply = _refused(doc, "registry_error", self.clock())
        log.info("enrollment answered", extra={"client": client, "status": reply["status"],
                                               "reason": reply["reason"], "device": reply.get("device_id")})
        try:
            self._publish(client, reply)
        except HostUnavailable:
            log.warning("enrollment reply not sent: broker unreachable", extra={"client": client})
            if reply["status"] == "accepted":      # owed: the tick issues it again once the broker is back
                with self.sessions() as s:
                    state.wait(s, client=client, request_id=doc["request_id"], device_id=reply["device_id"],
                               csr_pem=doc["csr_pem"], now=self.clock(), status="accepted")
                    s.commit()
            return
        with self.sessions() as s:                 # a final answer: cleared by clear_replies
            if reply["status"] == "pending":
                state.superseded(s, client, self.clock())
                s.commit()
            else:
                state.answered(s, client=client, now=self.clock(), request_id=doc["request_id"],
                               device_id=reply.get("device_id"), status=reply["status"])
        if reply["status"] == "accepted":
            self.on_accepted(reply["device_id"])

    def _publish(self, client: str, reply: dict[str, Any]) -> None:
        self.link.publish(protocol.topic("enroll_reply", client=client), m.encode(reply, d.ENROLL_REPLY),
                          retain=True)

    def clear_replies(self) -> int:
        """Clear (an empty retained message) each final reply once its device has been seen on its own
        certificate, or once it is older than KEEP_REPLY (a refused one: KEEP_REFUSED); the claim identity
        may not publish there (registry.acl). Returns how many were cleared."""
        now, cleared = self.clock(), 0
        with self.sessions() as s:
            for row in state.retained(s):
                at = row.replied_at or now
                device = s.get(Device, row.device_id) if row.reply_status == "accepted" and row.device_id \
                    else None
                seen = device is not None and (device.online or (device.last_seen_at or at) > at)
                keep = KEEP_REPLY if row.reply_status == "accepted" else KEEP_REFUSED
                if seen or now - at > keep:
                    self.link.publish(protocol.topic("enroll_reply", client=row.client), b"", retain=True)
                    state.clear(s, row, now)
                    cleared += 1
        return cleared

    def tick(self) -> int:
        """Send the replies owed to waiting devices; returns how many went out."""
        with self._lock, self.sessions() as s:
            owed = replies_for_accepted(s, self.authority, self.keys, self.clock(), injector=self.injector,
                                        config_keys=self.config_keys())
            for done, reply in enumerate(owed):
                try:
                    self._publish(reply.client, reply.doc)
                except HostUnavailable:                 # the rest are free for the next tick (any host)
                    for left in owed[done:]:
                        state.give_back(s, left.row)
                    raise
                delivered(s, reply, self.clock())
                if reply.doc["status"] == "accepted":
                    self.on_accepted(reply.device_id)
                log.info("enrollment answered", extra={"client": reply.client, "device": reply.device_id,
                                                       "status": reply.doc["status"]})
        return len(owed)

    def renew_crl(self) -> bool:
        """Re-sign the CRL once its nextUpdate is under CRL_RENEW away (registry.pki): a broker refuses
        every client once its CRL has expired. True when renewed."""
        with self._lock:
            renewed = self.authority.renew_crl_if_due(now=self.clock().replace(tzinfo=dt.UTC))
        if renewed:
            log.warning("CRL re-signed before its next update: reload the broker (SIGHUP) to read it",
                        extra={"path": str(self.authority.crl_path)})
        return renewed

    def _send_owed(self) -> None:
        self.renew_crl()                # first: it needs no broker, and the broker away ends the rest
        self.tick()
        self.clear_replies()


def enrollment_handlers(enroller: Enroller) -> list[tuple[str, Handler]]:
    """The enrollment topic's (subscription, handler) pairs for registry/server.py."""
    return enroller.handlers()


def enrollment_part(sessions: sessionmaker[Session], link: Publisher, keys: RegistryKeys, state_dir: Path,
                    tls_dir: Path | None, *, clock: Callable[[], dt.datetime],
                    on_accepted: Callable[[str], None] = lambda device_id: None) -> Enroller | None:
    """The registry's enrollment part: on when it runs with its authority (tls_dir) and a BDK in state_dir
    (registry.keyinject); None, with a warning, when either is missing."""
    from registry.configs import config_keys

    if tls_dir is None:
        return None
    if not (state_dir / BDK_FILE).exists():
        log.warning("enrollment off: no BDK in the state directory",
                    extra={"path": str(state_dir / BDK_FILE)})
        return None
    return Enroller(sessions, link, Authority.load(tls_dir), keys, KeyInjector.load(state_dir),
                    lambda: config_keys(state_dir), clock=clock, on_accepted=on_accepted)
