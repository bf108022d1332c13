"""The fleet's certificate authority: the broker's server certificate and every MQTT client certificate.

One directory holds it (docs/security.md): ca.pem ca.key (the CA, EC P-256, 10 years), broker.pem
broker.key (TLS server, a SAN for each broker host), registry.pem registry.key (client, CN=registry),
claim.pem claim.key (client, CN=claim: the shared enrollment identity) and crl.pem (the revoked device
certificates, signed by the CA). Keys are written atomically with mode 0600 and refused when other users
can read them (the rules of registry.keys). A device certificate's common name is the device id, which
Mosquitto takes as the user name (use_identity_as_username) for the ACL.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contracts.device_messages import RESERVED_IDS
from contracts.errors import ConfigError, MessageError
from registry.keys import _read_private, _write_private, write_atomic

__all__ = ["CA_DAYS", "CRL_DAYS", "CRL_RENEW", "Authority", "CertificateRefused", "Issued", "fingerprint",
           "holds_key"]

CA_DAYS = 3650
SERVICE_DAYS = 825        # broker, registry and claim certificates (re-made by `pki init` into a new dir)
CRL_DAYS = 365            # nextUpdate: OpenSSL refuses every client once the CRL has expired
CRL_RENEW = timedelta(days=30)   # re-signed by the registry's ticker once nextUpdate is this close
BACKDATE = timedelta(minutes=5)   # notBefore a little early: a device clock a few seconds behind still works
_CN = re.compile(r"[A-Za-z0-9_.-]{1,64}")   # the device id of contracts.device_messages


class CertificateRefused(MessageError):
    """A CSR or certificate the authority will not sign or revoke."""


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    fingerprint: str
    not_after: datetime


def fingerprint(cert_pem: str) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex (what the registry stores per device)."""
    return hashlib.sha256(_load_cert(cert_pem).public_bytes(serialization.Encoding.DER)).hexdigest()


def holds_key(cert_pem: str, csr_pem: str) -> bool:
    """Whether the certificate holds the key of the CSR (one whose own signature verifies): the same
    request asked again."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        asked, valid = csr.public_key(), csr.is_signature_valid
        held = _load_cert(cert_pem).public_key()
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm, x509.InvalidVersion,
            CertificateRefused):
        return False
    return valid and held == asked


class Authority:
    """The CA loaded from its directory: issues device certificates and keeps the CRL."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.directory, self._cert, self._key = directory, cert, key

    @property
    def ca_pem(self) -> str:
        return self._cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @classmethod
    def create(cls, directory: Path, *, broker_hosts: Sequence[str] = ("127.0.0.1", "localhost"),
               now: datetime | None = None) -> Authority:
        """A new CA with its broker, registry and claim certificates and an empty CRL; refused if the
        directory already holds a CA (a second CA would lock every device out)."""
        now = _utc(now)
        if (directory / "ca.key").exists():
            raise ConfigError(f"an authority already exists in {directory}", path=str(directory))
        if not broker_hosts:
            raise ConfigError("the broker certificate needs at least one host name or address")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "forecourt"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "forecourt fleet CA")])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_key_usage(cert_sign=True), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        _write_key(directory / "ca.key", key)
        _write_public(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
        authority = cls(directory, cert, key)
        authority._write_service("broker", now, server_hosts=broker_hosts)
        authority._write_service("registry", now)
        authority._write_service("claim", now)
        authority._write_crl({}, now)
        return authority

    @classmethod
    def load(cls, directory: Path) -> Authority:
        cert = _load_cert(_read_public(directory / "ca.pem"))
        text = _read_private(directory / "ca.key")          # ConfigError when others can read it
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), None)
        except ValueError as exc:
            raise ConfigError("CA key file is damaged", path=str(directory / "ca.key")) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise ConfigError("ca.key is not the key of ca.pem", path=str(directory))
        return cls(directory, cert, key)

    def issue(self, csr_pem: str, common_name: str, *, days: int = 365,
              now: datetime | None = None) -> Issued:
        """A client certificate for a device id from its CSR (the key never leaves the device)."""
        now = _utc(now)
        if not _CN.fullmatch(common_name) or common_name in RESERVED_IDS:
            raise CertificateRefused("a device certificate needs a device id that is not reserved",
                                     common_name=common_name[:64])
        if not 1 <= days <= CA_DAYS:
            raise CertificateRefused("certificate lifetime out of range", days=days)
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError, x509.InvalidVersion) as exc:
            raise CertificateRefused("not a PEM certificate request") from exc
        try:       # a request that parses may still hold no usable key (an unknown curve, no point)
            valid, public = csr.is_signature_valid, csr.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            raise CertificateRefused("the request's key cannot be read", common_name=common_name) from exc
        if not valid:
            raise CertificateRefused("the request's signature does not verify", common_name=common_name)
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
            raise CertificateRefused("device keys must be EC P-256", common_name=common_name)
        cert = self._sign(public, common_name, now, now + timedelta(days=days), client=True)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return Issued(pem, fingerprint(pem), cert.not_valid_after_utc)

    def revoke(self, cert_pem: str, *, now: datetime | None = None) -> None:
        """Add a certificate this CA issued to crl.pem (re-signed). The broker reads the CRL when it starts:
        restart it after a revocation (docs/security.md)."""
        cert = _load_cert(cert_pem)
        if not self.issued(cert):
            raise CertificateRefused("the certificate was not issued by this authority")
        when = _utc(now)
        with self._crl_lock():
            entries = self._entries()
            if cert.serial_number not in entries:
                self._write_crl({**entries, cert.serial_number: when}, when)

    def refresh_crl(self, *, now: datetime | None = None) -> None:
        """Re-sign the CRL with the same entries and a new nextUpdate (before CRL_DAYS run out)."""
        with self._crl_lock():
            self._write_crl(self._entries(), _utc(now))

    def renew_crl_if_due(self, *, now: datetime | None = None, within: timedelta = CRL_RENEW) -> bool:
        """Re-sign the CRL when its nextUpdate is less than `within` away (a registry ticker calls this);
        True when it did."""
        when = _utc(now)
        with self._crl_lock():
            next_update = self._crl().next_update_utc
            if next_update is not None and next_update - when >= within:
                return False
            self._write_crl(self._entries(), when)
        return True

    def issued(self, cert: x509.Certificate) -> bool:
        """True when this CA signed cert."""
        try:
            cert.verify_directly_issued_by(self._cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def revoked_serials(self) -> list[int]:
        return list(self._entries())

    @contextmanager
    def _crl_lock(self) -> Iterator[None]:
        """Every process on this directory (the registry, `registry device revoke`) rewrites crl.pem under
        an exclusive flock on DIR/.crl.lock, so no revocation is lost between a read and a write."""
        fd = os.open(self.directory / ".crl.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)                    # releases the lock

    def _entries(self) -> dict[int, datetime]:
        """serial -> revocation date of each CRL entry."""
        return {entry.serial_number: entry.revocation_date_utc for entry in self._crl()}

    def _crl(self) -> x509.CertificateRevocationList:
        try:
            crl = x509.load_pem_x509_crl(_read_public(self.crl_path).encode("ascii"))
        except ValueError as exc:
            raise ConfigError("crl.pem is damaged", path=str(self.crl_path)) from exc
        if not crl.is_signature_valid(self._key.public_key()):
            raise ConfigError("crl.pem is not signed by this CA", path=str(self.crl_path))
        return crl

    def _write_crl(self, entries: Mapping[int, datetime], now: datetime) -> None:
        """Sign crl.pem with these entries, each keeping its own revocation date (RFC 5280 5.1.2.6: the
        date on which the revocation occurred, not when the list was last signed)."""
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self._cert.subject)
                   .last_update(now - BACKDATE).next_update(now + timedelta(days=CRL_DAYS)))
        for serial, revoked_at in entries.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at).build())
        crl = builder.sign(self._key, hashes.SHA256())
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM).decode("ascii"))

    def _write_service(self, name: str, now: datetime, *, server_hosts: Sequence[str] = ()) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(key.public_key(), name, now, now + timedelta(days=SERVICE_DAYS),
                          client=not server_hosts, hosts=server_hosts)
        _write_key(self.directory / f"{name}.key", key)
        _write_public(self.directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM).decode())

    def _sign(self, public: ec.EllipticCurvePublicKey, common_name: str, now: datetime,
              not_after: datetime, *, client: bool, hosts: Sequence[str] = ()) -> x509.Certificate:
        not_after = min(not_after, self._cert.not_valid_after_utc)   # never outlive the CA
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(self._cert.subject).public_key(public)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - BACKDATE).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(_key_usage(cert_sign=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                                  critical=False))
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]),
                                            critical=False)
        return builder.sign(self._key, hashes.SHA256())


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    if now.tzinfo is None:
        raise ConfigError("time must carry its zone (UTC)")
    return now.astimezone(UTC)


def _load_cert(cert_pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateRefused("not a PEM certificate") from exc


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        _write_private(path, pem.decode("ascii"))
    except FileExistsError as exc:
        raise ConfigError(f"key file already exists: {path}", path=str(path)) from exc


def _write_public(path: Path, text: str) -> None:
    """Replace path atomically (certificates and the CRL: public, mode 0644, read by the broker)."""
    write_atomic(path, text, mode=0o644, replace=True)


def _read_public(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise ConfigError(f"authority file not found: {path}", path=str(path)) from exc
