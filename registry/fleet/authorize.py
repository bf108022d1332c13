"""Authorize a fleet card for a pump: the card, its PIN and the account's prompts, then per nozzle what the
first wallet that may pay allows after every limit; hold it on the wallets until the sale completes.

Everything after the card lookup runs under the account's lock (registry.fleet.ledger.lock_account), so
two pumps authorizing one account take turns and the second sees the first one's holds: together they
never take more than the wallet has or a limit leaves.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from psec.pinblock import decipher_pinblock_iso_4
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from contracts.cards import mask_number
from contracts.errors import ConfigError
from contracts.messages import MAX_PIN_TRIES, Allowance, AuthAnswer
from contracts.panseal import PanSealError, derive_pan_key, pin_pan, unseal_pan
from contracts.reasons import DeclineReason
from registry.fleet import ledger, rules, usage
from registry.fleet.cards import expired
from registry.fleet.legacy import legacy_limit
from registry.keys import RegistryKeys
from registry.models import (
    Account,
    AuthAllowance,
    Authorization,
    Card,
    Device,
    Driver,
    Nozzle,
    Product,
    StationGroupMember,
    TimeWindow,
    Transaction,
    Vehicle,
    Wallet,
)
from registry.purse_models import chip_shadows

__all__ = ["AUTH_TTL", "MAX_FILL_CL", "authorize"]

log = logging.getLogger(__name__)

MAX_FILL_CL = 150_00           # one filling at most 150 L, whatever the wallets allow
AUTH_TTL = dt.timedelta(minutes=30)
# SQLite: a transaction that read before it took the write lock may find its snapshot stale
# (SQLITE_BUSY_SNAPSHOT); the authorization is run again from the start
RETRIES = 5
# why no nozzle could be allowed, the most telling first
_WHY = (DeclineReason.INSUFFICIENT_FUNDS, DeclineReason.LIMIT_EXHAUSTED, DeclineReason.STATION_NOT_ALLOWED,
        DeclineReason.PRODUCT_NOT_ALLOWED)


class _Declined(Exception):
    def __init__(self, answer: AuthAnswer) -> None:
        super().__init__(answer.reason)
        self.answer = answer


@dataclass
class _Ask:
    """One authorization request as it is worked through."""
    req: dict[str, Any]
    now: dt.datetime
    masked: str | None = None

    def decline(self, reason: DeclineReason, *, why: str | None = None, pin_tries_left: int | None = None,
                prompts: tuple[str, ...] = ()) -> _Declined:
        log.info("authorization declined", extra={"terminal": self.req["terminal"], "reason": reason.value,
                                                  "why": why or reason.value})
        return _Declined(AuthAnswer.declined(self.req["request_id"], reason, self.masked,
                                             pin_tries_left=pin_tries_left, prompts=prompts))


def authorize(session: Session, keys: RegistryKeys, req: dict[str, Any], now: dt.datetime) -> AuthAnswer:
    """The answer to a decoded AUTH_REQUEST; commits what it decides (a hold, a PIN try, an odometer)."""
    for attempt in range(RETRIES):
        ask = _Ask(req, now)
        try:
            return _authorize(session, keys, ask)
        except _Declined as declined:
            session.commit()                 # a PIN try counted, a card blocked: kept with the decline
            return declined.answer
        except OperationalError:
            session.rollback()
            if attempt == RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def _authorize(s: Session, keys: RegistryKeys, ask: _Ask) -> AuthAnswer:
    req, now = ask.req, ask.now
    if (s.get(Authorization, req["request_id"]) is not None
            or s.scalar(select(Transaction.id).where(Transaction.auth_id == req["request_id"]))):
        # reused, or late: the terminal gave up on it and released it with a sale of nothing
        raise ask.decline(DeclineReason.DO_NOT_HONOUR, why="request_id_reused")
    device = s.get(Device, req["terminal"])
    if device is None or device.status != "active" or device.station_id != req["station"]:
        raise ask.decline(DeclineReason.DO_NOT_HONOUR, why="unknown_terminal")
    try:
        pin_key = keys.device_key(device.pin_key_hex)
    except ConfigError:
        # the registry's fault, not the card's: no PIN try is counted, an operator must mend the key
        log.error("device PIN key unusable", extra={"alarm": "device_key", "terminal": device.id})
        raise ask.decline(DeclineReason.DO_NOT_HONOUR, why="device_key_unusable") from None
    try:
        number = unseal_pan(derive_pan_key(pin_key), req["pan_sealed"], request_id=req["request_id"],
                            terminal=req["terminal"], station=req["station"])
    except PanSealError:
        raise ask.decline(DeclineReason.DO_NOT_HONOUR, why="pan_unsealable") from None
    ask.masked = mask_number(number)
    card = s.scalar(select(Card).where(Card.token == keys.token(number)))
    if card is None or card.account_id is None:
        raise ask.decline(DeclineReason.UNKNOWN_CARD)
    account = ledger.lock_account(s, card.account_id)       # from here on, this account's turn
    if s.get(Authorization, req["request_id"]) is not None:
        # delivered twice at once (MQTT QoS 1, or two registry workers): the other one had the lock first
        raise ask.decline(DeclineReason.DO_NOT_HONOUR, why="request_id_reused")
    s.refresh(card)
    _check_card(card, account, ask)
    _check_pin(keys, card, number, pin_key, ask)
    vehicle, driver, odometer = _prompts(s, card, account, ask)
    local = rules.local_time(now, account.timezone)
    windows = [rules.WindowView(w.scope, w.weekdays, w.start_minute, w.end_minute) for w in s.scalars(
        select(TimeWindow).where(((TimeWindow.scope == "card") & (TimeWindow.scope_id == card.id))
                                 | ((TimeWindow.scope == "account") & (TimeWindow.scope_id == account.id))))]
    if not rules.in_windows(windows, local):
        raise ask.decline(DeclineReason.OUTSIDE_TIME_WINDOW)
    allowances, plan = _allowances(s, card, account, device.station_id, local.date(), ask)
    auth = Authorization(id=req["request_id"], card_id=card.id, account_id=account.id,
                         wallet_id=allowances[0][1].id, device_id=device.id, pump=req["pump"],
                         allowed_cl=max(a.volume_cl for a, _ in allowances),
                         allowed_cents=max(a.amount_cents for a, _ in allowances), status="open",
                         created_at=now, expires_at=now + AUTH_TTL, odometer_km=odometer,
                         vehicle_id=vehicle.id if vehicle else None, driver_id=driver.id if driver else None)
    s.add(auth)
    s.flush()
    for product, (allowance, wallet) in plan.items():
        s.add(AuthAllowance(auth_id=auth.id, product=product, wallet_id=wallet.id,
                            volume_cl=allowance.volume_cl, amount_cents=allowance.amount_cents))
    held: dict[int, int] = {}
    for allowance, wallet in plan.values():
        amount = allowance.volume_cl if wallet.unit == "volume" else allowance.amount_cents
        held[wallet.id] = max(held.get(wallet.id, 0), amount)
    for wallet_id, amount in sorted(held.items()):
        ledger.hold(s, auth.id, wallet_id, amount, auth.expires_at)
    if vehicle is not None and odometer is not None:
        vehicle.odometer_km, vehicle.odometer_at = odometer, now
    s.commit()
    log.info("authorization approved", extra={"terminal": device.id, "auth_id": auth.id,
                                              "allowed_cl": auth.allowed_cl})
    return AuthAnswer(request_id=req["request_id"], approved=True, reason=None, auth_id=auth.id,
                      allowed_cl=auth.allowed_cl, nozzles=tuple(a.nozzle for a, _ in allowances),
                      card_masked=ask.masked, allowances=tuple(a for a, _ in allowances))


def _check_card(card: Card, account: Account, ask: _Ask) -> None:
    if card.status == "expired" or (card.status == "active" and expired(card.expiry, ask.now)):
        raise ask.decline(DeclineReason.CARD_EXPIRED)
    if card.status != "active" or account.status != "active":
        # lost, stolen, blocked, replaced...: the pump says blocked, never why
        raise ask.decline(DeclineReason.CARD_BLOCKED, why=f"card_{card.status}_account_{account.status}")


def _check_pin(keys: RegistryKeys, card: Card, number: str, pin_key: bytes, ask: _Ask) -> None:
    """A card with a PIN needs it; each wrong one is counted, the third blocks the card."""
    if not card.pin_verifier or not ask.req["pin_block"]:
        return                      # none needed, or none given: asked for with the prompts
    try:
        pin = decipher_pinblock_iso_4(pin_key, bytes.fromhex(ask.req["pin_block"]), pin_pan(number))
    except ValueError:
        pin = ""
    good = hmac.compare_digest(keys.pin_verifier(card.token, pin), card.pin_verifier)
    del pin
    if good:
        card.pin_tries = 0
        return
    card.pin_tries += 1
    if card.pin_tries >= MAX_PIN_TRIES:
        # temporarily: an operator who has checked the driver unblocks it (`forecourt registry card
        # unblock` resets the tries); lost, stolen and blocked are for good
        card.status, card.status_changed_at = "temp_blocked", ask.now
        raise ask.decline(DeclineReason.PIN_TRIES_EXCEEDED)
    # the driver is told how many tries are left before the card is blocked (issue 12)
    raise ask.decline(DeclineReason.WRONG_PIN, pin_tries_left=MAX_PIN_TRIES - card.pin_tries)


def _prompts(s: Session, card: Card, account: Account,
             ask: _Ask) -> tuple[Vehicle | None, Driver | None, int | None]:
    """The vehicle, driver and odometer reading of this sale; what the account asks for and the request
    lacks (the PIN first) is asked for: a decline that lists it, with nothing held or counted."""
    answers: dict[str, str] = ask.req.get("prompts", {})
    missing = tuple((["pin"] if card.pin_verifier and not ask.req["pin_block"] else [])
                    + [p for p in rules.parse_prompts(account.prompts) if p not in answers])
    if missing:
        raise ask.decline(DeclineReason.PROMPTS_REQUIRED, prompts=missing)
    vehicle = s.get(Vehicle, card.vehicle_id) if card.vehicle_id is not None else None
    if "vehicle" in answers:
        vehicle = s.scalar(select(Vehicle).where(Vehicle.account_id == account.id,
                                                 Vehicle.number == answers["vehicle"]))
        if vehicle is None or (card.vehicle_id is not None and vehicle.id != card.vehicle_id):
            # a card bound to a vehicle fuels that vehicle only
            raise ask.decline(DeclineReason.VEHICLE_UNKNOWN)
    driver = s.get(Driver, card.driver_id) if card.driver_id is not None else None
    if "driver_id" in answers:
        driver = s.scalar(select(Driver).where(Driver.account_id == account.id,
                                               Driver.code == answers["driver_id"]))
        if driver is None:
            raise ask.decline(DeclineReason.DRIVER_UNKNOWN)
    odometer = int(answers["odometer"]) if "odometer" in answers else None
    if odometer is not None and vehicle is not None:
        problem = rules.odometer_problem(vehicle.odometer_km, vehicle.odometer_at, odometer, ask.now)
        if problem is not None:
            raise ask.decline(DeclineReason.ODOMETER_INVALID, why=problem)
    return vehicle, driver, odometer


def _allowances(s: Session, card: Card, account: Account, station: str, today: dt.date,
                ask: _Ask) -> tuple[list[tuple[Allowance, Wallet]], dict[str, tuple[Allowance, Wallet]]]:
    """Per nozzle of the pump, what it may deliver and the wallet that pays (those allowing nothing left
    out), and the same per product; a decline saying why when no nozzle may deliver anything."""
    nozzles = s.scalars(select(Nozzle).where(Nozzle.station_id == station, Nozzle.pump == ask.req["pump"])
                        .order_by(Nozzle.nozzle)).all()
    if not nozzles:
        raise ask.decline(DeclineReason.PUMP_UNKNOWN)
    # a card issued on one wallet (before fleet accounts, or so issued) spends only that one
    only = (Wallet.id == card.wallet_id) if card.wallet_id is not None else (Wallet.account_id == account.id)
    # a chip wallet's shadow is spent on the chip only (issue 18): never online
    wallets = {w.id: w for w in s.scalars(select(Wallet).where(only, Wallet.id.not_in(chip_shadows())))}
    views = [rules.WalletView(w.id, w.unit, ledger.available(s, w, ask.now), w.allowed_products, w.stations,
                              w.expires_on, w.priority, w.status) for w in wallets.values()]
    groups = tuple(s.scalars(select(StationGroupMember.group)
                             .where(StationGroupMember.station_id == station)))
    known = s.scalars(select(Product).where(Product.code.in_({n.product_code for n in nozzles}))).all()
    codes, kinds = {p.code: p.code3 for p in known}, {p.code: p.group for p in known}   # kinds: group
    left = rules.remaining(usage.limit_views(s, card, account, ask.now) + legacy_limit(s, card, ask.now))
    found: list[tuple[Allowance, Wallet]] = []
    plan: dict[str, tuple[Allowance, Wallet]] = {}
    why: set[DeclineReason] = set()
    for nozzle in nozzles:
        product = nozzle.product_code
        code3, kind = codes.get(product), kinds.get(product)
        view = rules.paying_wallet(views, product=product, code3=code3, station=station, groups=groups,
                                   today=today, group=kind)
        if view is None:
            why.add(_why_none(views, product, code3, station, groups, today, kind))
            continue
        volume, amount = rules.allowance(wallet_unit=view.unit, wallet_available=view.available,
                                         price_milli=nozzle.price_milli, remaining=left,
                                         max_fill_cl=MAX_FILL_CL)
        if volume <= 0:
            unbounded = rules.allowance(wallet_unit=view.unit, wallet_available=MAX_FILL_CL * 10**6,
                                        price_milli=nozzle.price_milli, remaining=left,
                                        max_fill_cl=MAX_FILL_CL)[0]
            why.add(DeclineReason.LIMIT_EXHAUSTED if unbounded <= 0 else DeclineReason.INSUFFICIENT_FUNDS)
            continue
        allowance = Allowance(nozzle.nozzle, product, volume, amount)
        found.append((allowance, wallets[view.id]))
        plan.setdefault(product, (allowance, wallets[view.id]))
    if not found:
        raise ask.decline(next(r for r in _WHY if r in why))
    return found, plan


def _why_none(views: list[rules.WalletView], product: str, code3: str | None, station: str,
              groups: tuple[str, ...], today: dt.date, kind: str | None = None) -> DeclineReason:
    """Why no wallet pays for a product: none has anything left, none may be spent here, none allows it."""
    usable = [w for w in views if w.status == "active" and (w.expires_on is None or today <= w.expires_on)
              and rules.product_allowed(w.products, product, code3, kind)]
    if not usable:
        return DeclineReason.PRODUCT_NOT_ALLOWED
    here = [w for w in usable if rules.station_allowed(w.stations, station, groups)]
    return DeclineReason.INSUFFICIENT_FUNDS if here else DeclineReason.STATION_NOT_ALLOWED
