"""Station attendants: credentials kept centrally, the registry's sign-in check, the audit of their actions.

An attendant has a card (kept as its keyed token, RegistryKeys.token, and its number sealed under the KEK so
that each terminal's configuration can name the card by that terminal's own keyed entry) and a PIN (kept
only as a PBKDF2 verifier, contracts.signing.pin_verifier). Wrong PINs in a row past the programme setting
attendant_tries lock the attendant out until an operator unlocks them. Every sign-in, refusal, lockout and
operator change is an AuditEntry; nothing commits here (the caller does, also after a refused sign-in).
The card number is kept sealed under the KEK (card_sealed): each terminal's configuration entry is made
from it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contracts.cards import mask_number
from contracts.errors import ConfigError, ForecourtError
from contracts.panseal import derive_stop_key, stop_entry
from contracts.signing import PIN_ITERATIONS, pin_matches, pin_verifier
from registry.fleet.admin import audit, need_reason
from registry.fleet.cards import parse_number
from registry.keys import RegistryKeys
from registry.loyalty import settings
from registry.loyalty_models import Attendant, LoyaltySetting
from registry.models import Device, Station

__all__ = ["ACTIONS", "CARD_ENTRY_PREFIX", "MOST", "REFUSALS", "ROLES", "AttendantError", "SignIn", "add",
           "audit_action", "card_entry", "check_pin", "config_entries", "has_pin", "lock", "set_card",
           "set_pin", "signature", "tries_allowed", "unlock", "verify", "withdraw"]

log = logging.getLogger(__name__)

ROLES = ("attendant", "supervisor")
# what an attendant does at a terminal; each is audited as "attendant.<action>" (audit_action)
ACTIONS = ("sign_in", "cash_prepay", "topup", "redeem", "convert", "movements", "reprint", "clear_pump",
           "settle_open", "x_report", "z_report", "voucher", "sign_out")
# why a sign-in is refused; "locked" also answers a withdrawn attendant and one without a PIN or card
REFUSALS = ("terminal", "unknown", "locked", "wrong_pin", "station")
MOST = 64                               # attendants a configuration carries (contracts.signing.CONFIG_BODY)
NAME_SHOWN = 40                         # of a name, in the configuration (the terminal's screen line)
# a card's entry is its stop-list style entry (contracts.panseal.stop_entry, the terminal's stop key) of
# this prefix and its number: never equal to the same card's stop-list entry
CARD_ENTRY_PREFIX = "attendant:"
_ID = re.compile(r"[A-Za-z0-9_.-]{1,16}", re.ASCII)     # the configuration's id pattern, the column's size
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
_PIN = re.compile(r"[0-9]{4,6}", re.ASCII)
_STATION = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


class AttendantError(ForecourtError):
    """An attendant change the data does not allow (unlocking one who is not locked, a withdrawn one)."""


@dataclass(frozen=True)
class SignIn:
    """The registry's answer to a sign-in: accepted, or refused with one of REFUSALS."""

    accepted: bool
    reason: str                         # "ok" or one of REFUSALS
    attendant_id: str | None = None
    role: str | None = None
    tries_left: int | None = None       # after a wrong PIN


def _credentials(row: Attendant) -> tuple[str, str]:
    """(PIN verifier, sealed card number), each "" when not set."""
    return row.pin_verifier, row.card_sealed or ""


def has_pin(row: Attendant) -> bool:
    return bool(_credentials(row)[0])


def _store(row: Attendant, *, verifier: str | None = None, sealed: str | None = None) -> None:
    if verifier is not None:
        row.pin_verifier = verifier
    if sealed is not None:
        row.card_sealed = sealed or None


def _get(s: Session, attendant_id: str) -> Attendant:
    row = s.get(Attendant, attendant_id) if isinstance(attendant_id, str) else None
    if row is None:
        raise ConfigError("unknown attendant", attendant=str(attendant_id)[:16])
    return row


def _stations(s: Session, stations: str) -> str:
    """A comma-separated list of known station ids ("" any station)."""
    ids = sorted({x.strip() for x in stations.split(",") if x.strip()})
    if any(not _STATION.fullmatch(x) for x in ids) or len(",".join(ids)) > 500:
        raise ConfigError("stations must be station ids separated by commas, 500 characters at most",
                          key="stations")
    known = set(s.scalars(select(Station.id).where(Station.id.in_(ids)))) if ids else set()
    if set(ids) - known:
        raise ConfigError("unknown station", key="stations", station=min(set(ids) - known))
    return ",".join(ids)


def check_pin(pin: str) -> str:
    """A PIN of 4 to 6 digits, not one digit repeated nor a straight run up or down (1111, 1234, 9876).

    >>> check_pin("4071")
    '4071'
    """
    if not isinstance(pin, str) or not _PIN.fullmatch(pin):
        raise ConfigError("an attendant's PIN is 4 to 6 digits", key="pin")
    steps = {(int(b) - int(a)) for a, b in itertools.pairwise(pin)}
    if steps in ({0}, {1}, {-1}):
        raise ConfigError("an attendant's PIN may not be one digit repeated or a straight run up or down",
                          key="pin")
    return pin


def add(s: Session, attendant_id: str, name: str, *, role: str = "attendant", stations: str = "", actor: str,
        now: dt.datetime) -> Attendant:
    """A new attendant, active, with no card and no PIN yet (they cannot sign in until both are set)."""
    if not isinstance(attendant_id, str) or not _ID.fullmatch(attendant_id):
        raise ConfigError("an attendant id is 1 to 16 of A-Z a-z 0-9 _ . -", key="id")
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise ConfigError("name must be 1 to 100 characters without control characters", key="name")
    if role not in ROLES:
        raise ConfigError(f"role must be {' or '.join(ROLES)}", key="role")
    if s.get(Attendant, attendant_id) is not None:
        raise ConfigError("this attendant id is taken", key="id", attendant=attendant_id)
    row = Attendant(id=attendant_id, name=name, role=role, stations=_stations(s, stations), card_token=None,
                    pin_verifier="", failed_tries=0, status="active", created_at=now)
    s.add(row)
    s.flush()
    audit(s, actor=actor, action="attendant.add", subject=f"attendant:{attendant_id}", now=now, name=name,
          role=role, stations=row.stations)
    return row


def _live(row: Attendant) -> None:
    if row.status == "withdrawn":
        raise AttendantError("the attendant is withdrawn", attendant=row.id)


def set_card(s: Session, keys: RegistryKeys, attendant_id: str, number: str, *, medium: str = "chip",
             actor: str, now: dt.datetime) -> str:
    """Give the attendant a card (replacing any they had); returns its masked number. A card held by a
    withdrawn attendant moves over; one held by another attendant is refused."""
    row = _get(s, attendant_id)
    _live(row)
    number = parse_number(number, medium)
    token, masked = keys.token(number), mask_number(number)
    holder = s.scalar(select(Attendant).where(Attendant.card_token == token))
    if holder is not None and holder.id != row.id:
        if holder.status != "withdrawn":
            raise ConfigError("this card is another attendant's", key="number", attendant=holder.id)
        holder.card_token = None
        _store(holder, sealed="")
        s.flush()
        audit(s, actor=actor, action="attendant.card_moved", subject=f"attendant:{holder.id}", now=now,
              to=row.id, masked=masked)
    row.card_token = token
    _store(row, sealed=keys.seal_number(number))
    audit(s, actor=actor, action="attendant.card", subject=f"attendant:{row.id}", now=now, masked=masked,
          medium=medium)
    return masked


def set_pin(s: Session, attendant_id: str, pin: str, *, actor: str, now: dt.datetime,
            iterations: int = PIN_ITERATIONS) -> None:
    """Set the attendant's PIN (kept only as its verifier); their wrong tries start again from none."""
    row = _get(s, attendant_id)
    _live(row)
    verifier = pin_verifier(check_pin(pin), salt=os.urandom(16), iterations=iterations)
    _store(row, verifier=verifier)
    row.failed_tries = 0
    audit(s, actor=actor, action="attendant.pin", subject=f"attendant:{row.id}", now=now)


def _move(s: Session, attendant_id: str, action: str, to: str, allowed: frozenset[str], *, actor: str,
          reason: str, now: dt.datetime) -> Attendant:
    row = _get(s, attendant_id)
    why = need_reason(reason)
    if row.status not in allowed:
        raise AttendantError(f"the attendant is {row.status}", attendant=row.id, status=row.status)
    before = row.status
    row.status = to
    if to == "active":
        row.failed_tries = 0
    audit(s, actor=actor, action=f"attendant.{action}", subject=f"attendant:{row.id}", now=now, reason=why,
          before=before)
    return row


def lock(s: Session, attendant_id: str, *, actor: str, reason: str, now: dt.datetime) -> Attendant:
    return _move(s, attendant_id, "lock", "locked", frozenset({"active"}), actor=actor, reason=reason,
                 now=now)


def unlock(s: Session, attendant_id: str, *, actor: str, reason: str, now: dt.datetime) -> Attendant:
    return _move(s, attendant_id, "unlock", "active", frozenset({"locked"}), actor=actor, reason=reason,
                 now=now)


def withdraw(s: Session, attendant_id: str, *, actor: str, reason: str, now: dt.datetime) -> Attendant:
    """For good: never signs in again (the card stays recognised, and refused, until given to another)."""
    return _move(s, attendant_id, "withdraw", "withdrawn", frozenset({"active", "locked"}), actor=actor,
                 reason=reason, now=now)


def tries_allowed(s: Session) -> int:
    """The programme setting attendant_tries (wrong PINs in a row before a lockout), default 5."""
    row = s.get(LoyaltySetting, "attendant_tries")
    if row is None:
        return settings.DEFAULTS["attendant_tries"]
    return settings.parse("attendant_tries", row.value)


def _refused(s: Session, actor: str, subject: str, reason: str, now: dt.datetime, where: dict[str, str],
             attendant: Attendant | None = None, **extra: Any) -> SignIn:
    audit(s, actor=actor, action="attendant.signin_refused", subject=subject, now=now, reason=reason,
          **where, **extra)
    return SignIn(False, reason, attendant.id if attendant else None)


def verify(s: Session, keys: RegistryKeys, *, card_number: str | None = None, token: str | None = None,
           pin: str, terminal: str, station: str, now: dt.datetime) -> SignIn:
    """The registry's check of an attendant signing in at a terminal of a station, audited either way.

    Order: the terminal (active, of this station), the card, the attendant's state (locked, withdrawn or
    without credentials: "locked", no try counted), the PIN (a wrong one counts; the last allowed locks),
    the station (after the PIN: only someone who knows it learns where the card works)."""
    if (card_number is None) == (token is None):
        raise ConfigError("give the card number or its token, one of them", key="card")
    where = {"terminal": str(terminal)[:64], "station": str(station)[:64]}
    device = s.get(Device, terminal) if isinstance(terminal, str) else None
    if device is None or device.status != "active" or device.station_id != station:
        return _refused(s, f"terminal:{where['terminal']}", "attendant:?", "terminal", now, where)
    if card_number is not None:
        token = keys.token(card_number.strip().replace(" ", ""))
    row = s.scalar(select(Attendant).where(Attendant.card_token == token))
    if row is None:
        return _refused(s, f"terminal:{terminal}", "attendant:?", "unknown", now, where)
    actor = subject = f"attendant:{row.id}"
    verifier, _ = _credentials(row)
    if row.status != "active" or not verifier:
        return _refused(s, actor, subject, "locked", now, where, row, status=row.status)
    if not pin_matches(verifier, pin if isinstance(pin, str) else ""):    # slow: before any row lock
        return _wrong_pin(s, row, now, where)
    # right PIN: the tries start again, unless the attendant was locked or withdrawn meanwhile
    done = s.execute(update(Attendant).where(Attendant.id == row.id, Attendant.status == "active")
                     .values(failed_tries=0).execution_options(synchronize_session=False))
    s.refresh(row)
    if getattr(done, "rowcount", 0) != 1:
        return _refused(s, actor, subject, "locked", now, where, row, status=row.status)
    if row.stations and station not in row.stations.split(","):
        return _refused(s, actor, subject, "station", now, where, row)
    audit(s, actor=actor, action="attendant.signin", subject=subject, now=now, role=row.role, **where)
    return SignIn(True, "ok", row.id, row.role)


def _wrong_pin(s: Session, row: Attendant, now: dt.datetime, where: dict[str, str]) -> SignIn:
    """Count a wrong PIN in the database itself (two terminals at once each count), lock at the limit."""
    allowed = tries_allowed(s)
    done = s.execute(update(Attendant).where(Attendant.id == row.id, Attendant.status == "active")
                     .values(failed_tries=Attendant.failed_tries + 1)
                     .execution_options(synchronize_session=False))
    s.refresh(row)
    actor = subject = f"attendant:{row.id}"
    if getattr(done, "rowcount", 0) != 1:       # locked or withdrawn meanwhile
        return _refused(s, actor, subject, "locked", now, where, row, status=row.status)
    tries = row.failed_tries
    _refused(s, actor, subject, "wrong_pin", now, where, row, tries=tries)
    if tries < allowed:
        return SignIn(False, "wrong_pin", row.id, tries_left=allowed - tries)
    s.execute(update(Attendant).where(Attendant.id == row.id, Attendant.status == "active")
              .values(status="locked").execution_options(synchronize_session=False))
    s.refresh(row)
    audit(s, actor=actor, action="attendant.lockout", subject=subject, now=now, tries=tries, **where)
    log.warning("attendant locked out after wrong PINs",
                extra={"alarm": "attendant_lockout", "attendant": row.id, "terminal": where["terminal"]})
    return SignIn(False, "locked", row.id, tries_left=0)


_SECRET_KEYS = frozenset({"pin", "number", "pan", "card_number", "code", "voucher_code", "key", "track"})
_LONG_DIGITS = re.compile(r"[0-9]{12,}")


def audit_action(s: Session, attendant: str, action: str, subject: str, detail: Mapping[str, Any],
                 now: dt.datetime) -> None:
    """Record one thing an attendant did at a terminal (one of ACTIONS) on a subject ("pump:3",
    "sale:ID", "wallet:12", "shift:T-0001:42"), as AuditEntry actor "attendant:ID". detail holds plain
    values (amounts, terminal, station); a PIN, a card number or a voucher code is refused."""
    row = _get(s, attendant)
    if action not in ACTIONS:
        raise ConfigError(f"attendant action must be one of {', '.join(ACTIONS)}", key="action")
    if not isinstance(subject, str) or not 1 <= len(subject) <= 64 or not subject.isprintable():
        raise ConfigError("subject must be 1 to 64 printable characters", key="subject")
    for k, v in detail.items():
        if k.lower() in _SECRET_KEYS or (isinstance(v, str) and _LONG_DIGITS.search(v)):
            raise ConfigError("an attendant's audit detail may not hold a PIN, card number or code", key=k)
    audit(s, actor=f"attendant:{row.id}", action=f"attendant.{action}", subject=subject, now=now, **detail)


def card_entry(stop_key: bytes, number: str) -> str:
    """The attendant card's entry in one terminal's configuration (its stop key, contracts.panseal)."""
    return stop_entry(stop_key, CARD_ENTRY_PREFIX + number)


def _eligible(s: Session, station: str) -> list[Attendant]:
    rows = s.scalars(select(Attendant).where(Attendant.status == "active", Attendant.card_token.is_not(None))
                     .order_by(Attendant.id)).all()
    return [r for r in rows if all(_credentials(r)) and (not r.stations or station in r.stations.split(","))]


def config_entries(s: Session, keys: RegistryKeys, device: Device) -> list[dict[str, str]]:
    """The attendants who may sign in at the device's station, for its signed configuration: active, with a
    card and a PIN; their card by the device's own keyed entry. More than MOST: supervisors first, then by
    id, and an alarm."""
    try:
        stop_key = derive_stop_key(keys.device_key(device.pin_key_hex))
    except ConfigError:
        log.error("device PIN key unusable: no attendants",
                  extra={"alarm": "device_key", "terminal": device.id})
        return []
    rows = sorted(_eligible(s, device.station_id), key=lambda r: (r.role != "supervisor", r.id))
    if len(rows) > MOST:
        log.error("more attendants than a configuration carries",
                  extra={"alarm": "attendants_full", "station": device.station_id, "attendants": len(rows)})
        rows = rows[:MOST]
    out = []
    for r in rows:
        verifier, sealed = _credentials(r)
        try:
            number = keys.open_number(sealed)
        except ConfigError:
            log.error("attendant card does not open under this KEK", extra={"attendant": r.id})
            continue
        out.append({"id": r.id, "name": r.name[:NAME_SHOWN], "role": r.role, "pin_verifier": verifier,
                    "card": card_entry(stop_key, number)})
    return sorted(out, key=lambda e: e["id"])


def signature(s: Session) -> tuple[Any, ...]:
    """Changes whenever what configurations say of attendants may change (a status, card, PIN, name, role
    or stations): the registry's publish loop can republish on it as it does on the stop-list's."""
    rows = s.execute(select(Attendant.id, Attendant.status, Attendant.card_token, Attendant.pin_verifier,
                            Attendant.name, Attendant.role, Attendant.stations).order_by(Attendant.id)).all()
    return tuple(tuple(r) for r in rows)
