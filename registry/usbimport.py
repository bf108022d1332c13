"""The registry's end of the offline exchange: sales bundles in (contracts.usbbundle), configurations out.

A sales bundle is believed only when all of these hold, in this order (each refusal a UsbBundleError with
its reason; nothing is stored before the last): the file parses; its device certificate was issued by this
registry's CA (untrusted_certificate), names the bundle's terminal (wrong_device) and was valid when the
bundle was made (certificate_expired; a bundle may be carried in weeks later, so the bundle's own signed
time is what counts, and it may not lie in the future: from_the_future); the device is known (unknown_device),
active (device_not_active: a revoked or decommissioned device's bundle is refused) and holds exactly this
certificate (wrong_certificate: the fingerprint stored at enrollment); the device's signature over header
and ciphertext verifies (bad_signature); the bundle is sealed to this registry's key (wrong_registry,
does_not_open); each sale inside is a valid SALE of that terminal. Then the sales go through
registry.service.record_sales, the same path as sales over MQTT: a sale already stored is a duplicate, so
importing a bundle twice stores nothing the second time, and says so.

receipt() signs the answers of an import (the SALE_ACK of each sale) with the registry's configuration key
(registry.configs), for the terminal of a site that never gets a link: it marks its sales synced with them.

The bundle key: EC P-256, in the registry state dir (usb-bundle.key, mode 0600, the rules of
registry.keys); its public key reaches terminals in the signed configuration ("registry_bundle_key").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from contracts.messages import parse_timestamp
from contracts.signing import key_id
from contracts.usbbundle import (
    SalesBundle,
    UsbBundleError,
    decode_sales_bundle,
    encode_config_bundle,
    encode_receipt,
    open_sales,
    registry_key_to_b64,
    verify_sales_signature,
)
from registry.keys import RegistryKeys, _read_private, _write_private
from registry.models import Device
from registry.pki import fingerprint
from registry.service import record_sales

if TYPE_CHECKING:       # registry.configs may import this module for the bundle key: no cycle
    from registry.configs import ConfigIssuer

__all__ = ["BUNDLE_KEY", "ImportResult", "bundle_public_key", "check_bundle", "export_config",
           "import_sales", "load_or_create_bundle_key", "receipt"]

log = logging.getLogger(__name__)

BUNDLE_KEY = "usb-bundle.key"
CLOCK_AHEAD = dt.timedelta(minutes=10)     # a bundle made "later" than this is from a wrong clock
# Sales stored per transaction: a large bundle imported beside the running registry holds SQLite's write
# lock for one batch at a time, so authorizations are not kept waiting long (the server batches 50).
IMPORT_BATCH = 200


def load_or_create_bundle_key(state_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The registry's bundle key (made on first use; never overwritten, refused when others can read it)."""
    path = state_dir / BUNDLE_KEY
    if not path.exists():
        new = ec.generate_private_key(ec.SECP256R1())
        pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
        with contextlib.suppress(FileExistsError):         # another process made it first: read theirs
            _write_private(path, pem)
    try:
        key = serialization.load_pem_private_key(_read_private(path).encode("ascii"), None)
    except ValueError as exc:
        raise ConfigError("bundle key file is damaged", path=str(path)) from exc
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
        raise ConfigError("bundle key file holds no EC P-256 key", path=str(path))
    return key


def bundle_public_key(state_dir: Path) -> str:
    """The value of CONFIG_BODY "registry_bundle_key": base64 DER of the bundle key's public half."""
    return registry_key_to_b64(load_or_create_bundle_key(state_dir).public_key())


@dataclass(frozen=True)
class ImportResult:
    bundle_id: str
    terminal: str
    count: int           # sales in the bundle
    stored: int          # new, counted
    held: int            # new, stored apart for an operator (registry.checks)
    duplicate: int       # stored already (by MQTT or an earlier import)
    rejected: int        # never stored: a second, different version of a stored sale (kept apart)
    failed: int          # not stored this time (database error): import the bundle again
    acks: tuple[dict[str, Any], ...] = ()     # the SALE_ACK of each sale stored, duplicate or rejected

    def summary(self) -> str:
        new = self.stored + self.held
        head = (f"bundle {self.bundle_id} from {self.terminal}: {self.count} sales, "
                + (f"{new} new" if new else "nothing new"))
        return (f"{head} (stored {self.stored}, held {self.held}, already stored {self.duplicate}, "
                f"rejected {self.rejected}, failed {self.failed})")


def _utc(naive: dt.datetime) -> dt.datetime:
    return naive.replace(tzinfo=dt.UTC)


def _device_certificate(pem: str, ca_pem: str, terminal: str, made: dt.datetime) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        ca = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
    except ValueError as exc:
        raise UsbBundleError("bundle certificate does not load", "malformed") from exc
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise UsbBundleError("bundle certificate is not issued by this registry's CA",
                             "untrusted_certificate", terminal=terminal) from exc
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [terminal]:
        raise UsbBundleError("bundle certificate is another device's", "wrong_device", terminal=terminal)
    if not cert.not_valid_before_utc <= _utc(made) <= cert.not_valid_after_utc:
        raise UsbBundleError("bundle certificate was not valid when the bundle was made",
                             "certificate_expired", terminal=terminal)
    return cert


def check_bundle(session: Session, raw: bytes, *, ca_pem: str, now: dt.datetime) -> SalesBundle:
    """A sales bundle file parsed, its certificate, device and signature checked (the module docstring's
    order, up to the payload); registry.purse.bundle reads the chip purse records of the same file."""
    bundle = decode_sales_bundle(raw)
    made = parse_timestamp(bundle.created_at)
    if made > now + CLOCK_AHEAD:
        raise UsbBundleError("bundle is dated in the future", "from_the_future", terminal=bundle.terminal)
    cert = _device_certificate(bundle.certificate_pem, ca_pem, bundle.terminal, made)
    device = session.get(Device, bundle.terminal)
    if device is None:
        raise UsbBundleError("bundle of a device this registry does not know", "unknown_device",
                             terminal=bundle.terminal)
    if device.status != "active":
        raise UsbBundleError("bundle of a device that is not active", "device_not_active",
                             terminal=bundle.terminal, status=device.status)
    # the fingerprint the registry stored when it issued the device's certificate (registry.pki)
    if device.cert_fingerprint != fingerprint(bundle.certificate_pem):
        raise UsbBundleError("bundle certificate is not the device's current one", "wrong_certificate",
                             terminal=bundle.terminal)
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise UsbBundleError("device key is not EC P-256", "bad_signature", terminal=bundle.terminal)
    verify_sales_signature(bundle, public)
    return bundle


def import_sales(session: Session, raw: bytes, *, bundle_key: ec.EllipticCurvePrivateKey, ca_pem: str,
                 now: dt.datetime, keys: RegistryKeys | None = None) -> ImportResult:
    """Check a sales bundle file and record its sales (see the module docstring). now: naive UTC; keys:
    the registry's, to open an offline fleet sale's card number and debit its account."""
    bundle = check_bundle(session, raw, ca_pem=ca_pem, now=now)
    sales = open_sales(bundle, bundle_key)
    acks: list[dict[str, Any] | None] = []
    for at in range(0, len(sales), IMPORT_BATCH):
        acks += record_sales(session, sales[at:at + IMPORT_BATCH], now, keys)
    counts = {"stored": 0, "held": 0, "duplicate": 0, "rejected": 0, "failed": 0}
    for ack in acks:
        if ack is None:
            counts["failed"] += 1
        elif ack["status"] == "stored":
            counts["held" if ack["reason"] else "stored"] += 1
        else:
            counts[ack["status"]] += 1
    result = ImportResult(bundle.bundle_id, bundle.terminal, len(sales), **counts,   # purse lines apart
                          acks=tuple(a for a in acks if a is not None))
    log.info("sales bundle imported", extra={"bundle_id": bundle.bundle_id, "terminal": bundle.terminal,
                                             **counts})
    return result


def receipt(result: ImportResult, state_dir: Path, *, now: dt.datetime) -> bytes:
    """The registry's answers to an imported bundle, signed with its configuration key (registry.configs),
    for the terminal: importing it marks the sales synced as the acks over MQTT would have."""
    from registry.configs import load_or_create_signing_key

    key = load_or_create_signing_key(state_dir)
    return encode_receipt(result.acks, bundle_id=result.bundle_id, terminal=result.terminal,
                          created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), key_id=key_id(key.public_key()),
                          private_key=key)


def export_config(session: Session, device_id: str, *, issuer: ConfigIssuer, now: dt.datetime) -> bytes:
    """The device's signed configuration as a bundle file: the one the registry publishes to it (a new
    release when the database changed since, registry.configs; committed here). now: naive UTC."""
    device = session.get(Device, device_id)
    if device is None:
        raise ConfigError(f"no device {device_id!r}", key="--device")
    if device.status != "active":
        raise ConfigError(f"device {device_id!r} is {device.status}, not active", key="--device")
    envelope = issuer.issue_config(session, device, now)
    session.commit()
    return encode_config_bundle(envelope, created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
