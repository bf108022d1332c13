"""The device's identity: its private key, made on the device and never exported, a certificate signing
request (CSR) naming it, and what a certificate says (subject, fingerprint, expiry).

The key is EC P-256 (the curve registry.pki issues for), written once as PKCS#8 PEM with mode 0600 through
firmware.keyfile; only its public half ever leaves the device, inside the CSR (RFC 2986, self-signed so the
registry can check who holds the key).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.device_messages import RESERVED_IDS
from contracts.errors import ConfigError
from firmware.keyfile import read_key_file, write_key_file

__all__ = ["CA_CERT", "DEVICE_CERT", "DEVICE_KEY", "CertInfo", "certificate_info", "check_certificate",
           "check_device_id", "create_device_key", "load_device_key", "make_csr"]

DEVICE_KEY = "device.key"      # the device's private key, 0600, made here
DEVICE_CERT = "device.pem"     # its certificate, issued by the registry's CA
CA_CERT = "ca.pem"             # the CA that signs the broker's and the registry's certificates

_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")       # contracts.device_messages: a device id / serial in a CN


def check_device_id(name: str, *, what: str = "device id") -> str:
    """A name fit for a certificate's common name and an MQTT topic level; not a reserved identity."""
    if not _ID.fullmatch(name):
        raise ConfigError(f"{what} must be 1..64 letters, digits, '.', '_' or '-'", key=what)
    if name.lower() in RESERVED_IDS:
        raise ConfigError(f"{what} {name!r} is reserved for the registry's own identities", key=what)
    return name


def create_device_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A new P-256 key from the OS random source, written to path (0600, atomically). An existing file is
    never overwritten (ConfigError): a device key is replaced only by rotate-cert, under another name."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    try:
        write_key_file(path, pem, replace=False)
    except FileExistsError as exc:
        raise ConfigError(f"{path} exists already: a device key is never overwritten",
                          path=str(path)) from exc
    return key


def load_device_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The device key in path; refused when others may read the file or it is not a P-256 key."""
    text = read_key_file(path)
    try:
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} does not hold a PEM private key", path=str(path)) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{path} is not an EC P-256 key", path=str(path))
    return key


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    """A PEM CSR for key with subject CN=common_name, signed by key itself (ECDSA with SHA-256)."""
    check_device_id(common_name, what="common name")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class CertInfo:
    subject: str               # RFC 4514 string, e.g. CN=T-0001
    common_name: str
    issuer: str
    fingerprint: str           # SHA-256 of the DER certificate, hex (as the registry stores it)
    not_before: dt.datetime
    not_after: dt.datetime

    def days_left(self, now: dt.datetime) -> int:
        """Whole days until expiry (negative once expired)."""
        return (self.not_after - now).days


def _load(pem: str | bytes, what: str) -> x509.Certificate:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{what} is not a PEM certificate", key=what) from exc


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def certificate_info(pem: str | bytes, *, what: str = "certificate") -> CertInfo:
    """What a technician (and `provision status`) wants to know about a certificate."""
    cert = _load(pem, what)
    return CertInfo(subject=cert.subject.rfc4514_string(), common_name=_common_name(cert.subject),
                    issuer=cert.issuer.rfc4514_string(),
                    fingerprint=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def check_certificate(cert_pem: str, ca_pem: str, key: ec.EllipticCurvePrivateKey, *, common_name: str,
                      now: dt.datetime) -> CertInfo:
    """The certificate the registry sent is for this device's key and name, signed by the CA sent with it
    (the first certificate of ca_pem) and valid now; ConfigError saying which check failed."""
    cert = _load(cert_pem, "certificate")
    ca = _load(ca_pem, "CA certificate")
    if cert.public_key() != key.public_key():
        raise ConfigError("the certificate is not for this device's key", key="certificate")
    if _common_name(cert.subject) != common_name:
        raise ConfigError(f"the certificate names {_common_name(cert.subject)!r}, not {common_name!r}",
                          key="certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError("the certificate is not signed by the CA sent with it", key="certificate") from exc
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(f"the certificate is valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                          f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now "
                          f"({now:%Y-%m-%d %H:%M} UTC on this device)", key="certificate")
    return certificate_info(cert_pem)
