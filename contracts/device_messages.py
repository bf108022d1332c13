"""MQTT payloads of a device's life: status and heartbeat, events, remote commands, enrollment, certificate
rotation, signed configuration and software updates. Same rules as contracts.messages (decode/encode there).

Certificates and CSRs travel as PEM text; sealed keys and signatures as base64 (standard alphabet).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from contracts.messages import Check, Omissible, int_range, is_timestamp, matching

__all__ = [
    "CERT_REPLY",
    "CERT_REQUEST",
    "COMMAND",
    "COMMANDS",
    "COMMAND_RESULT",
    "ENROLL_REPLY",
    "ENROLL_REQUEST",
    "EVENT",
    "HEARTBEAT",
    "INT32_MAX",
    "RESERVED_IDS",
    "SIGNED_CONFIG",
    "STATUS",
    "UPDATE_FETCH",
    "UPDATE_OFFER",
    "UPDATE_REPORT",
    "VERSION",
]

_UUID = matching(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID = matching(r"[A-Za-z0-9_.-]{1,64}")
_TEXT = matching(r"[^\x00-\x1f]{0,200}")
_CODE = matching(r"[a-z][a-z0-9_]{0,47}")
# a software version: 1.4.2, 2026.12.1+pi. Digit first, and never one of the updater's own file names
# under STATE/software (current, update.json, *.part), which a release of that "version" would overwrite.
VERSION = r"[0-9][0-9A-Za-z.+_-]{0,31}(?<!\.part)(?<!\.json)(?<!\.tmp)"
_VERSION = matching(VERSION)
_SERIAL = matching(r"[A-Za-z0-9_.:-]{1,64}")
_B64 = matching(r"[A-Za-z0-9+/]{0,8000}={0,2}")
_SHA256 = matching(r"[0-9a-f]{64}")
_CSR_BLOCK = (r"-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]{100,4000}"
              r"-----END CERTIFICATE REQUEST-----\n?")
_CERT_BLOCK = r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{100,6000}-----END CERTIFICATE-----\n?"
_PEM_CSR = matching(_CSR_BLOCK)
_PEM_CERT = matching(_CERT_BLOCK)
_PEM_CERTS = matching(f"({_CERT_BLOCK}){{1,4}}")
_KEY_ID = matching(r"[a-z0-9][a-z0-9-]{0,31}")
_AGE = int_range(0, 10**9)
# the largest version or rollout number: what a signed 32-bit INTEGER column holds (PostgreSQL, SQL standard)
INT32_MAX = 2**31 - 1

# Ids no device may have: the registry's and the claim identity's certificate names (ACL usernames).
RESERVED_IDS = frozenset({"registry", "claim", "broker"})


def _map_of(key: Check, value: Check, most: int) -> Check:
    return lambda v: isinstance(v, dict) and len(v) <= most and all(key(k) and value(x) for k, x in v.items())


def _json_object(most: int) -> Check:
    """A JSON object whose keys are identifiers; its content is checked by whoever reads it."""
    rx = re.compile(r"[a-z][a-z0-9_]{0,47}")
    return lambda v: isinstance(v, dict) and len(v) <= most and all(
        isinstance(k, str) and rx.fullmatch(k) is not None for k in v)


# forecourt/v1/terminal/{id}/status, retained; the connection's last will says "offline".
STATUS: Mapping[str, Check] = {"terminal": _ID, "state": matching(r"online|offline"),
                               "at": Omissible(is_timestamp)}

# forecourt/v1/terminal/{id}/heartbeat: what the device runs and what waits in it (the reported state).
HEARTBEAT: Mapping[str, Check] = {
    "terminal": _ID, "at": is_timestamp, "software_version": _VERSION,
    "config_version": int_range(0, INT32_MAX),
    "backlog": int_range(0, 10**7), "oldest_unsent_s": _AGE, "uptime_s": _AGE, "parked": int_range(0, 10**7),
}

# forecourt/v1/terminal/{id}/events: something an operator may want to see; "alarm" wants an operator.
EVENT: Mapping[str, Check] = {
    "event_id": _UUID, "terminal": _ID, "at": is_timestamp, "severity": matching(r"info|warning|alarm"),
    "code": _CODE, "detail": _TEXT,
}

# Remote commands a terminal carries out between sales (never during one).
COMMANDS = ("heartbeat", "resend_sales", "restart", "selftest")
COMMAND: Mapping[str, Check] = {
    "command_id": _UUID, "terminal": _ID, "name": _CODE, "expires_at": is_timestamp,
    "args": _map_of(_CODE, _TEXT, 16),
}
# "rejected": unknown command or expired; "failed": tried and failed; "done": carried out.
COMMAND_RESULT: Mapping[str, Check] = {
    "command_id": _UUID, "terminal": _ID, "status": matching(r"done|failed|rejected"), "detail": _TEXT,
    "at": is_timestamp,
}

# forecourt/v1/enroll/{client}/request, sent under the claim identity with a one-time enrollment token.
ENROLL_REQUEST: Mapping[str, Check] = {
    "request_id": _UUID, "token": matching(r"[A-Za-z0-9_-]{20,64}"), "serial": _SERIAL, "csr_pem": _PEM_CSR,
    "client_time": is_timestamp, "software_version": _VERSION,
}
# forecourt/v1/enroll/{client}/reply. "accepted" carries the certificate, the CA chain, the configuration
# signing keys (key id -> Ed25519 public key, base64) and the keys sealed to the device key
# (contracts.sealbox); "pending" waits for an operator; "refused" says why (reason, a code).
ENROLL_REPLY: Mapping[str, Check] = {
    "request_id": _UUID, "status": matching(r"accepted|pending|refused"), "reason": _TEXT,
    "device_id": Omissible(_ID), "station": Omissible(_ID), "certificate_pem": Omissible(_PEM_CERT),
    "ca_pem": Omissible(_PEM_CERTS), "config_keys": Omissible(_map_of(_KEY_ID, _B64, 8)),
    "keys_sealed": Omissible(_B64), "server_time": is_timestamp,
}

# forecourt/v1/terminal/{id}/cert/request and .../cert/reply: a new certificate for a new device key.
CERT_REQUEST: Mapping[str, Check] = {"request_id": _UUID, "terminal": _ID, "csr_pem": _PEM_CSR}
CERT_REPLY: Mapping[str, Check] = {
    "request_id": _UUID, "status": matching(r"issued|refused"), "reason": _TEXT,
    "certificate_pem": Omissible(_PEM_CERT),
}

# forecourt/v1/terminal/{id}/config, retained: a configuration signed by the registry (contracts.signing).
# "body" is checked against contracts.signing's CONFIG_BODY only once the signature holds.
SIGNED_CONFIG: Mapping[str, Check] = {
    "terminal": _ID, "version": int_range(1, INT32_MAX), "issued_at": is_timestamp,
    "expires_at": is_timestamp, "key_id": _KEY_ID, "body": _json_object(32), "sig": _B64,
}

# forecourt/v1/terminal/{id}/update, retained: the software the registry wants this device to run.
UPDATE_OFFER: Mapping[str, Check] = {
    "terminal": _ID, "version": _VERSION, "size": int_range(1, 256 * 2**20), "sha256": _SHA256,
    "rollout": int_range(1, INT32_MAX),
}
# forecourt/v1/terminal/{id}/update/fetch: a request (MQTT 5 request/response) for a piece of a bundle;
# the answer on .../update/chunk is the raw bytes from offset.
UPDATE_FETCH: Mapping[str, Check] = {
    "terminal": _ID, "version": _VERSION, "offset": int_range(0, 256 * 2**20), "length": int_range(1, 2**20),
}
# forecourt/v1/terminal/{id}/update/report: how an offered update went.
UPDATE_REPORT: Mapping[str, Check] = {
    "terminal": _ID, "version": _VERSION, "rollout": int_range(1, INT32_MAX),
    "status": matching(r"downloading|installed|failed|rolled_back|refused"), "detail": _TEXT,
    "at": is_timestamp,
}

