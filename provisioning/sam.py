"""`forecourt provision sam`: the technician fits the purse SAM (docs/chip-wallet-keys.md "Enrolling a SAM").

1. Open the SAM's reader ([devices] sam_reader) and SELECT the SAM application: its id and state.
2. A blank SAM makes its P-256 key pair (GENERATE KEY PAIR); its public key, which the SAM cannot give
   again, is kept in the state directory (purse-sam.json: public data only) so an interrupted run resumes.
3. Ask the registry (a "sam_enrol" service request over the terminal's own MQTT identity, mutual TLS): it
   certifies the key and seals the SAM MAC key to it (registry.purse.enrol.answer_sam_enrolment).
4. PUT CERTIFICATE, PUT SAM KEY; SELECT again must say PERSONALIZED at the registry's key version.

Idempotent: a personalised SAM at the registry's key version is left as it is (the registry still confirms
the registration); one at an older version is re-keyed (after a rotation). The terminal never sees the SAM
MAC key: it carries a box only the SAM opens. Nothing secret is written or printed here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import protocol
from contracts import purse_sam_apdu as sa
from contracts import service_messages as sv
from contracts.errors import CardError, ConfigError, HostUnavailable, MessageError
from contracts.purse_keys import ID_LEN
from contracts.purse_session import CERT_LEN, KEY_LEN, Role, SessionError, load_public_key, open_certificate
from firmware.config import TerminalConfig
from firmware.keyfile import write_key_file

__all__ = ["OP", "SAM_FILE", "Ask", "Enrolment", "SamFitError", "SamFitted", "SamRefused", "apply_enrolment",
           "ask_registry", "check_answer", "enrolment_request", "fit_sam", "provision_sam"]

OP = "sam_enrol"                  # the service request's op (contracts.service_messages)
SAM_FILE = "purse-sam.json"       # the SAM's id and public key (and, once fitted, key version and expiry)
SW_OK = 0x9000
_PUBLIC_AT = 15                   # a certificate's public key: bytes 15-47 (docs/chip-wallet-sam.md)

Send = Callable[[bytes], bytes]
Ask = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class SamFitError(CardError):
    """The SAM refused a step, or is in a state this tool cannot go on from; reason says which."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


class SamRefused(ConfigError):
    """The registry refused the enrolment (reason: its code); exit 2 with what to do."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


@dataclass(frozen=True)
class Enrolment:
    """The registry's answer, checked: nothing in it is secret (the SAM key is sealed to the SAM)."""

    certificate: bytes
    ca_public_key: bytes
    key_version: int
    sealed: bytes
    expiry: int


@dataclass(frozen=True)
class SamFitted:
    sam_id: bytes
    key_version: int
    expiry: int                   # the SAM certificate's, Unix seconds
    changed: bool                 # False: the SAM was personalised at this key version already


def _answer(send: Send, apdu: bytes, what: str) -> bytes:
    data, sw = sa.split_answer(send(apdu))
    if sw != SW_OK:
        raise SamFitError(f"the SAM refused {what} ({sw:04X})", reason="sam_refused", command=what,
                          sw=f"{sw:04X}")
    return data


def _select(send: Send) -> sa.SamInfo:
    return sa.parse_fci(_answer(send, sa.select(), "SELECT"))


def enrolment_request(sam_id: bytes, public_key: bytes) -> dict[str, Any]:
    """The op's fields of the service request (the caller adds request_id, terminal and station)."""
    return {"op": OP, "sam_id": sam_id.hex(), "sam_public_key": public_key.hex()}


def _hex(result: Mapping[str, Any], name: str) -> bytes:
    value = result.get(name)
    try:
        return bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        return b""


def check_answer(result: Mapping[str, Any], *, sam_id: bytes, public_key: bytes, now: int) -> Enrolment:
    """The registry's result checked before anything reaches the SAM: the certificate is for this SAM's id
    and key, role SAM, signed by the CA key sent with it, not expired."""
    certificate, ca = _hex(result, "certificate"), _hex(result, "ca_public_key")
    sealed, version = _hex(result, "sam_key_sealed"), result.get("key_version")
    if len(certificate) != CERT_LEN or len(ca) != KEY_LEN or not sealed or not isinstance(version, int) \
            or isinstance(version, bool) or not 0 < version <= 255 or _hex(result, "sam_id") != sam_id:
        raise MessageError("the registry's SAM enrolment answer is malformed")
    try:
        cert = open_certificate(load_public_key(ca), certificate, role=Role.SAM, now=now)
    except SessionError as exc:
        raise MessageError(f"the SAM certificate from the registry does not check ({exc.reason})") from None
    if cert.id != sam_id or cert.public_key != public_key:
        raise MessageError("the SAM certificate from the registry names another SAM or key")
    return Enrolment(certificate, ca, version, sealed, cert.expiry)


def apply_enrolment(send: Send, info: sa.SamInfo, enrolment: Enrolment) -> bool:
    """PUT CERTIFICATE and PUT SAM KEY unless the SAM holds this key version already; whether it changed."""
    if info.state is sa.SamState.PERSONALIZED and info.key_version == enrolment.key_version:
        return False
    if info.key_version > enrolment.key_version:
        raise SamFitError("the SAM holds a newer SAM key than the registry's current one",
                          reason="newer_key", sam_version=info.key_version, version=enrolment.key_version)
    _answer(send, sa.put_certificate(enrolment.certificate, enrolment.ca_public_key), "PUT CERTIFICATE")
    _answer(send, sa.put_sam_key(enrolment.key_version, enrolment.sealed), "PUT SAM KEY")
    return True


def _read_file(state_dir: Path | None, sam_id: bytes) -> dict[str, Any]:
    if state_dir is None or not (state_dir / SAM_FILE).exists():
        return {}
    try:
        doc = json.loads((state_dir / SAM_FILE).read_text(encoding="ascii"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{state_dir / SAM_FILE} is unreadable", key="sam") from exc
    return doc if isinstance(doc, dict) and doc.get("sam_id") == sam_id.hex() else {}


def _write_file(state_dir: Path | None, doc: Mapping[str, Any]) -> None:
    if state_dir is not None:
        write_key_file(state_dir / SAM_FILE, json.dumps(doc, sort_keys=True) + "\n")


def _public_key(send: Send, info: sa.SamInfo, state_dir: Path | None, now: int) -> bytes:
    """The SAM's public key: made now (blank SAM), else as kept when it was made, else (a personalised SAM)
    from the certificate its AUTH HELLO shows."""
    if info.state is sa.SamState.BLANK:
        public = _answer(send, sa.generate_key_pair(), "GENERATE KEY PAIR")
        if len(public) != KEY_LEN:
            raise SamFitError("the SAM's public key is not 33 bytes", reason="sam_answer")
        _write_file(state_dir, {"sam_id": info.sam_id.hex(), "public_key": public.hex()})
        return public
    kept = _read_file(state_dir, info.sam_id).get("public_key")
    if isinstance(kept, str) and len(kept) == 2 * KEY_LEN:
        return bytes.fromhex(kept)
    if info.state is sa.SamState.PERSONALIZED:
        hello = _answer(send, sa.auth_hello(now), "AUTH HELLO")
        return hello[_PUBLIC_AT:_PUBLIC_AT + KEY_LEN]
    raise SamFitError(f"the SAM is {info.state.name.lower()} but its public key was not kept ({SAM_FILE}); "
                      "a SAM gives its key only once: fit a new SAM", reason="key_unknown")


def fit_sam(send: Send, ask: Ask, *, now: int, state_dir: Path | None = None) -> SamFitted:
    """Fit the SAM behind `send` (APDUs in, answers out): ask(fields) is the registry's answer to an
    enrolment request (the result; a refusal raises). now: Unix seconds (the terminal's clock)."""
    info = _select(send)
    if len(info.sam_id) != ID_LEN:
        raise SamFitError("the SAM's id is not 8 bytes", reason="sam_answer")
    public = _public_key(send, info, state_dir, now)
    enrolment = check_answer(ask(enrolment_request(info.sam_id, public)), sam_id=info.sam_id,
                             public_key=public, now=now)
    changed = apply_enrolment(send, info, enrolment)
    final = _select(send)
    if final.state is not sa.SamState.PERSONALIZED or final.key_version != enrolment.key_version:
        raise SamFitError("the SAM is not personalised after enrolment", reason="not_personalized",
                          state=final.state.name, key_version=final.key_version)
    _write_file(state_dir, {"sam_id": info.sam_id.hex(), "public_key": public.hex(),
                            "key_version": enrolment.key_version, "expiry": enrolment.expiry})
    return SamFitted(info.sam_id, enrolment.key_version, enrolment.expiry, changed)


_REFUSALS = {
    "sam_taken": "this SAM is fitted to another terminal (or was revoked): an operator releases it with "
                 "forecourt registry purse-sam release SAM_ID, or fit another SAM",
    sv.ServiceReason.NOT_ALLOWED: "the registry does not enrol a SAM for this terminal (is it active at its "
                                  "station?)",
    sv.ServiceReason.UNAVAILABLE: "the registry could not answer now: run provision sam again",
}


def ask_registry(cfg: TerminalConfig, *, timeout: float) -> Ask:
    """The enrolment request as a service request over the terminal's own certificate; the answer arrives
    on its inbox. The op must be one contracts.service_messages knows."""
    from firmware.service_client import new_request_id
    from provisioning.status import connect_as_device

    tid = cfg.terminal.id

    def ask(fields: Mapping[str, Any]) -> Mapping[str, Any]:
        rid = new_request_id()
        req = {"request_id": rid, "terminal": tid, "station": cfg.terminal.station, **fields}
        inbox = protocol.topic("terminal_inbox", terminal=tid)
        link = connect_as_device(cfg, client="sam", timeout=timeout)
        try:
            link.subscribe(inbox, lambda topic, payload, props: None)
            raw = link.request(protocol.topic("service_request", terminal=tid), sv.encode_request(req), inbox,
                               timeout)
        finally:
            link.stop()
        try:
            doc = sv.decode_response(raw)
        except MessageError as exc:
            raise HostUnavailable("the registry answered with a malformed message") from exc
        if doc["request_id"] != rid or doc["op"] != fields["op"]:
            raise HostUnavailable("the registry answered another request")
        if not doc["ok"]:
            reason = str(doc["reason"])
            raise SamRefused("SAM enrolment refused: " + _REFUSALS.get(reason, reason or "no reason given"),
                             reason=reason)
        return dict(doc["result"])
    return ask


def provision_sam(cfg: TerminalConfig, *, timeout: float = 10.0,
                  clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> SamFitted:
    """Fit the SAM in the terminal's [devices] sam_reader, enrolling it with the registry."""
    from drivers.cardreader import open_reader

    if not cfg.devices.sam_reader:
        raise ConfigError("no SAM reader: set [devices] sam_reader (e.g. \"pcsc://... 00 01\")",
                          key="devices.sam_reader")
    if not cfg.mqtt.tls:
        raise ConfigError("provision sam needs a terminal provisioned with TLS ([mqtt] tls = true)",
                          key="mqtt.tls")
    reader = open_reader(cfg.devices.sam_reader)
    if not reader.wait_for_card(timeout):
        raise SamFitError("no SAM in the SAM reader", reason="no_sam", reader=cfg.devices.sam_reader)
    reader.connect()
    try:
        return fit_sam(reader.transmit, ask_registry(cfg, timeout=timeout),
                       now=int(clock().timestamp()), state_dir=cfg.state_dir)
    finally:
        reader.disconnect()
