"""Fleet cards: issue, the life cycle, reissue, the expiry sweep and the numbers on the stop-list.

A card is stored as a keyed token (to find it), a masked number (to show it) and its number sealed under
the KEK (to make stop-list entries); the number itself and the PIN never are. A tag's number is "U" and
its UID in upper-case hex. Nothing commits here: the caller does.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.cards import luhn_ok, mask_number
from contracts.errors import ConfigError
from registry.fleet import ledger
from registry.fleet.admin import FleetError, audit, get, need_reason
from registry.keys import RegistryKeys
from registry.models import Account, Card, Driver, Limit, TimeWindow, Usage, Vehicle

__all__ = ["FINAL", "MEDIA", "MOVES", "STOP_LIST", "IssuedCard", "expire_cards", "expired", "issue_card",
           "move", "parse_number", "reissue", "stop_list_numbers"]

MEDIA = ("chip", "stripe", "tag")
# action -> (statuses it applies to, the status it gives). Lost, stolen, blocked, replaced and withdrawn are
# final; a card found again is reissued. A card lost before it was activated can be reported too.
MOVES: dict[str, tuple[frozenset[str], str]] = {
    "activate": (frozenset({"new"}), "active"),
    "temp_block": (frozenset({"active"}), "temp_blocked"),
    "unblock": (frozenset({"temp_blocked"}), "active"),
    "block": (frozenset({"new", "active", "temp_blocked"}), "blocked"),
    "lost": (frozenset({"new", "active", "temp_blocked"}), "lost"),
    "stolen": (frozenset({"new", "active", "temp_blocked"}), "stolen"),
    "withdraw": (frozenset({"new", "active", "temp_blocked"}), "withdrawn"),
}
FINAL = frozenset({"lost", "stolen", "blocked", "replaced", "withdrawn"})
# what reissue replaces: the design's new/active/temp_blocked/blocked, and an expired card (its renewal);
# a lost or stolen card is reissued too ("a found lost card is reissued") but keeps its status
REISSUABLE = frozenset({"new", "active", "temp_blocked", "blocked", "expired"})
KEEP_ON_REISSUE = frozenset({"lost", "stolen"})
STOP_LIST = frozenset({"lost", "stolen", "blocked", "replaced", "withdrawn", "temp_blocked"})
# the stop-list's order: what matters most first (a list longer than a configuration carries keeps its head)
STOP_ORDER = ("stolen", "lost", "blocked", "withdrawn", "temp_blocked", "replaced", "new", "expired")
EXPIRING = frozenset({"new", "active", "temp_blocked"})
_PAN = re.compile(r"[0-9]{12,19}", re.ASCII)
# UIDs of 4, 7 or 10 bytes (ISO/IEC 14443-3) or 8 (ISO/IEC 15693, FeliCa), as firmware.terminal.contactless
_TAG = re.compile(r"U(?:[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{16}|[0-9A-F]{20})", re.ASCII)
_PIN = re.compile(r"[0-9]{4,12}", re.ASCII)                                      # ISO 9564-1 PIN length
_EXPIRY = re.compile(r"[0-9]{2}(0[1-9]|1[0-2])", re.ASCII)


@dataclass(frozen=True)
class IssuedCard:
    id: int
    masked: str
    status: str


def parse_number(number: str, medium: str) -> str:
    """A card number as stored and tokenised: a PAN of 12 to 19 digits passing Luhn (ISO/IEC 7812-1) for
    chip and stripe; "U" + a 4, 7, 8 or 10-byte UID in hex for a tag (a bare hex UID gets its "U")."""
    number = number.strip().replace(" ", "")
    if medium not in MEDIA:
        raise ConfigError(f"medium must be one of {', '.join(MEDIA)}", key="medium")
    if medium == "tag":
        number = number.upper()
        number = number if number.startswith("U") else "U" + number
        if not _TAG.fullmatch(number):
            raise ConfigError("a tag number is its UID in hex: 8, 14, 16 or 20 hex digits", key="number")
    elif not (_PAN.fullmatch(number) and luhn_ok(number)):
        raise ConfigError("a card number is 12 to 19 digits with a valid check digit", key="number")
    return number


def expired(expiry: str, now: dt.datetime, *, grace: dt.timedelta = dt.timedelta(0)) -> bool:
    """Whether a YYMM card expiry has passed at `now` (the card is valid through the last day of YYMM)."""
    year, month = 2000 + int(expiry[:2]), int(expiry[2:])
    first_after = dt.datetime(year + month // 12, month % 12 + 1, 1)
    return now >= first_after + grace


def issue_card(s: Session, keys: RegistryKeys, account_id: int, number: str, *, medium: str, expiry: str,
               pin: str | None, vehicle_id: int | None = None, driver_id: int | None = None, actor: str,
               now: dt.datetime, activate: bool = False) -> IssuedCard:
    """A new card of the account ("new" until activated; active at once with activate=True)."""
    account = get(s, Account, account_id, "account")
    if account.status != "active":
        raise FleetError("the account is closed", account=account_id)
    number = parse_number(number, medium)
    if not _EXPIRY.fullmatch(expiry) or expired(expiry, now):
        raise ConfigError("expiry must be YYMM, this month or later", key="expiry")
    if pin is not None and not _PIN.fullmatch(pin):
        raise ConfigError("a PIN is 4 to 12 digits", key="pin")
    _belongs(s, account_id, vehicle_id, driver_id)
    token = keys.token(number)
    masked = mask_number(number)
    if s.scalar(select(Card.id).where(Card.token == token)) is not None:
        raise ConfigError("this card number is issued already", key="number", card=masked)
    card = Card(token=token, masked=masked, account_id=account_id, vehicle_id=vehicle_id, driver_id=driver_id,
                expiry=expiry, pin_verifier=keys.pin_verifier(token, pin) if pin is not None else "",
                pin_tries=0, status="active" if activate else "new", medium=medium,
                number_sealed=keys.seal_number(number), status_changed_at=now)
    s.add(card)
    s.flush()
    audit(s, actor=actor, action="card.issue", subject=f"card:{card.id}", now=now, account=account_id,
          masked=masked, medium=medium, expiry=expiry, pin=pin is not None, vehicle=vehicle_id,
          driver=driver_id, status=card.status)
    return IssuedCard(card.id, masked, card.status)


def _belongs(s: Session, account_id: int, vehicle_id: int | None, driver_id: int | None) -> None:
    if vehicle_id is not None and get(s, Vehicle, vehicle_id, "vehicle").account_id != account_id:
        raise ConfigError("the vehicle belongs to another account", key="vehicle", vehicle=vehicle_id)
    if driver_id is not None and get(s, Driver, driver_id, "driver").account_id != account_id:
        raise ConfigError("the driver belongs to another account", key="driver", driver=driver_id)


def move(s: Session, card_id: int, action: str, *, actor: str, reason: str, now: dt.datetime) -> Card:
    """Change a card's status by one of MOVES; a move its status does not allow is a FleetError."""
    reason = need_reason(reason)
    if action not in MOVES:
        raise ConfigError(f"card action must be one of {', '.join(MOVES)}", key="action")
    card = get(s, Card, card_id, "card")
    if card.account_id is not None:
        # the account's turn: an authorization counting a wrong PIN cannot overwrite this move
        ledger.lock_account(s, card.account_id)
        s.refresh(card)
    sources, target = MOVES[action]
    if card.status not in sources:
        final = " (final: reissue the card)" if card.status in FINAL else ""
        raise FleetError(f"a {card.status} card cannot be moved to {target}{final}", card=card_id)
    if target == "active" and (not _EXPIRY.fullmatch(card.expiry) or expired(card.expiry, now)):
        raise FleetError("the card's expiry has passed: reissue it", card=card_id)
    before = card.status
    card.status, card.status_changed_at = target, now
    if target == "active":
        card.pin_tries = 0                  # unblocked after wrong PINs: the driver gets their tries back
    audit(s, actor=actor, action=f"card.{action}", subject=f"card:{card_id}", now=now, reason=reason,
          before=before, after=target)
    return card


def reissue(s: Session, keys: RegistryKeys, old_id: int, number: str, *, medium: str | None = None,
            expiry: str, pin: str | None, actor: str, reason: str, now: dt.datetime,
            activate: bool = False) -> IssuedCard:
    """Replace a card: the old one becomes "replaced" (a lost or stolen one stays so; either way its
    number is refused from then on and on the stop-list) and points to the new one, which takes its
    account, vehicle, driver, card limits, time windows and what it used in each period (a reissue does
    not reset the card's limits)."""
    reason = need_reason(reason)
    old = get(s, Card, old_id, "card")
    if old.account_id is not None:
        ledger.lock_account(s, old.account_id)          # no sale settles while its usage is copied
        s.refresh(old)
    if old.status not in REISSUABLE | KEEP_ON_REISSUE or old.replaced_by is not None \
            or old.account_id is None:
        raise FleetError(f"a {old.status} card cannot be reissued", card=old_id)
    new = issue_card(s, keys, old.account_id, number, medium=medium or old.medium, expiry=expiry, pin=pin,
                     vehicle_id=old.vehicle_id, driver_id=old.driver_id, actor=actor, now=now,
                     activate=activate)
    for limit in s.scalars(select(Limit).where(Limit.scope == "card", Limit.scope_id == old_id)).all():
        s.add(Limit(scope="card", scope_id=new.id, period=limit.period, unit=limit.unit,
                    maximum=limit.maximum))
    windows = select(TimeWindow).where(TimeWindow.scope == "card", TimeWindow.scope_id == old_id)
    for w in s.scalars(windows).all():
        s.add(TimeWindow(scope="card", scope_id=new.id, weekdays=w.weekdays, start_minute=w.start_minute,
                         end_minute=w.end_minute))
    for u in s.scalars(select(Usage).where(Usage.scope == "card", Usage.scope_id == old_id)).all():
        s.add(Usage(scope="card", scope_id=new.id, period_key=u.period_key, amount_cents=u.amount_cents,
                    volume_cl=u.volume_cl, count=u.count))
    before, old.replaced_by = old.status, new.id
    if before not in KEEP_ON_REISSUE:
        old.status, old.status_changed_at = "replaced", now
    s.flush()
    audit(s, actor=actor, action="card.reissue", subject=f"card:{old_id}", now=now, reason=reason,
          before=before, after=old.status, replaced_by=new.id)
    return new


def expire_cards(s: Session, now: dt.datetime, *, actor: str = "system") -> int:
    """Mark every card still usable whose YYMM has passed "expired"; how many were."""
    done = 0
    # YYMM strings order as dates (2000-2099): only cards of a past month are read, not every card
    query = select(Card).where(Card.status.in_(EXPIRING), Card.expiry < f"{now:%y%m}")
    for card in s.scalars(query).all():
        if _EXPIRY.fullmatch(card.expiry) and expired(card.expiry, now):
            before, card.status, card.status_changed_at = card.status, "expired", now
            audit(s, actor=actor, action="card.expire", subject=f"card:{card.id}", now=now,
                  reason="card expiry passed", before=before, expiry=card.expiry)
            done += 1
    return done


def stop_list_numbers(s: Session, keys: RegistryKeys, now: dt.datetime) -> list[str]:
    """The numbers (opened from number_sealed) of every card a terminal must refuse offline, the most
    important first (a list too long for a configuration keeps its head): stolen, lost, blocked, withdrawn,
    temporarily blocked, replaced, then new (not yet activated), each the most recently changed first.
    A chip or stripe leaves the list a day past its expiry month (the terminal reads its expiry; a terminal
    west of UTC still takes it until its own midnight); a tag carries no expiry, so a refused or expired tag
    stays on it."""
    numbers = []
    valid = Card.expiry >= f"{now - dt.timedelta(days=1):%y%m}"
    refused = (Card.status.in_(STOP_LIST | {"new"}) & (valid | (Card.medium == "tag"))) | (
        (Card.status == "expired") & (Card.medium == "tag"))
    cards = s.scalars(select(Card).where(refused)).all()
    def order(c: Card) -> tuple[int, float, int]:
        changed = c.status_changed_at.replace(tzinfo=dt.UTC).timestamp() if c.status_changed_at else 0.0
        return STOP_ORDER.index(c.status), -changed, -c.id

    for card in sorted(cards, key=order):
        if card.number_sealed is None:
            continue                        # issued before numbers were sealed: nothing to make it from
        if card.medium != "tag" and _EXPIRY.fullmatch(card.expiry) and expired(
                card.expiry, now, grace=dt.timedelta(days=1)):
            continue
        numbers.append(keys.open_number(card.number_sealed))
    return numbers
