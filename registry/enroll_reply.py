"""The "accepted" enrollment reply: the device's certificate, the CA, the configuration keys and the keys
sealed to the device key (registry.keyinject) - made on acceptance, or made again for the same key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.keyinject import KeyInjector
from registry.keys import RegistryKeys
from registry.models import Device
from registry.pki import Authority, CertificateRefused

__all__ = ["CERT_DAYS", "accepted", "accepted_again", "csr_public_key", "wire_time"]

CERT_DAYS = 365


def wire_time(when: dt.datetime) -> str:
    """A naive UTC datetime as a wire timestamp."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def csr_public_key(csr_pem: str) -> ec.EllipticCurvePublicKey | None:
    """The CSR's P-256 key when the CSR is one the authority will sign, else None."""
    try:        # a request that parses may still hold no usable key (version 4, unknown curve, no point)
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        key, valid = csr.public_key(), csr.is_signature_valid
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm, x509.InvalidVersion):
        return None
    if not valid or not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    return key


def accepted(session: Session, authority: Authority, keys: RegistryKeys, device: Device, csr_pem: str,
             request_id: str, now: dt.datetime, *, injector: KeyInjector,
             config_keys: Mapping[str, str]) -> dict[str, Any]:
    """Issue the device's certificate and seal its keys: the "accepted" reply (the caller commits). A
    certificate already issued for the CSR's key is reused (a reply prepared again after a lost publish
    or a lapsed lease: the first may still arrive, so both must stay valid); one for another key is revoked
    before the new one is issued (a device holds one valid certificate)."""
    if device.cert_pem and _same_key(device.cert_pem, csr_pem) and device.dukpt_key_id is not None:
        return _reply(authority, keys, device, request_id, now, injector=injector, config_keys=config_keys)
    if device.cert_pem and not _same_key(device.cert_pem, csr_pem):
        authority.revoke(device.cert_pem, now=now.replace(tzinfo=dt.UTC))
    issued = authority.issue(csr_pem, device.id, days=CERT_DAYS, now=now.replace(tzinfo=dt.UTC))
    device.cert_fingerprint = issued.fingerprint
    device.cert_expires_at = issued.not_after.astimezone(dt.UTC).replace(tzinfo=None)
    device.cert_pem = issued.cert_pem
    if device.dukpt_key_id is None:
        key_id = injector.new_key_id(lambda k: session.scalar(
            select(Device.id).where(Device.dukpt_key_id == k)) is not None)
        device.dukpt_key_id = key_id.hex().upper()
    return _reply(authority, keys, device, request_id, now, injector=injector, config_keys=config_keys)


def accepted_again(device: Device, *, authority: Authority, keys: RegistryKeys, doc: Mapping[str, Any],
                   now: dt.datetime, injector: KeyInjector,
                   config_keys: Mapping[str, str]) -> dict[str, Any] | None:
    """The accepted reply once more for a request that repeats the token which enrolled `device` with the key
    its certificate holds (a device whose retained answer was lost or replaced); None otherwise. Nothing new
    is issued: the same certificate, the keys sealed afresh to that key, which only the device can open."""
    if device.status != "active" or not device.cert_pem or device.dukpt_key_id is None:
        return None
    if not _same_key(device.cert_pem, doc["csr_pem"]):
        return None
    return _reply(authority, keys, device, doc["request_id"], now, injector=injector, config_keys=config_keys)


def _same_key(cert_pem: str, csr_pem: str) -> bool:
    """Whether the certificate holds the CSR's (usable P-256) key."""
    held = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_key()
    asked = csr_public_key(csr_pem)
    return isinstance(held, ec.EllipticCurvePublicKey) and asked is not None \
        and held.public_numbers() == asked.public_numbers()


def _reply(authority: Authority, keys: RegistryKeys, device: Device, request_id: str, now: dt.datetime, *,
           injector: KeyInjector, config_keys: Mapping[str, str]) -> dict[str, Any]:
    if device.cert_pem is None or device.dukpt_key_id is None:
        raise CertificateRefused("device has no certificate or key id yet")
    public = x509.load_pem_x509_certificate(device.cert_pem.encode("ascii")).public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):      # the authority signs P-256 keys only
        raise CertificateRefused("device certificate holds no EC key")
    sealed = injector.sealed_keys(keys, device.pin_key_hex, bytes.fromhex(device.dukpt_key_id), public,
                                  device_id=device.id, request_id=request_id)
    return {"request_id": request_id, "status": "accepted", "reason": "", "device_id": device.id,
            "station": device.station_id, "certificate_pem": device.cert_pem, "ca_pem": authority.ca_pem,
            "config_keys": dict(config_keys), "keys_sealed": sealed, "server_time": wire_time(now)}
