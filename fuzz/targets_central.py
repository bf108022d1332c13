"""Fuzz targets for what the central code (issue 13) reads from the wire: every device message schema
(contracts.device_messages through contracts.messages.decode), the signed configuration envelope
(contracts.signing.verify_envelope), the keys sealed to a device (contracts.sealbox.open_sealed), the
configuration keys an enrollment reply names (contracts.signing.trusted_from_b64), the CSR the
authority signs (registry.pki.Authority.issue), and the registry's handlers of the device topics (status,
heartbeat, events, command results, update reports and fetches, certificate and enrollment requests) on a
seeded SQLite database. The update bundle is fuzz/targets_update.py's.

Beyond typed errors only, each target checks a property: a decoded message encodes back to itself; an
envelope or box that still verifies after a change holds what it was signed or sealed with; a certificate
is issued only for the CSR's own key, under the common name asked for, never a reserved one; a registry
handler never raises (it runs on the MQTT network thread) and whatever it answers fits its topic's schema.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import MessageError
from contracts.sealbox import keys_context, open_sealed, seal
from contracts.signing import key_id, public_b64, sign_envelope, trusted_from_b64, verify_envelope
from fuzz.harness import Target, Violation, parts
from registry.pki import Authority

_SEED_TOML = Path(__file__).resolve().parent.parent / "hostsim" / "fixtures" / "seed.toml"

__all__ = ["TARGETS"]

SCHEMAS = (d.STATUS, d.HEARTBEAT, d.EVENT, d.COMMAND, d.COMMAND_RESULT, d.ENROLL_REQUEST, d.ENROLL_REPLY,
           d.CERT_REQUEST, d.CERT_REPLY, d.SIGNED_CONFIG, d.UPDATE_OFFER, d.UPDATE_FETCH, d.UPDATE_REPORT)
_UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
_AT = "2026-06-01T12:00:00Z"
_NOW = dt.datetime(2026, 6, 1, 12, 0, 0)                     # naive UTC, as contracts.signing takes it
_DEVICE = ec.derive_private_key(0x5EED_0101, ec.SECP256R1())  # fixed keys: the same seeds on every run
_SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
_TRUSTED = {key_id(_SIGNER.public_key()): _SIGNER.public_key()}


def _csr(key: Any, cn: str = "SN-1") -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, None if isinstance(key, Ed25519PrivateKey) else hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


@functools.cache
def _authority() -> Authority:
    """A CA held in memory (issue() touches no file), its key fixed."""
    key = ec.derive_private_key(0x5EED_0102, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz CA")])
    at = _NOW.replace(tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(at - dt.timedelta(days=1))
            .not_valid_after(at + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return Authority(Path("/nonexistent-fuzz-ca"), cert, key)


@functools.cache
def _cert_pem() -> str:
    return _authority().issue(_csr(_DEVICE), "T-0001", now=_NOW.replace(tzinfo=dt.UTC)).cert_pem


@functools.cache
def _envelope() -> dict[str, Any]:
    body = {"station": "ST-001", "station_name": "Main", "currency": "EUR",
            "prices": [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "Diesel",
                        "price_milli": 1799}],
            "products": [{"code": "diesel", "name": "Diesel"}],
            "pumps": [{"pump": 1, "nozzles": [{"nozzle": 1, "product": "diesel"}]}],
            "stop_list": [], "offline_limits": {}, "programs": [], "attendants": [],
            "registry_bundle_key": ""}
    return sign_envelope(body, terminal="T-0001", version=7, expires_at=_NOW + dt.timedelta(days=30),
                         issued_at=_NOW - dt.timedelta(hours=1), key_id=key_id(_SIGNER.public_key()),
                         private_key=_SIGNER)


def _docs() -> list[tuple[int, dict[str, Any]]]:
    """One valid document of each schema (index into SCHEMAS)."""
    csr = _csr(_DEVICE)
    return [
        (0, {"terminal": "T-0001", "state": "online", "at": _AT}),
        (1, {"terminal": "T-0001", "at": _AT, "software_version": "1.4.2", "config_version": 7, "backlog": 3,
             "oldest_unsent_s": 125, "uptime_s": 600, "parked": 0}),
        (2, {"event_id": _UUID, "terminal": "T-0001", "at": _AT, "severity": "alarm", "code": "pump_offline",
             "detail": "pump 2 does not answer"}),
        (3, {"command_id": _UUID, "terminal": "T-0001", "name": "heartbeat", "expires_at": _AT, "args": {}}),
        (4, {"command_id": _UUID, "terminal": "T-0001", "status": "done", "detail": "", "at": _AT}),
        (5, {"request_id": _UUID, "token": "A" * 32, "serial": "SN-1", "csr_pem": csr, "client_time": _AT,
             "software_version": "1.4.2"}),
        (6, {"request_id": _UUID, "status": "accepted", "reason": "", "device_id": "T-0001",
             "station": "ST-001", "certificate_pem": _cert_pem(), "ca_pem": _authority().ca_pem,
             "config_keys": {key_id(_SIGNER.public_key()): public_b64(_SIGNER.public_key())},
             "keys_sealed": _box(), "server_time": _AT}),
        (7, {"request_id": _UUID, "terminal": "T-0001", "csr_pem": csr}),
        (8, {"request_id": _UUID, "status": "issued", "reason": "", "certificate_pem": _cert_pem()}),
        (9, _envelope()),
        (10, {"terminal": "T-0001", "version": "1.5.0", "size": 4096, "sha256": "ab" * 32, "rollout": 2}),
        (11, {"terminal": "T-0001", "version": "1.5.0", "offset": 0, "length": 1024}),
        (12, {"terminal": "T-0001", "version": "1.5.0", "rollout": 2, "status": "installed", "detail": "",
              "at": _AT}),
    ]


def _message_seeds() -> list[bytes]:
    return [bytes([i]) + m.encode(doc, SCHEMAS[i]) for i, doc in _docs()]


def device_message(data: bytes) -> None:
    """decode with the schema the first byte picks; what decodes encodes back to the same document."""
    if not data:
        return
    schema = SCHEMAS[data[0] % len(SCHEMAS)]
    doc = m.decode(data[1:], schema)
    if m.decode(m.encode(doc, schema), schema) != doc:
        raise Violation("decode(encode(doc)) != doc")


def signed_config(data: bytes) -> None:
    """A SIGNED_CONFIG off the wire: an envelope that still verifies holds the body it was signed with."""
    doc = m.decode(data, d.SIGNED_CONFIG)
    body = verify_envelope(doc, _TRUSTED, terminal="T-0001", now=_NOW)
    original = _envelope()
    if body != original["body"] or doc["version"] != original["version"]:
        raise Violation("an envelope that verifies holds another body or version than it was signed with")


_PLAIN = json.dumps({"pin_key": "11" * 16, "dukpt_initial_key": "22" * 16,
                     "dukpt_key_id": "33" * 8}, sort_keys=True).encode("ascii")
_CONTEXT = keys_context("T-0001", _UUID)


@functools.cache
def _box() -> str:
    return seal(_DEVICE.public_key(), _PLAIN, context=_CONTEXT)    # random ephemeral key: made once per run


def sealed_keys(data: bytes) -> None:
    """ENROLL_REPLY's keys_sealed as text: a box that still opens holds what it was sealed with."""
    if open_sealed(_DEVICE, data.decode("latin-1"), context=_CONTEXT) != _PLAIN:
        raise Violation("a box that opens holds other bytes than it was sealed with")


def config_keys(data: bytes) -> None:
    """ENROLL_REPLY's config_keys, decoded from JSON: every key trusted is named by its own key id."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MessageError("not JSON") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        return
    for kid, public in trusted_from_b64(doc).items():
        if key_id(public) != kid:
            raise Violation("a key trusted under another key's id")


def _csr_seeds() -> list[bytes]:
    sep = b"\xf1\xf2"
    return [_csr(_DEVICE).encode() + sep + b"T-0001",
            _csr(Ed25519PrivateKey.from_private_bytes(bytes(32))).encode() + sep + b"T-0002",   # not P-256
            _csr(_DEVICE).encode() + sep + b"registry"]                                      # reserved


def csr_issue(data: bytes) -> None:
    """Authority.issue(CSR PEM, device id): a certificate only for the CSR's own key, under that id."""
    pem, cn = (p.decode("latin-1") for p in parts(data, 2))
    issued = _authority().issue(pem, cn, now=_NOW.replace(tzinfo=dt.UTC))
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode("ascii"))
    csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [cn] or cn in d.RESERVED_IDS:
        raise Violation("a certificate under another or a reserved name")
    if cert.public_key() != csr.public_key() or not csr.is_signature_valid:
        raise Violation("a certificate for a key the request did not prove")


TARGETS = [
    Target("device_message", device_message, (MessageError,), _message_seeds, max_len=16384),
    Target("signed_config", signed_config, (MessageError,),
           lambda: [m.encode(_envelope(), d.SIGNED_CONFIG)], max_len=4096),
    Target("sealed_keys", sealed_keys, (MessageError,), lambda: [_box().encode("ascii")], max_len=2048),
    Target("config_keys", config_keys, (MessageError,),
           lambda: [json.dumps({key_id(_SIGNER.public_key()): public_b64(_SIGNER.public_key())}).encode()],
           max_len=1024),
    Target("csr_issue", csr_issue, (MessageError,), _csr_seeds, max_len=2048),
]


# -- the registry's handlers of device topics ---------------------------------------------------------------

class _Wire:
    """The registry's link: every answer must be a valid message of the topic it goes to."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None:
        if not payload:
            return                                          # an empty retained message clears one
        for t in protocol.TABLE:
            if t.schema is not None and mqtt.topic_matches_sub(protocol.subscription(t.name), topic):
                for schema in (t.schema, *t.schemas):
                    try:
                        m.decode(payload, schema)
                        return
                    except MessageError:
                        continue
                raise Violation(f"the registry answered {t.name} with a payload its schema refuses")

    def reply(self, request_props: Any, payload: bytes) -> None:
        """An update chunk: raw bytes."""


HANDLED = ("status", "heartbeat", "events", "command_result", "update_report", "update_fetch", "cert_request",
           "enroll_request")


@functools.cache
def _handlers() -> dict[str, Callable[[str, bytes, Any], None]]:
    """The registry's parts on a seeded database in a directory of their own (removed at exit)."""
    from registry.certs import CertRotator
    from registry.db import open_database
    from registry.devices import import_expected, token_digest
    from registry.enroll import Enroller
    from registry.fleetops import FleetOps
    from registry.keyinject import KeyInjector, install_bdk
    from registry.keys import load_or_create_keys
    from registry.models import EnrollmentToken
    from registry.releases import Releases
    from registry.seed import apply_seed, load_seed

    work = Path(tempfile.mkdtemp(prefix="fuzz-registry-"))
    atexit.register(shutil.rmtree, work, True)
    _, sessions = open_database(f"sqlite:///{work / 'registry.db'}")
    keys = load_or_create_keys(work / "registry-keys.json")
    install_bdk(work, bytes(range(16)))
    with sessions() as s:
        apply_seed(s, keys, load_seed(_SEED_TOML), _NOW)
        # the enrollment seed's token, for a serial registered ahead: its first request is accepted
        s.add(EnrollmentToken(digest=token_digest("A" * 32), station_id="ST-001", device_id=None,
                              created_at=_NOW, expires_at=_NOW + dt.timedelta(days=1)))
        import_expected(s, "SN-1,ST-001,T-0900\n", _NOW)
    authority = Authority.create(work / "pki", now=_NOW.replace(tzinfo=dt.UTC))
    wire, clock = _Wire(), lambda: _NOW
    fleet = FleetOps(sessions, wire, clock=clock)
    fetch, report = (h for _, h in Releases(sessions, wire, clock=clock).handlers())
    enroller = Enroller(sessions, wire, authority, keys, KeyInjector.load(work),
                        lambda: {key_id(_SIGNER.public_key()): public_b64(_SIGNER.public_key())}, clock=clock)
    return {"status": fleet.on_status, "heartbeat": fleet.on_heartbeat, "events": fleet.on_event,
            "command_result": fleet.on_command_result, "update_report": report, "update_fetch": fetch,
            "cert_request": CertRotator(sessions, wire, authority, clock=clock).on_request,
            "enroll_request": enroller.on_request}


def registry_handlers(data: bytes) -> None:
    """One payload on the device topic the first byte picks, from T-0001 (or an enrolling client)."""
    if not data:
        return
    name = HANDLED[data[0] % len(HANDLED)]
    handler = _handlers()
    logging.disable(logging.CRITICAL)       # each refusal is logged: millions of lines under atheris
    try:
        handler[name](protocol.topic(name, terminal="T-0001", client="claim-SN-1"), data[1:], None)
    finally:
        logging.disable(logging.NOTSET)


def _handler_seeds() -> list[bytes]:
    docs, at = dict(_docs()), _NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    by_name = {"status": docs[0] | {"at": at}, "heartbeat": docs[1] | {"at": at},
               "events": docs[2] | {"at": at}, "command_result": docs[4] | {"at": at},
               "update_report": docs[12] | {"at": at}, "update_fetch": docs[11], "cert_request": docs[7],
               "enroll_request": docs[5] | {"client_time": at}}
    return [bytes([HANDLED.index(n)]) + m.encode(doc, protocol.BY_NAME[n].schema or {})
            for n, doc in by_name.items()]


TARGETS.append(Target("registry_handlers", registry_handlers, (), _handler_seeds, max_len=8192))
