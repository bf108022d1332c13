"""The registry of devices: enrollment tokens, serial numbers registered ahead, and each device's status.

A device's status moves only along MOVES (pending -> active -> revoked or decommissioned; revoked ->
decommissioned; a pending device an operator refuses is decommissioned); any other move is a MoveRefused.
Revoking puts the device's certificate on the CA's CRL (registry.pki); decommissioning revokes it too and
the device is never active again (its serial and id stay taken).

A token is shown once: only its SHA-256 is stored. The certificate each device holds is kept in its row
(cert_pem, with its fingerprint and expiry), so any registry host can revoke it; a device whose certificate
is known only by its fingerprint cannot be revoked here and says so (DeviceError).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.device_messages import RESERVED_IDS
from contracts.errors import ConfigError, ForecourtError
from registry.models import Device, EnrollmentToken, ExpectedDevice, Station
from registry.pki import Authority, CertificateRefused

__all__ = [
    "MOVES", "STATUSES", "TOKEN_TTL", "DeviceError", "DeviceView", "MoveRefused", "UnknownDevice",
    "accept", "awaiting_enrollment", "create_token", "decommission", "device_view", "import_expected",
    "list_devices", "move", "revoke", "token_digest",
]

STATUSES = ("pending", "active", "revoked", "decommissioned")
MOVES: frozenset[tuple[str, str]] = frozenset({
    ("pending", "active"), ("pending", "decommissioned"),
    ("active", "revoked"), ("active", "decommissioned"),
    ("revoked", "decommissioned"),
})
TOKEN_TTL = dt.timedelta(minutes=15)
MAX_TTL = dt.timedelta(days=7)
ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")          # contracts.device_messages' device id
SERIAL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")     # and serial number


class DeviceError(ForecourtError):
    """A device operation the registry will not do."""


class UnknownDevice(DeviceError, LookupError):
    """No device with this id."""


class MoveRefused(DeviceError):
    """The device's status does not allow this move (MOVES)."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, station: str, now: dt.datetime, *, device_id: str | None = None,
                 ttl: dt.timedelta = TOKEN_TTL) -> str:
    """A one-time enrollment token for a device of station (given device_id, or one made up at
    enrollment); returned once, stored only as its SHA-256."""
    if session.get(Station, station) is None:
        raise ConfigError(f"no station {station!r}", key="--station")
    if device_id is not None:
        _check_new_id(session, device_id, station)
    if not dt.timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise ConfigError("token lifetime must be 1 minute to 7 days", key="--ttl")
    token = secrets.token_urlsafe(32)
    session.add(EnrollmentToken(digest=token_digest(token), station_id=station, device_id=device_id,
                                created_at=now, expires_at=now + ttl))
    session.commit()
    return token


def awaiting_enrollment(device: Device) -> bool:
    """A device made by an operator (the seed) that has not enrolled yet: no serial, no certificate. Its
    enrollment takes the row and keeps its PIN key."""
    return (device.serial is None and device.cert_fingerprint is None
            and device.status in ("pending", "active"))


def _check_new_id(session: Session, device_id: str, station: str) -> None:
    if not ID.fullmatch(device_id) or device_id in RESERVED_IDS:
        raise ConfigError("a device id is 1-64 letters, digits, _ . - and not a reserved name",
                          key="--device-id")
    device = session.get(Device, device_id)
    if device is not None and not awaiting_enrollment(device):
        raise ConfigError(f"device {device_id} already exists", key="--device-id")
    if device is not None and device.station_id != station:
        raise ConfigError(f"device {device_id} belongs to station {device.station_id}", key="--station")


def _device(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise UnknownDevice(f"no device {device_id!r}", device=device_id[:64])
    return device


def move(session: Session, device_id: str, to: str) -> Device:
    """Change a device's status along MOVES (not committed); MoveRefused otherwise."""
    device = _device(session, device_id)
    if (device.status, to) not in MOVES:
        raise MoveRefused(f"device {device.id} is {device.status}: it cannot become {to}",
                          device=device.id, status=device.status, to=to)
    device.status = to
    return device


def accept(session: Session, device_id: str) -> Device:
    """An operator accepts a pending device; the registry then sends it its certificate and keys."""
    device = move(session, device_id, "active")
    session.commit()
    return device


def revoke(session: Session, authority: Authority, device_id: str, now: dt.datetime) -> Device:
    """The device's certificate goes on the CRL; the device is revoked."""
    device = move(session, device_id, "revoked")
    _revoke_certificate(authority, device, now)
    session.commit()
    return device


def decommission(session: Session, authority: Authority, device_id: str, now: dt.datetime) -> Device:
    """Retired for good: its certificate revoked (if not already) and never active again."""
    device = _device(session, device_id)
    was = device.status
    move(session, device_id, "decommissioned")
    if was == "active":
        _revoke_certificate(authority, device, now)
    session.commit()
    return device


def _revoke_certificate(authority: Authority, device: Device, now: dt.datetime) -> None:
    """Put the certificate in the device's row on the CRL (nothing: it never had one)."""
    if device.cert_pem is None:
        if device.cert_fingerprint is not None:     # it holds one the registry cannot name to the CA
            raise DeviceError(f"device {device.id}: its certificate is not in the registry's database, "
                              "so it cannot be revoked here", device=device.id)
        return                          # never issued one (a seeded device, or one not yet delivered)
    try:
        authority.revoke(device.cert_pem, now=now.replace(tzinfo=dt.UTC))
    except CertificateRefused as exc:
        raise DeviceError(f"device {device.id}: its certificate cannot be revoked ({exc})",
                          device=device.id) from exc


def import_expected(session: Session, text: str, now: dt.datetime) -> int:
    """Serial numbers registered ahead, from CSV lines serial,station[,device_id] (a header line
    "serial,..." is skipped). All or nothing: the first bad line is a ConfigError naming it. A serial
    imported again takes the new station and id. Returns the number of rows."""
    rows: dict[str, tuple[str, str | None]] = {}
    ids: dict[str, int] = {}
    stations = set(session.scalars(select(Station.id)).all())
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        fields = [f.strip() for f in fields]
        if not fields or fields == [""] or fields[0].startswith("#"):
            continue
        if number == 1 and fields[0].lower() == "serial":
            continue
        _check_row(session, fields, number, stations, rows, ids)
        rows[fields[0]] = (fields[1], fields[2] if len(fields) == 3 and fields[2] else None)
    for serial, (station, device_id) in rows.items():
        session.merge(ExpectedDevice(serial=serial, station_id=station, device_id=device_id, imported_at=now))
    session.commit()
    return len(rows)


def _check_row(session: Session, fields: list[str], number: int, stations: set[str],
               rows: dict[str, Any], ids: dict[str, int]) -> None:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"line {number}: {why}", line=number)

    if len(fields) not in (2, 3):
        raise bad("expected serial,station[,device_id]")
    serial, station = fields[0], fields[1]
    device_id = fields[2] if len(fields) == 3 and fields[2] else None
    if not SERIAL.fullmatch(serial):
        raise bad("a serial number is 1-64 letters, digits, _ . : -")
    if serial in rows:
        raise bad(f"serial {serial} appears twice")
    if station not in stations:
        raise bad(f"no station {station!r}")
    if session.scalar(select(Device.id).where(Device.serial == serial)) is not None:
        raise bad(f"serial {serial} is already enrolled")
    if device_id is not None:
        if not ID.fullmatch(device_id) or device_id in RESERVED_IDS:
            raise bad("a device id is 1-64 letters, digits, _ . - and not a reserved name")
        if device_id in ids:
            raise bad(f"device id {device_id} also on line {ids[device_id]}")
        device = session.get(Device, device_id)
        if device is not None and not (awaiting_enrollment(device) and device.station_id == station):
            raise bad(f"device {device_id} already exists")
        ids[device_id] = number


@dataclass(frozen=True)
class DeviceView:
    """What an operator sees of a device (no key, no token)."""

    id: str
    station: str
    serial: str | None
    status: str
    cert_fingerprint: str | None
    cert_expires_at: dt.datetime | None
    first_seen_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    online: bool
    config_desired: int | None
    config_reported: int | None
    software_desired: str | None
    software_reported: str | None
    backlog: int
    backlog_oldest_s: int

    def fields(self) -> dict[str, str]:
        """Each field as text (empty for none), in order: a table row or a CSV line."""
        def text(v: object) -> str:
            if v is None:
                return ""
            if isinstance(v, dt.datetime):
                return v.strftime("%Y-%m-%d %H:%M:%SZ")
            if isinstance(v, bool):
                return "yes" if v else "no"
            return str(v)
        return {k: text(v) for k, v in self.__dict__.items()}


def device_view(session: Session, device_id: str) -> DeviceView:
    return _view(_device(session, device_id))


def list_devices(session: Session, *, station: str | None = None) -> list[DeviceView]:
    query = select(Device).order_by(Device.station_id, Device.id)
    if station is not None:
        query = query.where(Device.station_id == station)
    return [_view(d) for d in session.scalars(query).all()]


def _view(d: Device) -> DeviceView:
    return DeviceView(d.id, d.station_id, d.serial, d.status, d.cert_fingerprint, d.cert_expires_at,
                      d.first_seen_at, d.last_seen_at, d.online, d.desired_config_version,
                      d.reported_config_version, d.desired_software_version, d.reported_software_version,
                      d.backlog, d.backlog_oldest_s)
