"""The registry's signed configurations: its Ed25519 signing key and one configuration per device.

The key lives in the registry's state directory (config-signing.key, PKCS#8 PEM, mode 0600); terminals
trust its public key by key id (config_keys(), handed out at enrollment). A device's configuration gets a
new version only when its body changes or its release nears expiry, so republishing is idempotent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, MessageError
from contracts.signing import digest, key_id, public_b64, sign_envelope
from registry import attendants
from registry.fleet.rules import local_time
from registry.fleet.stoplist import offline_limits, stop_list_for
from registry.keys import RegistryKeys, _read_private, _write_private
from registry.loyalty import earnsale
from registry.models import (
    ConfigRelease,
    Device,
    EarnRule,
    LoyaltySetting,
    Nozzle,
    Product,
    Promotion,
    Station,
    Tier,
)

__all__ = ["KEY_FILE", "REPUBLISH_EVERY", "ConfigIssuer", "build_body", "config_keys",
           "load_or_create_signing_key", "programs_signature"]

log = logging.getLogger(__name__)

KEY_FILE = "config-signing.key"
VALIDITY = dt.timedelta(days=30)
# A release with less than this left is renewed (a new version) at the next publish: the registry
# publishes every REPUBLISH_EVERY, so a terminal that is online never runs an expired configuration.
RENEW_WITHIN = dt.timedelta(days=10)
REPUBLISH_EVERY = dt.timedelta(hours=6)     # the registry's publish round besides each reconnect


def load_or_create_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    """The configuration signing key in state_dir, made on first use (never over an existing file)."""
    path = state_dir / KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        with contextlib.suppress(FileExistsError):         # another process made it first: use that one
            _write_private(path, pem.decode("ascii"))
    pem_text = _read_private(path)          # ConfigError when missing or readable by others
    try:
        key = load_pem_private_key(pem_text.encode("ascii"), password=None)
    except ValueError as exc:
        raise ConfigError("configuration signing key is damaged", path=str(path)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("configuration signing key is not Ed25519", path=str(path))
    return key


def config_keys(state_dir: Path) -> dict[str, str]:
    """{key id: base64 public key} terminals trust (config-keys.json, ENROLL_REPLY config_keys)."""
    public = load_or_create_signing_key(state_dir).public_key()
    return {key_id(public): public_b64(public)}


def build_body(s: Session, device: Device, keys: RegistryKeys | None = None,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """The configuration body for one device from the database: its station, nozzles and products, its
    stop-list and the attendants of its station (both given the registry's keys), the offline limits of
    fleet card classes and the loyalty programme (what the terminal prints a sale earns)."""
    station = s.get(Station, device.station_id)
    nozzles = s.scalars(select(Nozzle).where(Nozzle.station_id == device.station_id)
                        .order_by(Nozzle.pump, Nozzle.nozzle)).all()
    used = sorted({n.product_code for n in nozzles})
    known = s.scalars(select(Product).where(Product.code.in_(used))).all()
    names, groups = {p.code: p.name for p in known}, {p.code: p.group for p in known}
    codes3 = {p.code: p.code3 for p in known if p.code3}
    pumps: dict[int, list[dict[str, Any]]] = {}
    for n in nozzles:
        pumps.setdefault(n.pump, []).append({"nozzle": n.nozzle, "product": n.product_code})
    return {
        "station": device.station_id, "station_name": station.name if station else device.station_id,
        "currency": station.currency if station else "EUR",
        "prices": [{"pump": n.pump, "nozzle": n.nozzle, "product": n.product_code,
                    "product_name": names.get(n.product_code, n.product_code), "price_milli": n.price_milli}
                   for n in nozzles],
        "products": [{"code": code, "name": names.get(code, code)} for code in used],
        "pumps": [{"pump": pump, "nozzles": noz} for pump, noz in sorted(pumps.items())],
        "stop_list": stop_list_for(s, keys, device, now or dt.datetime.now(dt.UTC).replace(tzinfo=None))
        if keys is not None else [],
        "offline_limits": offline_limits(s), "registry_bundle_key": "",
        "programs": _programs(s, device.station_id, station.timezone if station else "UTC", now),
        "attendants": attendants.config_entries(s, keys, device) if keys is not None else [],
        "timezone": station.timezone if station else "UTC", "product_groups": groups,
        "product_codes3": codes3,
    }


def _programs(s: Session, station: str, timezone: str, now: dt.datetime | None) -> list[dict[str, Any]]:
    """The loyalty programme's entry when the network has earn rules or promotions; none when it does not
    fit a configuration (logged: terminals then print no points, the registry still books them)."""
    if not s.scalar(select(func.count()).select_from(EarnRule)) and not s.scalar(
            select(func.count()).select_from(Promotion)):
        return []
    today = local_time(now or dt.datetime.now(dt.UTC).replace(tzinfo=None), timezone).date()
    try:
        settings = earnsale.config_settings(s, station, today)
    except MessageError:
        log.error("loyalty programme too large for the configuration", extra={"station": station,
                                                                               "alarm": "loyalty_config"})
        return []
    return [{"name": "loyalty", "enabled": 1, "settings": settings}]


def programs_signature(s: Session) -> tuple[Any, ...]:
    """Changes whenever the loyalty programme a configuration carries may change (rules, promotions, tiers,
    settings): the registry's publish loop republishes on it."""
    return tuple(tuple(tuple(r) for r in s.execute(select(*model.__table__.columns)).all())
                 for model in (EarnRule, Promotion, Tier, LoyaltySetting))


@dataclass
class ConfigIssuer:
    """Signs each device's configuration with the registry's key (made in state_dir on first use)."""

    state_dir: Path
    validity: dt.timedelta = VALIDITY
    renew_within: dt.timedelta = RENEW_WITHIN
    keys: RegistryKeys | None = None        # the registry's: stop-lists are made with them

    def __post_init__(self) -> None:
        self._key = load_or_create_signing_key(self.state_dir)
        self.key_id = key_id(self._key.public_key())

    def config_keys(self) -> dict[str, str]:
        public = self._key.public_key()
        return {self.key_id: public_b64(public)}

    def issue_config(self, s: Session, device: Device, now: dt.datetime) -> dict[str, Any]:
        """The SIGNED_CONFIG document the device should run (now: naive UTC). A new release, version + 1,
        when the body changed, the last release nears expiry or was signed by another key; else the last
        release as it was sent. Adds to the session; the caller commits (a concurrent issue of the same
        version fails on the (device, version) unique constraint)."""
        from registry.usbimport import bundle_public_key  # usbimport imports this module

        body = build_body(s, device, self.keys, now)
        body["registry_bundle_key"] = bundle_public_key(self.state_dir)
        body_digest = digest(body)
        last = s.scalars(select(ConfigRelease).where(ConfigRelease.device_id == device.id)
                         .order_by(ConfigRelease.version.desc()).limit(1)).first()
        if last is not None:
            envelope: dict[str, Any] = json.loads(last.envelope)
            if (last.digest == body_digest and envelope.get("key_id") == self.key_id
                    and last.expires_at - now > self.renew_within):
                device.desired_config_version = last.version
                return envelope
        version = 1 if last is None else last.version + 1
        issued = now.replace(microsecond=0)
        envelope = sign_envelope(body, terminal=device.id, version=version, issued_at=issued,
                                 expires_at=issued + self.validity, key_id=self.key_id, private_key=self._key)
        s.add(ConfigRelease(device_id=device.id, version=version, digest=body_digest, issued_at=issued,
                            expires_at=issued + self.validity, envelope=json.dumps(envelope)))
        device.desired_config_version = version
        log.info("configuration issued", extra={"device": device.id, "version": version})
        return envelope
