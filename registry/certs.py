"""Certificate rotation, registry side: an active device asks, over its current certificate, for a
certificate for a new key (CERT_REQUEST on its own cert/request topic); the registry issues it, keeps it as
the device's certificate (PEM, fingerprint and expiry in the devices table) and puts the old one on the CRL.

The broker's ACL lets only the device itself publish under its id, so the topic's id is who asks; a body
naming another device is refused. The old certificate is revoked at once: the device wrote its new pair
before it asked for the certificate and keeps the certificate the moment it arrives (provisioning.rotate),
and a broker reads its CRL when it starts (registry.pki), so the old pair keeps working until then.
A request for the key the device's certificate already holds (the same request again, its reply lost) is
answered with that certificate: nothing new is issued or revoked. A new validity needs a new key.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ForecourtError, HostUnavailable, MessageError
from drivers.mqtt.link import Handler, TlsFiles
from registry.models import Device
from registry.pki import Authority, CertificateRefused, holds_key

__all__ = ["CERT_DAYS", "CertRotator", "cert_rotation_handlers", "handle_cert_request"]

log = logging.getLogger(__name__)

CERT_DAYS = 365


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None: ...


def _refused(doc: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"request_id": doc["request_id"], "status": "refused", "reason": reason}


def handle_cert_request(session: Session, authority: Authority, doc: dict[str, Any], terminal: str,
                        now: dt.datetime) -> tuple[dict[str, Any], str | None]:
    """The CERT_REPLY to a decoded CERT_REQUEST received on `terminal`'s topic (now: naive UTC), and the
    certificate it replaces (to revoke once committed; None when the device had none on file)."""
    if doc["terminal"] != terminal:
        return _refused(doc, "wrong_terminal"), None
    device = session.get(Device, terminal)
    if device is None or device.status != "active":
        return _refused(doc, "device_not_active"), None
    if device.cert_pem and holds_key(device.cert_pem, doc["csr_pem"]):
        # the same request again (its reply was lost): the certificate issued for it, nothing revoked
        return {"request_id": doc["request_id"], "status": "issued", "reason": "",
                "certificate_pem": device.cert_pem}, None
    try:
        issued = authority.issue(doc["csr_pem"], device.id, days=CERT_DAYS, now=now.replace(tzinfo=dt.UTC))
    except CertificateRefused as exc:
        return _refused(doc, f"bad_csr: {exc}"[:200]), None
    old, device.cert_pem = device.cert_pem, issued.cert_pem
    device.cert_fingerprint = issued.fingerprint
    device.cert_expires_at = issued.not_after.astimezone(dt.UTC).replace(tzinfo=None)
    session.commit()
    return {"request_id": doc["request_id"], "status": "issued", "reason": "",
            "certificate_pem": issued.cert_pem}, old


class CertRotator:
    """The registry part that answers certificate requests; handlers() for registry/server.py."""

    def __init__(self, sessions: sessionmaker[Session], link: Publisher, authority: Authority, *,
                 clock: Callable[[], dt.datetime]) -> None:
        self.sessions, self.link, self.authority, self.clock = sessions, link, authority, clock
        self._lock = threading.Lock()             # one issue at a time: the CA's files and the CRL
        self.malformed = 0

    def handlers(self) -> list[tuple[str, Handler]]:
        return [(protocol.subscription("cert_request"), self.on_request)]

    def on_request(self, topic: str, payload: bytes, props: Any = None) -> None:
        terminal = protocol.terminal_of(topic)
        try:
            doc = m.decode(payload, d.CERT_REQUEST)
        except MessageError as exc:
            self.malformed += 1
            log.warning("malformed certificate request dropped", extra={"terminal": terminal,
                                                                        "error": str(exc)})
            return
        if terminal is None:
            self.malformed += 1
            return
        now, old = self.clock(), None
        try:
            with self._lock, self.sessions() as s:
                reply, old = handle_cert_request(s, self.authority, doc, terminal, now)
        except ForecourtError as exc:       # the registry's own trouble (the CA's files): nothing issued
            log.error("certificate request failed", extra={"terminal": terminal, "error": str(exc)})
            reply = _refused(doc, "registry_error")
        if old is not None:
            try:
                with self._lock:
                    self.authority.revoke(old, now=now.replace(tzinfo=dt.UTC))
            except ForecourtError as exc:   # the new certificate stands; the old one needs an operator
                log.error("old certificate not revoked", extra={"terminal": terminal, "error": str(exc)})
        log.info("certificate request answered", extra={"terminal": terminal, "status": reply["status"],
                                                        "reason": reply["reason"]})
        try:
            self.link.publish(protocol.topic("cert_reply", terminal=terminal), m.encode(reply, d.CERT_REPLY))
        except HostUnavailable:             # the device asks again and gets the same certificate
            log.warning("certificate reply not sent: broker unreachable", extra={"terminal": terminal})


def cert_rotation_handlers(sessions: sessionmaker[Session], link: Publisher, tls: TlsFiles | None, *,
                           clock: Callable[[], dt.datetime]) -> list[tuple[str, Handler]]:
    """The (subscription, handler) pairs for registry/server.py: certificate requests answered by the
    authority whose directory holds the registry's TLS files; none without TLS or without the CA's key."""
    if tls is None:
        return []
    if not (tls.ca.parent / "ca.key").exists():      # the CA signs elsewhere: no rotation by this registry
        log.warning("certificate rotation off: no CA key beside the registry's TLS files",
                    extra={"path": str(tls.ca.parent)})
        return []
    return CertRotator(sessions, link, Authority.load(tls.ca.parent), clock=clock).handlers()
