"""Registry decisions: authorize a fleet card for a pump, and store a completed sale exactly once."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import uuid
from typing import Any

from psec.pinblock import decipher_pinblock_iso_4
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.cards import mask_pan
from registry.keys import RegistryKeys
from registry.models import Authorization, Card, Device, Nozzle, Transaction, Wallet

__all__ = ["AUTH_TTL", "MAX_FILL_CL", "MAX_PIN_TRIES", "authorize", "record_sale", "wallet_usage_cl"]

log = logging.getLogger(__name__)

MAX_PIN_TRIES = 3
MAX_FILL_CL = 150_00           # one filling at most 150 L, whatever the wallet allows
AUTH_TTL = dt.timedelta(minutes=30)


def _month_start(now: dt.datetime) -> dt.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def wallet_usage_cl(session: Session, wallet_id: int, now: dt.datetime) -> int:
    """Litres (cl) this calendar month: settled sales plus open, unexpired authorizations."""
    settled = session.scalar(select(func.coalesce(func.sum(Transaction.volume_cl), 0)).where(
        Transaction.wallet_id == wallet_id, Transaction.finished_at >= _month_start(now)))
    held = session.scalar(select(func.coalesce(func.sum(Authorization.allowed_cl), 0)).where(
        Authorization.wallet_id == wallet_id, Authorization.status == "open",
        Authorization.expires_at > now))
    return int(settled or 0) + int(held or 0)


def _decline(req: dict[str, Any], reason: str, masked: str | None = None) -> dict[str, Any]:
    log.info("authorization declined", extra={"terminal": req["terminal"], "reason": reason})
    return {"request_id": req["request_id"], "approved": False, "reason": reason, "auth_id": None,
            "allowed_cl": 0, "nozzles": [], "card_masked": masked}


def authorize(session: Session, keys: RegistryKeys, req: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Check device, PIN, card status, product and monthly limit; reserve the allowed litres."""
    device = session.get(Device, req["terminal"])
    if device is None or device.status != "active" or device.station_id != req["station"]:
        return _decline(req, "unknown_terminal")
    pan = req["pan"]
    masked = mask_pan(pan)
    card = session.scalar(select(Card).where(Card.token == keys.token(pan)))
    if card is None:
        return _decline(req, "unknown_card", masked)
    if card.status != "active":
        return _decline(req, "card_blocked", masked)
    if (now.year % 100, now.month) > (int(card.expiry[:2]), int(card.expiry[2:])):
        return _decline(req, "card_expired", masked)
    try:
        pin = decipher_pinblock_iso_4(bytes.fromhex(device.pin_key_hex), bytes.fromhex(req["pin_block"]), pan)
    except ValueError:
        pin = ""
    good = hmac.compare_digest(keys.pin_verifier(card.token, pin), card.pin_verifier)
    del pin
    if not good:
        card.pin_tries += 1
        reason = "wrong_pin"
        if card.pin_tries >= MAX_PIN_TRIES:
            card.status, reason = "blocked", "pin_tries_exceeded"
        session.commit()
        return _decline(req, reason, masked)
    card.pin_tries = 0
    wallet = session.get(Wallet, card.wallet_id)
    if wallet is None:
        return _decline(req, "unknown_card", masked)
    nozzles = session.scalars(select(Nozzle).where(Nozzle.station_id == device.station_id,
                                                   Nozzle.pump == req["pump"])).all()
    if not nozzles:
        session.commit()
        return _decline(req, "pump_unknown", masked)
    products = set(wallet.allowed_products.split(","))
    allowed_nozzles = sorted(n.nozzle for n in nozzles if n.product_code in products)
    if not allowed_nozzles:
        session.commit()
        return _decline(req, "product_not_allowed", masked)
    remaining = wallet.monthly_limit_cl - wallet_usage_cl(session, wallet.id, now)
    if remaining <= 0:
        session.commit()
        return _decline(req, "limit_exhausted", masked)
    allowed = min(remaining, MAX_FILL_CL)
    auth = Authorization(id=str(uuid.uuid4()), card_id=card.id, wallet_id=wallet.id, device_id=device.id,
                         pump=req["pump"], allowed_cl=allowed, status="open", created_at=now,
                         expires_at=now + AUTH_TTL)
    session.add(auth)
    session.commit()
    log.info("authorization approved",
             extra={"terminal": device.id, "auth_id": auth.id, "allowed_cl": allowed})
    return {"request_id": req["request_id"], "approved": True, "reason": "approved", "auth_id": auth.id,
            "allowed_cl": allowed, "nozzles": allowed_nozzles, "card_masked": masked}


def _fleet_authorization(session: Session, sale: dict[str, Any], flags: list[str]) -> Authorization | None:
    """The registry's authorization a fleet sale was made on, or None; what looks wrong is added to flags."""
    auth = None if sale["auth_id"] is None else session.get(Authorization, sale["auth_id"])
    if auth is None or auth.device_id != sale["terminal"]:
        flags.append("unknown_authorization")
        return None
    if auth.status != "open":
        flags.append("authorization_reused")    # a second sale on one authorization: review it
    if sale["volume_cl"] > auth.allowed_cl:
        flags.append("over_authorized")
    return auth


def record_sale(session: Session, sale: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Store a sale once, keyed by its UUID; a repeat is acknowledged as a duplicate.

    A fleet sale completes the authorization it was made on. A bank sale was authorized and is settled by
    the acquirer: it is stored for station reports only, with no authorization to look up.
    """
    ack = {"sale_id": sale["sale_id"], "status": "stored", "reason": ""}
    if session.scalar(select(Transaction.id).where(Transaction.sale_id == sale["sale_id"])) is not None:
        return {**ack, "status": "duplicate"}
    flags = list(sale["flags"])
    auth = _fleet_authorization(session, sale, flags) if sale["kind"] == "fleet" else None
    finished = dt.datetime.fromisoformat(sale["finished_at"]).replace(tzinfo=None)
    session.add(Transaction(
        sale_id=sale["sale_id"], kind=sale["kind"], auth_id=sale["auth_id"],
        card_id=auth.card_id if auth else None, wallet_id=auth.wallet_id if auth else None,
        device_id=sale["terminal"], station_id=sale["station"], pump=sale["pump"], nozzle=sale["nozzle"],
        product=sale["product"], volume_cl=sale["volume_cl"],
        amount_cents=sale["amount_cents"], price_milli=sale["price_milli"], card_masked=sale["card_masked"],
        finished_at=finished, received_at=now, recovered=sale["recovered"], flags=",".join(flags)))
    if auth is not None:
        auth.status = "completed"
    try:
        session.commit()
    except IntegrityError:
        # Another session stored this sale_id between the check above and the commit. Any other
        # constraint failure must not be acknowledged, or the terminal would drop an unstored sale.
        session.rollback()
        if session.scalar(select(Transaction.id).where(Transaction.sale_id == sale["sale_id"])) is None:
            raise
        return {**ack, "status": "duplicate"}
    log.info("sale stored",
             extra={"sale_id": sale["sale_id"], "kind": sale["kind"], "volume_cl": sale["volume_cl"]})
    return ack
