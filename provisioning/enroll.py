"""`forecourt provision init`: a new terminal enrolls with a one-time token, under the claim identity.

1. The device key is made here (provisioning.identity) and a CSR names the device (the requested id, else
   the serial number).
2. Connected as "claim-<serial>" with the claim certificate, the device publishes ENROLL_REQUEST on its
   enrollment topic and waits for the registry's retained ENROLL_REPLY: "pending" waits for an operator,
   "refused" says why, "accepted" brings the certificate, the CA, the configuration keys and the keys
   sealed to the device key.
3. The files go to the state directory (keys 0600, each atomically), terminal.toml last: a terminal.toml
   naming a certificate means a finished enrollment.

A pending enrollment survives an interrupted init: enroll-request.json keeps the request id, and the next
init with the same serial and token waits for the answer to that request instead of spending the token
again (a new token starts a new request). The
claim identity may not publish on the reply topic (registry.acl), so the registry clears the retained
reply, not the device.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError, HostUnavailable, MessageError
from contracts.sealbox import keys_context, open_sealed
from contracts.signing import trusted_from_b64
from drivers.mqtt.link import MqttLink, TlsFiles
from firmware.config_files import read_toml
from firmware.configstore import write_config_keys
from firmware.keyfile import write_key_file
from provisioning.identity import (
    CA_CERT,
    DEVICE_CERT,
    DEVICE_KEY,
    CertInfo,
    check_certificate,
    check_device_id,
    create_device_key,
    load_device_key,
    make_csr,
)
from provisioning.keys import AES_KEY_SIZES, install_dukpt, install_pin_key
from provisioning.status import connect, software_version

__all__ = [
    "PENDING_FILE",
    "Enrolled",
    "EnrollmentRefused",
    "EnrollmentUnanswered",
    "InitOptions",
    "enroll",
    "refusal",
    "write_terminal_toml",
]

PENDING_FILE = "enroll-request.json"        # the request an interrupted init still waits for
CONNECT_TIMEOUT = 10.0
RESEND_AFTER = 5.0          # a resumed init sends its request again when no reply is retained by then


class EnrollmentRefused(ConfigError):
    """The registry refused the enrollment (reason: its code); exit 2 with what to do about it."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


class EnrollmentUnanswered(HostUnavailable):
    """No final answer in time: the registry is silent, or the device still waits for an operator."""


@dataclass(frozen=True)
class InitOptions:
    state_dir: Path
    host: str
    port: int
    token: str
    serial: str
    claim_dir: Path                  # ca.pem, claim.pem, claim.key
    device_id: str | None = None     # the id asked for (CN of the CSR); the registry may decide another
    wait: float = 120.0              # seconds to wait for an operator while pending


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    station: str
    certificate: CertInfo
    config_path: Path


def _wire(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def refusal(reply: dict[str, Any], *, now: dt.datetime) -> EnrollmentRefused:
    """The error for a "refused" reply: what happened and what the technician can do."""
    reason = str(reply.get("reason", ""))
    server = m.parse_timestamp(reply["server_time"]).replace(tzinfo=dt.UTC)
    texts = {
        "token_unknown": "the registry does not know this enrollment token: check it, or ask for a new one "
                         "(forecourt registry token create)",
        "token_expired": "the enrollment token has expired: ask for a new one "
                         "(forecourt registry token create)",
        "token_used": "the enrollment token was used already (tokens are one-time): ask for a new one",
        "clock_skew": f"this device's clock is far off: it says {now:%Y-%m-%d %H:%M:%S} UTC, the registry's "
                      f"{server:%Y-%m-%d %H:%M:%S} UTC ({(now - server).total_seconds():+.0f} s); set the "
                      "clock (NTP) and run init again",
        "serial_taken": "a device with this serial number is enrolled already: decommission it first or "
                        "check the serial",
        "id_taken": "the device id is taken by another device: ask for a token with another id",
        "bad_csr": "the registry refused the certificate request (CSR): the device key is not one it signs",
        "device_refused": "an operator refused (decommissioned) this device",
    }
    text = texts.get(reason, f"the registry refused the enrollment ({reason or 'no reason given'})")
    return EnrollmentRefused(f"enrollment refused: {text}", reason=reason)


def _check_options(opts: InitOptions) -> None:
    check_device_id(opts.serial, what="--serial")
    if opts.device_id is not None:
        check_device_id(opts.device_id, what="--device-id")
    if not d.ENROLL_REQUEST["token"](opts.token):
        raise ConfigError("--token must be the token as printed: 20..64 letters, digits, '-' or '_'",
                          key="--token")
    for name in ("ca.pem", "claim.pem", "claim.key"):
        if not (opts.claim_dir / name).is_file():
            raise ConfigError(f"--claim-dir {opts.claim_dir} has no {name}", key="--claim-dir")
    _key_names(opts.state_dir / "terminal.toml")       # a prepared file that cannot work: before the token
    if _provisioned(opts.state_dir / "terminal.toml"):
        raise ConfigError(f"{opts.state_dir} is provisioned already (terminal.toml [mqtt] tls): use "
                          "rotate-cert, or a fresh state directory", key="--state-dir")


def _provisioned(config: Path) -> bool:
    """terminal.toml is written last, so its [mqtt] tls marks a finished enrollment; a device.pem without it
    is an install cut short, done again."""
    doc = read_toml(config, "config") if config.exists() else {}
    mqtt = doc.get("mqtt", {})
    return isinstance(mqtt, dict) and mqtt.get("tls") is True


def _same_ca(sent_pem: str, kit: Path) -> None:
    """The reply's CA must be the claim kit's ca.pem: the anchor that authenticated the broker and so the
    registry; another one would make the terminal trust a broker nobody checked."""
    try:
        sent = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(sent_pem.encode())]
        ours = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(kit.read_bytes())]
    except (OSError, ValueError) as exc:
        raise ConfigError("the CA sent with the certificate is unreadable", key="ca_pem") from exc
    if sent != ours:
        raise ConfigError("the CA sent with the certificate is not the CA of the claim kit", key="ca_pem")


def _check_keys(pin_key: bytes, dukpt_key: bytes, dukpt_id: bytes) -> None:
    """provisioning.keys' size checks, made before any file is written."""
    if len(pin_key) not in AES_KEY_SIZES or len(dukpt_key) not in AES_KEY_SIZES or len(dukpt_id) != 8:
        raise MessageError("sealed keys have the wrong sizes (AES keys of 16, 24 or 32 bytes, an 8-byte "
                           "DUKPT key ID)")


def _request(opts: InitOptions, now: dt.datetime) -> tuple[dict[str, Any], bool]:
    """The ENROLL_REQUEST (and whether it resumes a pending one): the device key and a pending request
    from an interrupted init are kept, so the token is never spent twice."""
    key_path = opts.state_dir / DEVICE_KEY
    key = load_device_key(key_path) if key_path.exists() else create_device_key(key_path)
    request_id, resumed = str(uuid.uuid4()), False
    token = hashlib.sha256(opts.token.encode("ascii")).hexdigest()   # which token, never the token
    try:
        pending = json.loads((opts.state_dir / PENDING_FILE).read_text(encoding="ascii"))
        if (pending.get("serial"), pending.get("token_sha256")) == (opts.serial, token) \
                and isinstance(pending.get("request_id"), str):
            request_id, resumed = pending["request_id"], True
    except (OSError, ValueError):
        pass
    doc = {"request_id": request_id, "token": opts.token, "serial": opts.serial,
           "csr_pem": make_csr(key, opts.device_id or opts.serial), "client_time": _wire(now),
           "software_version": software_version()}
    write_key_file(opts.state_dir / PENDING_FILE,
                   json.dumps({"request_id": request_id, "serial": opts.serial, "token_sha256": token}))
    return doc, resumed


def _key_names(config: Path) -> tuple[str, str]:
    """The PIN key and DUKPT file names a prepared terminal.toml gives ([devices] pin_key, [bank] dukpt),
    else the terminal's defaults: the keys go where the terminal will read them."""
    doc = read_toml(config, "config") if config.exists() else {}
    names = (doc.get("devices", {}).get("pin_key", "pek.hex"), doc.get("bank", {}).get("dukpt", "dukpt.toml"))
    for name in names:
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ConfigError(f"{config}: a key file must be named inside the state directory, not {name!r}",
                              key="devices.pin_key")
    return names[0], names[1]


def _install(opts: InitOptions, reply: dict[str, Any], request_id: str, now: dt.datetime) -> Enrolled:
    """Check everything the registry sent, then write it; terminal.toml last."""
    needed = ("device_id", "station", "certificate_pem", "ca_pem", "config_keys", "keys_sealed")
    if any(reply.get(name) is None for name in needed):
        raise MessageError("accepted reply lacks " + ", ".join(n for n in needed if reply.get(n) is None))
    device_id, station = str(reply["device_id"]), str(reply["station"])
    state = opts.state_dir
    key = load_device_key(state / DEVICE_KEY)
    _same_ca(reply["ca_pem"], opts.claim_dir / "ca.pem")
    info = check_certificate(reply["certificate_pem"], reply["ca_pem"], key, common_name=device_id, now=now)
    keys = json.loads(open_sealed(key, reply["keys_sealed"], context=keys_context(device_id, request_id)))
    try:
        pin_key, dukpt_key = bytes.fromhex(keys["pin_key"]), bytes.fromhex(keys["dukpt_initial_key"])
        dukpt_id = bytes.fromhex(keys["dukpt_key_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageError("sealed keys are not the three hex keys expected") from exc
    _check_keys(pin_key, dukpt_key, dukpt_id)
    trusted_from_b64(reply["config_keys"])              # each key id checked against its key
    names = _key_names(state / "terminal.toml")
    # nothing is written before this line
    install_pin_key(state, pin_key, names[0])
    install_dukpt(state, dukpt_key, dukpt_id, name=names[1],
                  note=f"sealed to {device_id} by the registry at enrollment")
    write_key_file(state / CA_CERT, reply["ca_pem"])
    write_key_file(state / DEVICE_CERT, reply["certificate_pem"])
    write_config_keys(state, reply["config_keys"])
    # the files are in this directory, whatever state_dir a prepared terminal.toml said
    path = write_terminal_toml(state / "terminal.toml",
                               terminal={"id": device_id, "station": station, "state_dir": "."},
                               mqtt={"host": opts.host, "port": opts.port, "tls": True, "ca": CA_CERT,
                                     "cert": DEVICE_CERT, "key": DEVICE_KEY})
    (state / PENDING_FILE).unlink(missing_ok=True)
    return Enrolled(device_id, station, info, path)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # a TOML basic string (TOML 1.0, "String"): JSON's escapes are TOML's; DEL must be escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise ConfigError(f"{where}: cannot write a {type(value).__name__} back to TOML", key=where)


def write_terminal_toml(path: Path, **sections: dict[str, Any]) -> Path:
    """Set these keys in path's sections, keeping every other key and section of an existing file (the
    technician's [devices], [bank]...); written atomically. Comments of an existing file are not kept."""
    doc: dict[str, Any] = read_toml(path, "config") if path.exists() else {}
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    if "terminal" in doc:
        doc["terminal"].setdefault("state_dir", ".")
    out = ["# written by forecourt provision"]
    for name, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {name} must be a table", key=name)
        out += ["", f"[{name}]"] + [f"{k} = {_toml_value(v, f'{name}.{k}')}" for k, v in table.items()]
    write_key_file(path, "\n".join(out) + "\n")
    return path


def enroll(opts: InitOptions, *, say: Callable[[str], None] = print,
           clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> Enrolled:
    """Enroll this device; the lines a technician reads go to say (never a key)."""
    _check_options(opts)
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    doc, resumed = _request(opts, clock())
    client = f"claim-{opts.serial}"
    replies: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_reply(topic: str, payload: bytes, props: object) -> None:
        try:
            reply = m.decode(payload, d.ENROLL_REPLY)
        except MessageError:
            return                        # an empty (cleared) or foreign payload: not an answer
        if reply["request_id"] == doc["request_id"]:
            replies.put(reply)            # a stale retained reply to another request is not ours

    claim = TlsFiles(opts.claim_dir / "ca.pem", opts.claim_dir / "claim.pem", opts.claim_dir / "claim.key")
    link = connect(opts.host, opts.port, client, tls=claim, timeout=CONNECT_TIMEOUT, identity="claim")
    try:
        link.subscribe(protocol.topic("enroll_reply", client=client), on_reply)
        reply = _await(link, doc, client, resumed, opts.wait, replies, say)
    finally:
        link.stop()
    if reply["status"] == "refused":
        (opts.state_dir / PENDING_FILE).unlink(missing_ok=True)     # that request is answered for good
        raise refusal(reply, now=clock())
    return _install(opts, reply, doc["request_id"], clock())


def _await(link: MqttLink, doc: dict[str, Any], client: str, resumed: bool, wait: float,
           replies: queue.Queue[dict[str, Any]], say: Callable[[str], None]) -> dict[str, Any]:
    """The final reply ("accepted" or "refused") to doc; "pending" replies are shown and waited through."""
    topic, payload = protocol.topic("enroll_request", client=client), m.encode(doc, d.ENROLL_REQUEST)
    start = time.monotonic()
    deadline, resend_at = start + wait, start + RESEND_AFTER
    if resumed:
        say(f"resuming enrollment request {doc['request_id']}")
    sent = not resumed          # a resumed request is sent again only if no answer to it is retained
    if sent:
        link.publish(topic, payload, qos=1)
    shown = ""
    while True:
        until = deadline if sent else min(deadline, resend_at)
        try:
            reply = replies.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            if not sent and time.monotonic() < deadline:
                link.publish(topic, payload, qos=1)
                sent = True
                continue
            if shown:
                raise EnrollmentUnanswered(f"still waiting for an operator to accept {shown} after "
                                           f"{wait:g} s: run init again to keep waiting (the request is "
                                           "kept)", device=shown) from None
            raise EnrollmentUnanswered(f"no answer from the registry within {wait:g} s (is it running?)")
        sent = True             # the registry has this request: never send it again
        if reply["status"] != "pending":
            return reply
        who = str(reply.get("device_id") or doc["serial"])
        if who != shown:
            say(f"waiting for an operator to accept {who} (forecourt registry device accept {who})")
            shown = who
