"""registry.enroll: a new device's enrollment request, its reasons to refuse, the operator's accept, the keys
and certificate an accepted device gets, and one device per token under racing requests."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from test_central_hostile import UNREADABLE, unreadable_csr
from test_registry_devices import NOW, Central, device_csr, make_central

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError, HostUnavailable
from contracts.sealbox import keys_context, open_sealed
from contracts.signing import key_id, public_b64
from drivers.pinpad.dukpt_aes import derive_initial_key
from hostsim.bank_world import BDK
from registry import devices, enroll_reply
from registry.configs import config_keys
from registry.enroll import (
    CLOCK_SKEW,
    Enroller,
    delivered,
    enrollment_handlers,
    enrollment_part,
    handle_enroll,
    made_up_id,
    replies_for_accepted,
)
from registry.enroll_state import LEASE
from registry.keyinject import install_bdk
from registry.models import Device, EnrollmentToken, Station
from registry.pki import CRL_DAYS, CRL_RENEW, Authority, fingerprint

_CONFIG_KEY = Ed25519PrivateKey.generate().public_key()
CONFIG_KEYS = {key_id(_CONFIG_KEY): public_b64(_CONFIG_KEY)}          # the registry's, as registry.configs
CLIENT = "claim-SN-1"


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    yield from make_central(tmp_path)


def token(central: Central, **kw: Any) -> str:
    with central.sessions() as s:
        return devices.create_token(s, "ST-001", kw.pop("now", NOW), **kw)


def request(tok: str, serial: str = "SN-1", key: ec.EllipticCurvePrivateKey | None = None, *,
            client_time: dt.datetime = NOW, csr: str | None = None) -> dict[str, Any]:
    """An ENROLL_REQUEST exactly as the wire carries it."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    doc = {"request_id": str(uuid.uuid4()), "token": tok, "serial": serial,
           "csr_pem": csr or device_csr(key, serial), "software_version": "1.4.2",
           "client_time": client_time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return m.decode(m.encode(doc, d.ENROLL_REQUEST), d.ENROLL_REQUEST)


def enroll(central: Central, doc: dict[str, Any], now: dt.datetime = NOW,
           client: str = CLIENT) -> dict[str, Any]:
    with central.sessions() as s:
        reply = handle_enroll(s, central.authority, central.keys, doc, now, client=client,
                              injector=central.injector, config_keys=CONFIG_KEYS)
    return m.decode(m.encode(reply, d.ENROLL_REPLY), d.ENROLL_REPLY)     # the reply is a valid message


def expect(central: Central, serial: str, device_id: str | None = None) -> None:
    with central.sessions() as s:
        devices.import_expected(s, f"{serial},ST-001,{device_id or ''}\n", NOW)


def check_accepted(central: Central, reply: dict[str, Any], request_doc: dict[str, Any],
                   key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The reply carries a certificate for the device key with CN = device id, the CA, the config keys, and
    keys that open with the device key only for this request; returns the opened keys."""
    assert reply["status"] == "accepted" and reply["request_id"] == request_doc["request_id"]
    cert = x509.load_pem_x509_certificate(reply["certificate_pem"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == reply["device_id"]
    assert cert.public_key() == key.public_key()
    assert central.authority.issued(cert) and reply["ca_pem"] == central.authority.ca_pem
    assert reply["config_keys"] == CONFIG_KEYS and reply["station"] == "ST-001"
    device = central.device(reply["device_id"])
    assert device is not None and device.status == "active"
    assert device.cert_fingerprint == fingerprint(reply["certificate_pem"])
    assert device.cert_expires_at == cert.not_valid_after_utc.replace(tzinfo=None)
    keys = json.loads(open_sealed(key, reply["keys_sealed"],
                                  context=keys_context(reply["device_id"], request_doc["request_id"])))
    assert bytes.fromhex(keys["pin_key"]) == central.keys.device_key(device.pin_key_hex)
    assert keys["dukpt_key_id"].upper() == device.dukpt_key_id
    assert keys["dukpt_initial_key"] == derive_initial_key(BDK, bytes.fromhex(keys["dukpt_key_id"])).hex()
    return dict(keys)


# -- accepted at once, or pending for an operator -----------------------------------------------------------

def test_a_serial_registered_ahead_is_accepted_at_once(central: Central) -> None:
    expect(central, "SN-1", "T-0200")
    key = ec.generate_private_key(ec.SECP256R1())
    doc = request(token(central), key=key)
    reply = enroll(central, doc)
    assert reply["device_id"] == "T-0200"
    keys = check_accepted(central, reply, doc, key)
    assert bytes.fromhex(keys["pin_key"]) == central.injector.pin_key("T-0200")
    device = central.device("T-0200")
    assert device is not None and (device.serial, device.first_seen_at) == ("SN-1", NOW)
    assert device.reported_software_version == "1.4.2"
    with central.sessions() as s:
        row = s.scalars(select(EnrollmentToken)).one()
    assert (row.used_at, row.used_by) == (NOW, "T-0200")


def test_an_unknown_serial_waits_for_an_operator(central: Central) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    doc = request(token(central, device_id="T-0300"), key=key)
    reply = enroll(central, doc)
    assert (reply["status"], reply["device_id"], reply["station"]) == ("pending", "T-0300", "ST-001")
    assert "certificate_pem" not in reply and "keys_sealed" not in reply
    device = central.device("T-0300")
    assert device is not None and device.status == "pending" and device.cert_fingerprint is None
    with central.sessions() as s:                 # nothing owed while it waits
        assert replies_for_accepted(s, central.authority, central.keys, NOW, injector=central.injector,
                                    config_keys=CONFIG_KEYS) == []
        devices.accept(s, "T-0300")
    later = NOW + dt.timedelta(minutes=30)
    with central.sessions() as s:
        owed = replies_for_accepted(s, central.authority, central.keys, later, injector=central.injector,
                                    config_keys=CONFIG_KEYS)
    assert [(r.device_id, r.client) for r in owed] == [("T-0300", CLIENT)]
    check_accepted(central, m.decode(m.encode(owed[0].doc, d.ENROLL_REPLY), d.ENROLL_REPLY), doc, key)
    with central.sessions() as s:
        delivered(s, owed[0], later)
        assert replies_for_accepted(s, central.authority, central.keys, later, injector=central.injector,
                                    config_keys=CONFIG_KEYS) == []


def test_a_pending_device_refused_by_the_operator_is_told(central: Central) -> None:
    reply = enroll(central, request(token(central)))
    with central.sessions() as s:
        devices.decommission(s, central.authority, reply["device_id"], NOW)
        owed = replies_for_accepted(s, central.authority, central.keys, NOW, injector=central.injector,
                                    config_keys=CONFIG_KEYS)
    assert [(r.doc["status"], r.doc["reason"]) for r in owed] == [("refused", "device_refused")]
    assert central.authority.revoked_serials() == []           # it never had a certificate


def test_an_imported_serial_for_another_station_waits(central: Central) -> None:
    """The import says ST-001, the token ST-002: an operator decides (pending, at the token's station)."""
    expect(central, "SN-1")
    with central.sessions() as s:
        s.add(Station(id="ST-002", name="Other"))
        s.commit()
        tok = devices.create_token(s, "ST-002", NOW)
    reply = enroll(central, request(tok))
    assert (reply["status"], reply["station"]) == ("pending", "ST-002")


def test_the_device_id_comes_from_the_token_the_import_or_the_serial(central: Central) -> None:
    expect(central, "SN-2", "T-0402")
    assert enroll(central, request(token(central, device_id="T-0401"), "SN-1"))["device_id"] == "T-0401"
    assert enroll(central, request(token(central), "SN-2"))["device_id"] == "T-0402"
    made = enroll(central, request(token(central), "SN-3"))["device_id"]
    assert made == made_up_id("SN-3") and made.startswith("T-") and len(made) == 12


def test_a_seeded_device_gets_its_own_pin_key(central: Central) -> None:
    """T-0001 comes from the seed with the PIN key the registry checks PINs with: enrolling with a token
    naming it takes that row (accepted at once: an operator made it) and delivers that key."""
    key = ec.generate_private_key(ec.SECP256R1())
    doc = request(token(central, device_id="T-0001"), "SN-9", key=key)
    reply = enroll(central, doc)
    assert reply["device_id"] == "T-0001"
    keys = check_accepted(central, reply, doc, key)
    assert keys["pin_key"].upper() == "8B2F4E01A7C3D95E6F1028374C5D6E7F"     # the seed's, not a derived one
    device = central.device("T-0001")
    assert device is not None and device.serial == "SN-9"
    again = enroll(central, request(token(central), "SN-10"))
    assert again["status"] == "pending"                      # another device, another id
    with central.sessions() as s, pytest.raises(ConfigError, match="already exists"):
        devices.create_token(s, "ST-001", NOW, device_id="T-0001")   # enrolled: no longer open


def test_a_seeded_pending_device_registered_ahead_is_accepted_at_once(central: Central) -> None:
    """A device the seed lists as pending, its serial imported for the token's station: accepted at once,
    as a new device with that serial would be (not left waiting for an operator)."""
    with central.sessions() as s:
        s.add(Device(id="T-0800", station_id="ST-001", status="pending",
                     pin_key_hex=central.keys.seal_device_key(bytes(range(16)))))
        s.commit()
    expect(central, "SN-8", "T-0800")
    key = ec.generate_private_key(ec.SECP256R1())
    doc = request(token(central, device_id="T-0800"), "SN-8", key=key)
    reply = enroll(central, doc)
    assert (reply["status"], reply["device_id"]) == ("accepted", "T-0800")
    assert bytes.fromhex(check_accepted(central, reply, doc, key)["pin_key"]) == bytes(range(16))


def test_a_seeded_pending_device_not_registered_ahead_still_waits(central: Central) -> None:
    with central.sessions() as s:
        s.add(Device(id="T-0801", station_id="ST-001", status="pending",
                     pin_key_hex=central.keys.seal_device_key(bytes(16))))
        s.commit()
    reply = enroll(central, request(token(central, device_id="T-0801"), "SN-9"))
    assert (reply["status"], reply["device_id"]) == ("pending", "T-0801")


def test_racing_requests_for_one_seeded_device_take_it_once(central: Central) -> None:
    replies = _race(central, [request(token(central, device_id="T-0001"), f"SN-{i}") for i in range(6)])
    assert sorted(r["status"] for r in replies) == ["accepted"] + ["refused"] * 5
    assert {r["reason"] for r in replies if r["status"] == "refused"} == {"id_taken"}
    with central.sessions() as s:
        assert sum(t.used_at is not None for t in s.scalars(select(EnrollmentToken)).all()) == 1


# -- refusals ----------------------------------------------------------------------------------------------

def test_an_unknown_token_is_refused(central: Central) -> None:
    reply = enroll(central, request("A" * 43))
    assert (reply["status"], reply["reason"]) == ("refused", "token_unknown")
    assert central.device(made_up_id("SN-1")) is None


def test_an_expired_token_is_refused(central: Central) -> None:
    tok = token(central)
    late = NOW + dt.timedelta(minutes=15)
    reply = enroll(central, request(tok, client_time=late), now=late)
    assert reply["reason"] == "token_expired"
    ok = enroll(central, request(tok, client_time=late - dt.timedelta(seconds=1)),
                now=late - dt.timedelta(seconds=1))
    assert ok["status"] == "pending"


def test_the_same_request_again_is_answered_not_token_used(central: Central) -> None:
    """A device resuming a request whose "pending" answer it missed sends it again: same request id."""
    doc = request(token(central, device_id="T-0310"))
    assert enroll(central, doc)["status"] == "pending"
    again = enroll(central, doc)
    assert (again["status"], again["device_id"]) == ("pending", "T-0310")
    assert again["request_id"] == doc["request_id"]
    other = enroll(central, doc | {"request_id": str(uuid.uuid4())})
    assert (other["status"], other["reason"]) == ("refused", "token_used")
    with central.sessions() as s:
        devices.accept(s, "T-0310")
        [owed] = replies_for_accepted(s, central.authority, central.keys, NOW, injector=central.injector,
                                      config_keys=CONFIG_KEYS)
        delivered(s, owed, NOW)
    # answered for good; the same request once more (the device lost its retained answer, or another claim
    # holder's request replaced it) gets the same certificate again, another key nothing
    more = enroll(central, doc)
    assert (more["status"], more["certificate_pem"]) == ("accepted", owed.doc["certificate_pem"])
    assert more["keys_sealed"] != owed.doc["keys_sealed"]                  # sealed afresh, to the same key
    assert enroll(central, request(doc["token"], doc["serial"]) | {"request_id": doc["request_id"]}
                  )["reason"] == "token_used"


def test_a_token_opens_one_device(central: Central) -> None:
    tok = token(central)
    assert enroll(central, request(tok, "SN-1"))["status"] == "pending"
    again = enroll(central, request(tok, "SN-2"))
    assert (again["status"], again["reason"]) == ("refused", "token_used")
    assert enroll(central, request(tok, "SN-1"))["reason"] == "token_used"


@pytest.mark.parametrize("off", [CLOCK_SKEW + dt.timedelta(seconds=1), -CLOCK_SKEW - dt.timedelta(seconds=1),
                                 dt.timedelta(days=400)])
def test_a_clock_far_off_is_refused_and_keeps_the_token(central: Central, off: dt.timedelta) -> None:
    tok = token(central)
    reply = enroll(central, request(tok, client_time=NOW + off))
    assert (reply["reason"], reply["server_time"]) == ("clock_skew", "2026-12-01T12:00:00.000000Z")
    assert enroll(central, request(tok, client_time=NOW + CLOCK_SKEW))["status"] == "pending"


def test_a_serial_enrolled_before_is_refused(central: Central) -> None:
    enroll(central, request(token(central), "SN-1"))
    tok = token(central)
    assert enroll(central, request(tok, "SN-1"))["reason"] == "serial_taken"
    assert enroll(central, request(tok, "SN-2"))["status"] == "pending"     # the token was kept


def test_an_id_taken_is_refused(central: Central) -> None:
    expect(central, "SN-1", "T-0500")
    with central.sessions() as s:
        s.add(Device(id="T-0500", station_id="ST-001", pin_key_hex=central.keys.seal_device_key(bytes(16)),
                     serial="SN-0"))
        s.commit()
    assert enroll(central, request(token(central)))["reason"] == "id_taken"


def _other_signature_csr() -> str:
    """A CSR whose signature is not by the key it carries: one request's body, another's signature."""
    a, b = (x509.load_pem_x509_csr(device_csr(ec.generate_private_key(ec.SECP256R1())).encode())
            for _ in range(2))
    der = b.public_bytes(serialization.Encoding.DER)
    assert len(a.tbs_certrequest_bytes) == len(b.tbs_certrequest_bytes)
    der = der.replace(b.tbs_certrequest_bytes, a.tbs_certrequest_bytes)
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der).decode() + \
        "-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("make", [
    lambda: device_csr(ec.generate_private_key(ec.SECP384R1())),
    _other_signature_csr,
])
def test_a_bad_csr_is_refused_and_keeps_the_token(central: Central, make: Any) -> None:
    tok = token(central)
    csr = make()
    reply = enroll(central, request(tok, csr=csr))
    assert (reply["status"], reply["reason"]) == ("refused", "bad_csr")
    assert enroll(central, request(tok))["status"] == "pending"


def test_a_refusal_changes_nothing(central: Central) -> None:
    enroll(central, request("A" * 43))
    enroll(central, request(token(central), client_time=NOW + dt.timedelta(hours=1)))
    with central.sessions() as s:
        assert [d.id for d in s.scalars(select(Device)).all()] == ["T-0001"]
        assert all(t.used_at is None for t in s.scalars(select(EnrollmentToken)).all())


# -- races ----------------------------------------------------------------------------------------------

def _race(central: Central, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    barrier = threading.Barrier(len(docs))
    replies: list[dict[str, Any]] = []

    def run(doc: dict[str, Any]) -> None:
        barrier.wait()
        replies.append(enroll(central, doc))

    threads = [threading.Thread(target=run, args=(doc,)) for doc in docs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return replies


def test_racing_requests_with_one_token_make_one_device(central: Central) -> None:
    tok = token(central)
    replies = _race(central, [request(tok, f"SN-{i}") for i in range(8)])
    assert sorted(r["status"] for r in replies) == ["pending"] + ["refused"] * 7
    assert {r["reason"] for r in replies if r["status"] == "refused"} == {"token_used"}
    with central.sessions() as s:
        assert len(s.scalars(select(Device)).all()) == 2          # T-0001 and the winner


@pytest.mark.parametrize("kind", UNREADABLE)
def test_a_csr_that_parses_but_holds_no_usable_key_is_refused_bad_csr(central: Central, kind: str) -> None:
    """The three CSRs fuzz target registry_handlers found (cryptography raises InvalidVersion,
    UnsupportedAlgorithm or ValueError from the load, the signature check or the key)."""
    tok = token(central)
    reply = enroll(central, request(tok, csr=unreadable_csr(kind)))
    assert (reply["status"], reply["reason"]) == ("refused", "bad_csr")
    with central.sessions() as s:
        assert s.get(EnrollmentToken, devices.token_digest(tok)).used_at is None   # type: ignore[union-attr]


def test_racing_requests_for_one_serial_make_one_device(central: Central) -> None:
    replies = _race(central, [request(token(central), "SN-1") for _ in range(6)])
    assert sorted(r["status"] for r in replies) == ["pending"] + ["refused"] * 5
    assert {r["reason"] for r in replies if r["status"] == "refused"} <= {"serial_taken", "id_taken"}
    with central.sessions() as s:
        assert sum(t.used_at is not None for t in s.scalars(select(EnrollmentToken)).all()) == 1


# -- the registry process's part ---------------------------------------------------------------------------

class Link:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None:
        self.sent.append((topic, payload, retain))

    def reply(self) -> dict[str, Any]:
        """The last answer sent, checked to be retained on the test client's reply topic."""
        topic, payload, retain = self.sent[-1]
        assert topic == protocol.topic("enroll_reply", client=CLIENT) and retain
        return m.decode(payload, d.ENROLL_REPLY)


def test_the_enroller_answers_on_the_clients_reply_topic_retained(central: Central) -> None:
    link = Link()
    enroller = Enroller(central.sessions, link, central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: NOW)
    [(subscription, handler)] = enroller.handlers()
    assert subscription == protocol.subscription("enroll_request")
    key = ec.generate_private_key(ec.SECP256R1())
    doc = request(token(central, device_id="T-0600"), key=key)
    handler(protocol.topic("enroll_request", client=CLIENT), m.encode(doc, d.ENROLL_REQUEST), None)
    handler(protocol.topic("enroll_request", client=CLIENT), b'{"v":1,"token":"x"}', None)
    assert enroller.malformed == 1
    assert len(link.sent) == 1 and link.reply()["status"] == "pending"
    assert enroller.tick() == 0
    with central.sessions() as s:
        devices.accept(s, "T-0600")
    assert enroller.tick() == 1 and enroller.tick() == 0
    check_accepted(central, link.reply(), doc, key)


def test_no_key_or_token_is_logged(central: Central, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    link = Link()
    enroller = Enroller(central.sessions, link, central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: NOW)
    expect(central, "SN-1")
    tok = token(central)
    enroller.on_request(protocol.topic("enroll_request", client=CLIENT),
                        m.encode(request(tok), d.ENROLL_REQUEST))
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    device = central.device(made_up_id("SN-1"))
    assert device is not None and device.status == "active"
    pin = central.keys.device_key(device.pin_key_hex).hex()
    assert tok not in text and pin not in text.lower() and pin.upper() not in text
    assert "enrollment answered" in caplog.text


def test_the_enroller_asks_for_a_configuration_for_each_accepted_device(central: Central) -> None:
    accepted: list[str] = []
    enroller = Enroller(central.sessions, Link(), central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: NOW, on_accepted=accepted.append)
    expect(central, "SN-1", "T-0801")
    enroller.on_request(protocol.topic("enroll_request", client="claim-SN-1"),
                        m.encode(request(token(central), "SN-1"), d.ENROLL_REQUEST))
    enroller.on_request(protocol.topic("enroll_request", client="claim-SN-2"),
                        m.encode(request(token(central, device_id="T-0802"), "SN-2"), d.ENROLL_REQUEST))
    assert accepted == ["T-0801"]
    with central.sessions() as s:
        devices.accept(s, "T-0802")
    enroller.tick()
    assert accepted == ["T-0801", "T-0802"]


def test_the_enrollment_part_needs_the_authority_and_a_bdk(central: Central, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    assert enrollment_part(central.sessions, Link(), central.keys, state, None, clock=lambda: NOW) is None
    bare = tmp_path / "bare"
    bare.mkdir()
    assert enrollment_part(central.sessions, Link(), central.keys, bare, central.authority.directory,
                           clock=lambda: NOW) is None
    assert "enrollment off: no BDK" in caplog.text
    part = enrollment_part(central.sessions, Link(), central.keys, state, central.authority.directory,
                           clock=lambda: NOW)
    assert isinstance(part, Enroller) and part.injector.bdk == BDK
    assert part.config_keys() == config_keys(state)


def test_install_bdk_writes_it_once_private(tmp_path: Path) -> None:
    path = install_bdk(tmp_path, BDK)
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text().strip() == BDK.hex().upper()
    install_bdk(tmp_path, bytes(16))                      # one is there: kept
    assert path.read_text().strip() == BDK.hex().upper()


def test_a_final_reply_is_cleared_once_the_device_is_seen_or_it_is_old(central: Central) -> None:
    """The claim identity may not clear its retained reply (registry.acl): the registry does, with an empty
    retained message, once the device connected on its own certificate; a refusal after an hour."""
    clock = [NOW]
    link = Link()
    enroller = Enroller(central.sessions, link, central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: clock[0])
    expect(central, "SN-1", "T-0901")
    enroller.on_request(protocol.topic("enroll_request", client="claim-SN-1"),
                        m.encode(request(token(central), "SN-1"), d.ENROLL_REQUEST))
    enroller.on_request(protocol.topic("enroll_request", client="claim-SN-2"),
                        m.encode(request("B" * 43, "SN-2"), d.ENROLL_REQUEST))
    enroller.on_request(protocol.topic("enroll_request", client="claim-SN-3"),
                        m.encode(request(token(central), "SN-3"), d.ENROLL_REQUEST))     # pending: kept
    sent = len(link.sent)
    assert enroller.clear_replies() == 0 and len(link.sent) == sent
    with central.sessions() as s:
        device = s.get(Device, "T-0901")
        assert device is not None
        device.online, device.last_seen_at = True, NOW + dt.timedelta(seconds=5)
        s.commit()
    assert enroller.clear_replies() == 1
    assert link.sent[-1] == (protocol.topic("enroll_reply", client="claim-SN-1"), b"", True)
    clock[0] = NOW + dt.timedelta(minutes=61)
    assert enroller.clear_replies() == 1
    assert link.sent[-1] == (protocol.topic("enroll_reply", client="claim-SN-2"), b"", True)
    assert enroller.clear_replies() == 0


def test_an_accepted_reply_the_broker_did_not_take_is_sent_again(central: Central) -> None:
    class Down(Link):
        up = False

        def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                    properties: Any = None) -> None:
            if not self.up:
                raise HostUnavailable("not connected to the broker")
            super().publish(topic, payload, retain=retain)

    link = Down()
    enroller = Enroller(central.sessions, link, central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: NOW)
    expect(central, "SN-1", "T-1001")
    key = ec.generate_private_key(ec.SECP256R1())
    doc = request(token(central), "SN-1", key=key)
    enroller.on_request(protocol.topic("enroll_request", client=CLIENT), m.encode(doc, d.ENROLL_REQUEST))
    first = central.device("T-1001")
    with pytest.raises(HostUnavailable):
        enroller.tick()
    link.up = True
    assert enroller.tick() == 1
    check_accepted(central, link.reply(), doc, key)
    # paho may still deliver the first publish on reconnect: the reply sent again holds the same certificate
    assert first is not None and link.reply()["certificate_pem"] == first.cert_pem


def test_a_reply_prepared_again_for_the_same_key_reuses_the_certificate(central: Central) -> None:
    """Each reply prepared for one key carries the one certificate, so revoking the device revokes what it
    holds, whichever reply arrived."""
    expect(central, "SN-1", "T-1001")
    doc = request(token(central), "SN-1")
    first = enroll(central, doc)["certificate_pem"]
    with central.sessions() as s:
        device = s.get(Device, "T-1001")
        assert device is not None
        again = enroll_reply.accepted(s, central.authority, central.keys, device, doc["csr_pem"],
                                      doc["request_id"], NOW, injector=central.injector,
                                      config_keys=CONFIG_KEYS)
        s.commit()
        assert again["certificate_pem"] == first and device.cert_pem == first
        devices.revoke(s, central.authority, "T-1001", NOW)
    serial = x509.load_pem_x509_certificate(first.encode()).serial_number
    assert serial in central.authority.revoked_serials()


def test_a_certificate_for_another_key_is_revoked_before_a_new_one(central: Central) -> None:
    expect(central, "SN-1", "T-1001")
    first = enroll(central, request(token(central), "SN-1"))["certificate_pem"]
    other = device_csr(ec.generate_private_key(ec.SECP256R1()), "SN-1")
    with central.sessions() as s:
        device = s.get(Device, "T-1001")
        assert device is not None
        new = enroll_reply.accepted(s, central.authority, central.keys, device, other, str(uuid.uuid4()),
                                    NOW, injector=central.injector,
                                    config_keys=CONFIG_KEYS)["certificate_pem"]
        s.commit()
    assert new != first
    revoked = central.authority.revoked_serials()
    assert x509.load_pem_x509_certificate(first.encode()).serial_number in revoked
    assert x509.load_pem_x509_certificate(new.encode()).serial_number not in revoked


def test_the_enrollment_ticker_renews_the_crl_before_it_expires(central: Central) -> None:
    """A broker refuses every client once its CRL has expired (registry.pki CRL_DAYS): the registry's
    enrollment tick re-signs it when nextUpdate is under CRL_RENEW away, keeping its entries."""
    expect(central, "SN-1", "T-1001")
    cert = enroll(central, request(token(central), "SN-1"))["certificate_pem"]
    with central.sessions() as s:
        devices.revoke(s, central.authority, "T-1001", NOW)
    clock = [NOW]
    enroller = Enroller(central.sessions, Link(), central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: clock[0], period=0.05)
    assert not enroller.renew_crl()
    clock[0] = NOW + dt.timedelta(days=CRL_DAYS) - CRL_RENEW + dt.timedelta(hours=1)

    def next_update() -> dt.datetime | None:
        return x509.load_pem_x509_crl(central.authority.crl_path.read_bytes()).next_update_utc

    renewed = clock[0].replace(tzinfo=dt.UTC) + dt.timedelta(days=CRL_DAYS)
    enroller.start()
    try:
        assert wait_until(lambda: next_update() == renewed)
    finally:
        enroller.stop()
    serial = x509.load_pem_x509_certificate(cert.encode()).serial_number
    assert central.authority.revoked_serials() == [serial]


def wait_until(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- several registry hosts on one database: the state is in the database, not beside the CA ---------------

def second_host(central: Central, tmp_path: Path, link: Link, clock: Any = lambda: NOW) -> Enroller:
    """Another registry host: the same database, its own copy of the authority's files."""
    copy = tmp_path / "host-b"
    shutil.copytree(central.authority.directory, copy)
    return Enroller(central.sessions, link, Authority.load(copy), central.keys, central.injector,
                    lambda: CONFIG_KEYS, clock=clock)


def test_another_registry_host_answers_a_request_the_first_took(central: Central, tmp_path: Path) -> None:
    files = sorted(p.name for p in central.authority.directory.iterdir())
    link_a, link_b = Link(), Link()
    host_a = Enroller(central.sessions, link_a, central.authority, central.keys, central.injector,
                      lambda: CONFIG_KEYS, clock=lambda: NOW)
    host_b = second_host(central, tmp_path, link_b)
    key = ec.generate_private_key(ec.SECP256R1())
    doc = request(token(central, device_id="T-0700"), key=key)
    host_a.on_request(protocol.topic("enroll_request", client=CLIENT), m.encode(doc, d.ENROLL_REQUEST))
    again = enroll(central, doc)                             # resumed at host B: still pending there
    assert (again["status"], again["device_id"]) == ("pending", "T-0700")
    with central.sessions() as s:
        devices.accept(s, "T-0700")
    assert host_b.tick() == 1 and host_a.tick() == 0
    reply = link_b.reply()
    check_accepted(central, reply, doc, key)
    with central.sessions() as s:
        device = s.get(Device, "T-0700")
        assert device is not None and device.cert_pem == reply["certificate_pem"]
        device.online = True
        s.commit()
    assert host_a.clear_replies() == 1 and host_b.clear_replies() == 0       # cleared once, by either
    assert link_a.sent[-1] == (protocol.topic("enroll_reply", client=CLIENT), b"", True)
    assert sorted(p.name for p in central.authority.directory.iterdir()) == files   # nothing beside the CA


def test_one_registry_host_prepares_each_answer(central: Central, tmp_path: Path) -> None:
    """A host that took an owed answer keeps it for LEASE; the other issues no second certificate."""
    link_b = Link()
    host_b = second_host(central, tmp_path, link_b, clock=lambda: NOW + LEASE + dt.timedelta(seconds=1))
    enroll(central, request(token(central, device_id="T-0710")))
    with central.sessions() as s:
        devices.accept(s, "T-0710")
        [taken] = replies_for_accepted(s, central.authority, central.keys, NOW, injector=central.injector,
                                       config_keys=CONFIG_KEYS)
        assert replies_for_accepted(s, central.authority, central.keys, NOW, injector=central.injector,
                                    config_keys=CONFIG_KEYS) == []
    first = central.device("T-0710")
    assert first is not None and first.cert_pem == taken.doc["certificate_pem"]
    assert host_b.tick() == 1                # host A vanished before publishing: taken over after LEASE
    assert host_b.tick() == 0
    # host A may still publish its copy: host B's holds the same certificate, none issued a second time
    now = central.device("T-0710")
    assert link_b.reply()["certificate_pem"] == first.cert_pem and now is not None
    assert now.cert_pem == first.cert_pem


def test_a_reply_replaced_on_the_claim_topic_is_not_cleared(central: Central) -> None:
    """A refusal, then a pending answer to the same claim client: the retained message is the pending one,
    which clearing the refusal an hour later would wipe."""
    clock = [NOW]
    link = Link()
    enroller = Enroller(central.sessions, link, central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: clock[0])
    topic = protocol.topic("enroll_request", client=CLIENT)
    enroller.on_request(topic, m.encode(request("B" * 43), d.ENROLL_REQUEST))           # token_unknown
    enroller.on_request(topic, m.encode(request(token(central)), d.ENROLL_REQUEST))     # pending
    assert [m.decode(p, d.ENROLL_REPLY)["status"] for _, p, _ in link.sent] == ["refused", "pending"]
    clock[0] = NOW + dt.timedelta(hours=2)
    assert enroller.clear_replies() == 0 and len(link.sent) == 2


# -- on the wire: the device's `provision init` and the registry's part through TLS Mosquitto ----------------

@pytest.fixture
def wire(central: Central, tmp_path: Path) -> Iterator[tuple[Central, int, Enroller]]:
    """Mosquitto with the authority's TLS, ACL and CRL; the registry's enrollment part on its certificate."""
    from drivers.mqtt import MqttLink, TlsFiles
    from hostsim.services import free_port, mosquitto_exe, start_mosquitto

    try:
        mosquitto_exe()
    except Exception:                                       # noqa: BLE001 - no broker on this machine
        pytest.skip("no mosquitto")
    port = free_port()
    proc = start_mosquitto(tmp_path, port, tls_dir=central.authority.directory)
    f = central.authority.directory
    link = MqttLink("127.0.0.1", port, "forecourt-registry",
                    tls=TlsFiles(f / "ca.pem", f / "registry.pem", f / "registry.key"))
    enroller = Enroller(central.sessions, link, central.authority, central.keys, central.injector,
                        lambda: CONFIG_KEYS, clock=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None),
                        period=0.2)
    for subscription, handler in enrollment_handlers(enroller):
        link.subscribe(subscription, handler)
    link.start()
    try:
        assert link.wait_connected(10), link.refused
        enroller.start()
        yield central, port, enroller
    finally:
        enroller.stop()
        link.stop()
        proc.stop()


def _provision(central: Central, port: int, tmp_path: Path, tok: str, serial: str, said: list[str]) -> Any:
    from provisioning.enroll import InitOptions
    from provisioning.enroll import enroll as provision

    opts = InitOptions(state_dir=tmp_path / serial, host="127.0.0.1", port=port, token=tok, serial=serial,
                       claim_dir=central.authority.directory, wait=20.0)
    return provision(opts, say=said.append)


def test_a_device_registered_ahead_provisions_over_the_broker(wire: tuple[Central, int, Enroller],
                                                              tmp_path: Path) -> None:
    central, port, _ = wire
    expect(central, "SN-W1", "T-2001")
    with central.sessions() as s:
        tok = devices.create_token(s, "ST-001", dt.datetime.now(dt.UTC).replace(tzinfo=None))
    said: list[str] = []
    done = _provision(central, port, tmp_path, tok, "SN-W1", said)
    assert (done.device_id, done.station) == ("T-2001", "ST-001")
    state = tmp_path / "SN-W1"
    assert (state / "pek.hex").read_text().strip() == central.injector.pin_key("T-2001").hex().upper()
    device = central.device("T-2001")
    assert device is not None and device.status == "active" and device.dukpt_key_id is not None
    assert device.dukpt_key_id in (state / "dukpt.toml").read_text()
    assert device.cert_fingerprint == fingerprint((state / "device.pem").read_text())
    assert not any(tok in line for line in said)


def test_a_pending_device_finishes_once_an_operator_accepts(wire: tuple[Central, int, Enroller],
                                                           tmp_path: Path) -> None:
    central, port, _ = wire
    with central.sessions() as s:
        tok = devices.create_token(s, "ST-001", dt.datetime.now(dt.UTC).replace(tzinfo=None),
                                   device_id="T-2002")

    def operator() -> None:
        for _ in range(100):
            device = central.device("T-2002")
            if device is not None and device.status == "pending":
                with central.sessions() as s:
                    devices.accept(s, "T-2002")
                return
            threading.Event().wait(0.1)

    accept = threading.Thread(target=operator)
    accept.start()
    said: list[str] = []
    done = _provision(central, port, tmp_path, tok, "SN-W2", said)
    accept.join(10)
    assert done.device_id == "T-2002"
    assert any("waiting for an operator to accept T-2002" in line for line in said)
    assert (tmp_path / "SN-W2" / "pek.hex").read_text().strip() == \
        central.injector.pin_key("T-2002").hex().upper()


def test_a_used_token_is_refused_over_the_broker(wire: tuple[Central, int, Enroller], tmp_path: Path) -> None:
    from provisioning.enroll import EnrollmentRefused

    central, port, _ = wire
    expect(central, "SN-W3")
    with central.sessions() as s:
        tok = devices.create_token(s, "ST-001", dt.datetime.now(dt.UTC).replace(tzinfo=None))
    _provision(central, port, tmp_path, tok, "SN-W3", [])
    with pytest.raises(EnrollmentRefused, match="used already"):
        _provision(central, port, tmp_path, tok, "SN-W4", [])


def test_the_registry_process_runs_the_enrollment_part(central: Central, tmp_path: Path) -> None:
    """registry.server: on with --tls-dir (the authority) and a BDK in the state dir; off on a worker."""
    from drivers.mqtt import TlsFiles
    from registry.server import Registry

    f = central.authority.directory
    tls = TlsFiles(f / "ca.pem", f / "registry.pem", f / "registry.key")
    url = f"sqlite:///{central.path}"
    made = [Registry(url, tmp_path / "state", "127.0.0.1", 1, tls=tls),
            Registry(url, tmp_path / "state", "127.0.0.1", 1, tls=tls, ingest_only=True, worker="w1"),
            Registry(url, tmp_path / "state", "127.0.0.1", 1)]
    try:
        on, worker, plain = (r.enroller for r in made)
        assert isinstance(on, Enroller) and on.authority.directory == f and worker is None and plain is None
        assert protocol.subscription("enroll_request") in dict(on.handlers())
    finally:
        for r in made:
            r.engine.dispose()
