"""Registry decisions: authorize a fleet card for a pump, and store a completed sale exactly once.

A sale names its card program ("kind"). One that carries an auth_id settles against the registry
authorization it was made on; one without is stored for reports only (a bank sale is settled by the
acquirer). A program the registry authorizes itself (REGISTRY_PROGRAMS) must carry one: a sale of it
without is stored flagged, never billed, so that a terminal cannot make one pass for an unchecked sale.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from typing import Any

from psec.pinblock import decipher_pinblock_iso_4
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from contracts.cards import mask_pan
from contracts.errors import ConfigError
from contracts.messages import MAX_PIN_TRIES, AuthAnswer, SaleAckReason, parse_timestamp
from contracts.panseal import PanSealError, derive_pan_key, unseal_pan
from contracts.reasons import DeclineReason
from registry.checks import sale_problems
from registry.keys import RegistryKeys
from registry.models import Authorization, Card, Device, Nozzle, SaleConflict, Transaction, Wallet

__all__ = ["AUTH_TTL", "MAX_FILL_CL", "MAX_PIN_TRIES", "REGISTRY_PROGRAMS", "authorize", "held_sales",
           "record_sale", "record_sales", "sale_conflicts", "wallet_usage_cl"]

log = logging.getLogger(__name__)

MAX_FILL_CL = 150_00           # one filling at most 150 L, whatever the wallet allows
AUTH_TTL = dt.timedelta(minutes=30)
# Card programs whose sales the registry authorizes (authorize() below): each sale of them needs an auth_id.
REGISTRY_PROGRAMS = frozenset({"fleet"})


def _month_start(now: dt.datetime) -> dt.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def wallet_usage_cl(session: Session, wallet_id: int, now: dt.datetime) -> int:
    """Litres (cl) this calendar month: settled sales plus open, unexpired authorizations.

    A held sale (registry.checks) is not counted: its figures cannot be trusted, in either direction.
    """
    settled = session.scalar(select(func.coalesce(func.sum(Transaction.volume_cl), 0)).where(
        Transaction.wallet_id == wallet_id, Transaction.held.is_(False),
        Transaction.finished_at >= _month_start(now)))
    held = session.scalar(select(func.coalesce(func.sum(Authorization.allowed_cl), 0)).where(
        Authorization.wallet_id == wallet_id, Authorization.status == "open",
        Authorization.expires_at > now))
    return int(settled or 0) + int(held or 0)


def _decline(req: dict[str, Any], reason: DeclineReason, masked: str | None = None, *,
             why: str | None = None, pin_tries_left: int | None = None) -> AuthAnswer:
    """A decline; `why` is logged when it says more than the reason the terminal gets."""
    log.info("authorization declined",
             extra={"terminal": req["terminal"], "reason": reason.value, "why": why or reason.value})
    return AuthAnswer.declined(req["request_id"], reason, masked, pin_tries_left=pin_tries_left)


def authorize(session: Session, keys: RegistryKeys, req: dict[str, Any], now: dt.datetime) -> AuthAnswer:
    """Check device, card number (unsealed), PIN, card status, product and monthly limit; reserve the
    allowed litres."""
    if (session.get(Authorization, req["request_id"]) is not None
            or session.scalar(select(Transaction.id).where(Transaction.auth_id == req["request_id"]))):
        # reused, or late: the terminal gave up on it and released it with a sale of nothing
        return _decline(req, DeclineReason.DO_NOT_HONOUR, why="request_id_reused")
    device = session.get(Device, req["terminal"])
    if device is None or device.status != "active" or device.station_id != req["station"]:
        # not the card's fault, and nothing the customer can mend: the host refuses
        return _decline(req, DeclineReason.DO_NOT_HONOUR, why="unknown_terminal")
    try:
        pin_key = keys.device_key(device.pin_key_hex)
    except ConfigError:
        # the registry's fault, not the card's: no PIN try is counted, an operator must mend the key
        log.error("device PIN key unusable", extra={"alarm": "device_key", "terminal": device.id})
        return _decline(req, DeclineReason.DO_NOT_HONOUR, why="device_key_unusable")
    try:
        # the card number travels sealed under a key derived from the device's PIN key (contracts.panseal)
        pan = unseal_pan(derive_pan_key(pin_key), req["pan_sealed"], request_id=req["request_id"],
                         terminal=req["terminal"], station=req["station"])
    except PanSealError:
        # another key, another request's seal, or tampered with: no card to count a PIN try against
        return _decline(req, DeclineReason.DO_NOT_HONOUR, why="pan_unsealable")
    masked = mask_pan(pan)
    card = session.scalar(select(Card).where(Card.token == keys.token(pan)))
    if card is None:
        return _decline(req, DeclineReason.UNKNOWN_CARD, masked)
    if card.status != "active":
        return _decline(req, DeclineReason.CARD_BLOCKED, masked)
    if (now.year % 100, now.month) > (int(card.expiry[:2]), int(card.expiry[2:])):
        return _decline(req, DeclineReason.CARD_EXPIRED, masked)
    try:
        pin = decipher_pinblock_iso_4(pin_key, bytes.fromhex(req["pin_block"]), pan)
    except ValueError:
        pin = ""
    good = hmac.compare_digest(keys.pin_verifier(card.token, pin), card.pin_verifier)
    del pin
    if not good:
        card.pin_tries += 1
        if card.pin_tries >= MAX_PIN_TRIES:
            card.status = "blocked"
            session.commit()
            return _decline(req, DeclineReason.PIN_TRIES_EXCEEDED, masked)
        session.commit()
        # the driver is told how many tries are left before the card is blocked (issue 12)
        return _decline(req, DeclineReason.WRONG_PIN, masked, pin_tries_left=MAX_PIN_TRIES - card.pin_tries)
    card.pin_tries = 0
    wallet = session.get(Wallet, card.wallet_id)
    if wallet is None:
        return _decline(req, DeclineReason.UNKNOWN_CARD, masked)
    nozzles = session.scalars(select(Nozzle).where(Nozzle.station_id == device.station_id,
                                                   Nozzle.pump == req["pump"])).all()
    if not nozzles:
        session.commit()
        return _decline(req, DeclineReason.PUMP_UNKNOWN, masked)
    products = set(wallet.allowed_products.split(","))
    allowed_nozzles = sorted(n.nozzle for n in nozzles if n.product_code in products)
    if not allowed_nozzles:
        session.commit()
        return _decline(req, DeclineReason.PRODUCT_NOT_ALLOWED, masked)
    remaining = wallet.monthly_limit_cl - wallet_usage_cl(session, wallet.id, now)
    if remaining <= 0:
        session.commit()
        return _decline(req, DeclineReason.LIMIT_EXHAUSTED, masked)
    allowed = min(remaining, MAX_FILL_CL)
    # keyed by the terminal's request id: a terminal that crashed before it journaled the answer still
    # knows the hold and closes it (a sale with nothing dispensed) on restart
    auth = Authorization(id=req["request_id"], card_id=card.id, wallet_id=wallet.id, device_id=device.id,
                         pump=req["pump"], allowed_cl=allowed, status="open", created_at=now,
                         expires_at=now + AUTH_TTL)
    session.add(auth)
    session.commit()
    log.info("authorization approved",
             extra={"terminal": device.id, "auth_id": auth.id, "allowed_cl": allowed})
    return AuthAnswer(request_id=req["request_id"], approved=True, reason=None, auth_id=auth.id,
                      allowed_cl=allowed, nozzles=tuple(allowed_nozzles), card_masked=masked)


def _settled_authorization(session: Session, sale: dict[str, Any], flags: list[str]) -> Authorization | None:
    """The registry's authorization a sale settles against, or None; what looks wrong is added to flags."""
    if sale["auth_id"] is None:
        if sale["kind"] in REGISTRY_PROGRAMS:
            flags.append("unknown_authorization")     # a program the registry authorizes, no authorization
        return None                                   # else authorized elsewhere: for reports only
    if sale["kind"] not in REGISTRY_PROGRAMS:
        flags.append("unexpected_authorization")      # settles a fleet authorization under another program
    auth = session.get(Authorization, sale["auth_id"])
    if auth is None or auth.device_id != sale["terminal"]:
        flags.append("unknown_authorization")
        return None
    if auth.status != "open":
        flags.append("authorization_reused")    # a second sale on one authorization: review it
    if sale["volume_cl"] > auth.allowed_cl:
        flags.append("over_authorized")
    return auth


def _same_sale(tx: Transaction, sale: dict[str, Any]) -> bool:
    """Whether a stored sale is the one received again. Flags are left out: the registry adds its own."""
    stored = (tx.kind, tx.auth_id, tx.device_id, tx.station_id, tx.pump, tx.nozzle, tx.product, tx.volume_cl,
              tx.amount_cents, tx.price_milli, tx.card_masked, tx.finished_at, tx.recovered)
    return stored == (sale["kind"], sale["auth_id"], sale["terminal"], sale["station"], sale["pump"],
                      sale["nozzle"], sale["product"], sale["volume_cl"], sale["amount_cents"],
                      sale["price_milli"], sale["card_masked"], parse_timestamp(sale["finished_at"]),
                      sale["recovered"])


def _repeat(session: Session, tx: Transaction, sale: dict[str, Any], now: dt.datetime,
            alarms: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to a sale_id already stored: a duplicate, or a conflict kept apart (staged, not committed;
    a new one added to alarms, raised once it is committed)."""
    if _same_sale(tx, sale):
        return {"sale_id": sale["sale_id"], "status": "duplicate", "reason": ""}
    payload = json.dumps(sale, sort_keys=True)
    known = session.scalar(select(SaleConflict.id).where(SaleConflict.sale_id == sale["sale_id"],
                                                         SaleConflict.payload == payload))
    if known is None:
        session.add(SaleConflict(sale_id=sale["sale_id"], device_id=sale["terminal"], received_at=now,
                                 payload=payload))
        alarms.append(sale)
    return {"sale_id": sale["sale_id"], "status": "rejected", "reason": SaleAckReason.CONFLICT.value}


class _Batch:
    """What a batch of sales reads, one query per table (issue 13): the sales already stored, the nozzles of
    their stations; their devices and authorizations are held here, so session.get finds them in the
    session's identity map (which holds them only weakly) without a query."""

    def __init__(self, session: Session, sales: list[dict[str, Any]]) -> None:
        ids = [sale["sale_id"] for sale in sales]
        self.stored = {t.sale_id: t for t in session.scalars(select(Transaction)
                                                             .where(Transaction.sale_id.in_(ids)))}
        self.held: list[object] = [*session.scalars(select(Device).where(
            Device.id.in_({sale["terminal"] for sale in sales})))]
        if auths := {sale["auth_id"] for sale in sales if sale["auth_id"] is not None}:
            self.held += session.scalars(select(Authorization).where(Authorization.id.in_(auths)))
        self.nozzles = {(n.station_id, n.pump, n.nozzle): n for n in session.scalars(
            select(Nozzle).where(Nozzle.station_id.in_({sale["station"] for sale in sales})))}
        self.rows: list[dict[str, Any]] = []


def _stage(session: Session, sale: dict[str, Any], now: dt.datetime,
           alarms: list[dict[str, Any]], batch: _Batch | None = None) -> tuple[dict[str, Any], list[str]]:
    """A sale added to the session, uncommitted: its acknowledgement, and the problems it is held for."""
    ack = {"sale_id": sale["sale_id"], "status": "stored", "reason": ""}
    stored = batch.stored.get(sale["sale_id"]) if batch else session.scalar(
        select(Transaction).where(Transaction.sale_id == sale["sale_id"]))
    if stored is not None:
        return _repeat(session, stored, sale, now, alarms), []
    device = session.get(Device, sale["terminal"])
    nozzle = batch.nozzles.get((sale["station"], sale["pump"], sale["nozzle"])) if batch else session.scalar(
        select(Nozzle).where(Nozzle.station_id == sale["station"], Nozzle.pump == sale["pump"],
                             Nozzle.nozzle == sale["nozzle"]))
    problems = sale_problems(sale, device, nozzle, now)
    auth = _settled_authorization(session, sale, problems)
    # A sale of nothing on an authorization never granted (the terminal releasing a request that got no
    # answer, which never reached the registry) holds nothing to review.
    # Nor does a second sale of nothing on one authorization (a release repeated across a crash).
    nothing = (sale["volume_cl"] == 0 and sale["amount_cents"] == 0
               and set(problems) <= {"unknown_authorization", "authorization_reused"} and bool(problems))
    held = bool(problems) and not nothing
    row = {
        "sale_id": sale["sale_id"], "seq": sale.get("seq"), "kind": sale["kind"], "auth_id": sale["auth_id"],
        "card_id": auth.card_id if auth else None, "wallet_id": auth.wallet_id if auth else None,
        "device_id": sale["terminal"], "station_id": sale["station"], "pump": sale["pump"],
        "nozzle": sale["nozzle"], "product": sale["product"], "volume_cl": sale["volume_cl"],
        "amount_cents": sale["amount_cents"], "price_milli": sale["price_milli"],
        "card_masked": sale["card_masked"], "finished_at": parse_timestamp(sale["finished_at"]),
        "received_at": now, "recovered": sale["recovered"],
        "flags": ",".join(dict.fromkeys([*sale["flags"], *problems])), "held": held}
    if batch:
        batch.rows.append(row)            # inserted with the batch's other rows, in one statement
        batch.stored[sale["sale_id"]] = Transaction(**row)   # the same sale again in this batch: its repeat
    else:
        session.add(Transaction(**row))
    if auth is not None:
        auth.status = "completed"         # held or not, the sale used it: the hold on the wallet ends
    if held:
        return {**ack, "reason": SaleAckReason.HELD.value}, problems
    return ack, []


def _raise(alarms: list[dict[str, Any]]) -> None:
    for each in alarms:
        # the alarm: an operator must decide which version is true
        log.error("sale conflict: one sale_id, two contents",
                  extra={"alarm": "sale_conflict", "sale_id": each["sale_id"], "terminal": each["terminal"]})


def _announce(sale: dict[str, Any], ack: dict[str, Any], problems: list[str]) -> None:
    """Log a committed sale."""
    if ack["status"] != "stored":
        return
    if ack["reason"] == SaleAckReason.HELD.value:
        log.warning("sale held for review", extra={"sale_id": sale["sale_id"], "terminal": sale["terminal"],
                                                    "flags": ",".join(problems)})
    else:
        # DEBUG: the database is the record of each sale; a line per sale costs the ingest a share of its
        # rate (registry.ingest logs each batch at INFO)
        log.debug("sale stored",
                  extra={"sale_id": sale["sale_id"], "kind": sale["kind"], "volume_cl": sale["volume_cl"]})


def record_sale(session: Session, sale: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Store a sale once, keyed by its UUID. An identical repeat is a duplicate; a repeat with other
    content a conflict, kept apart (SaleConflict) and rejected.

    A sale with an auth_id completes the registry authorization it was made on. One without (a bank
    sale, settled by the acquirer) is stored for station reports only; see the module docstring for a
    program the registry authorizes. A sale that fails a check (registry.checks, the authorization) is
    stored held: flagged, acknowledged with reason "held", never counted.
    """
    alarms: list[dict[str, Any]] = []
    ack, problems = _stage(session, sale, now, alarms)
    try:
        session.commit()
    except IntegrityError:
        # Another session stored this sale_id between the check above and the commit. Any other
        # constraint failure must not be acknowledged, or the terminal would drop an unstored sale.
        session.rollback()
        stored = session.scalar(select(Transaction).where(Transaction.sale_id == sale["sale_id"]))
        if stored is None:
            raise
        alarms.clear()
        ack, problems = _repeat(session, stored, sale, now, alarms), []
        session.commit()
    _raise(alarms)
    _announce(sale, ack, problems)
    return ack


def record_sales(session: Session, sales: list[dict[str, Any]],
                 now: dt.datetime) -> list[dict[str, Any] | None]:
    """Several sales in one transaction (one commit): the answers of record_sale, in order, given only once
    all are committed. When the batch fails to commit (another writer, a bad row), each sale is recorded on
    its own; one that cannot be stored answers None, to be left unacknowledged (its terminal sends it again).
    """
    alarms: list[dict[str, Any]] = []
    try:
        with session.no_autoflush:
            batch = _Batch(session, sales)
            staged = [_stage(session, sale, now, alarms, batch) for sale in sales]
        if batch.rows:
            session.execute(insert(Transaction), batch.rows)     # one executemany, no row read back
        session.commit()
    except SQLAlchemyError:
        session.rollback()
        return [_alone(session, sale, now) for sale in sales]
    _raise(alarms)
    for sale, (ack, problems) in zip(sales, staged, strict=True):
        _announce(sale, ack, problems)
    return [ack for ack, _ in staged]


def _alone(session: Session, sale: dict[str, Any], now: dt.datetime) -> dict[str, Any] | None:
    try:
        return record_sale(session, sale, now)
    except SQLAlchemyError:
        session.rollback()
        log.exception("sale not stored", extra={"sale_id": sale["sale_id"], "terminal": sale["terminal"]})
        return None


def held_sales(session: Session) -> list[Transaction]:
    """Sales stored apart for an operator, oldest first."""
    return list(session.scalars(select(Transaction).where(Transaction.held.is_(True))
                                .order_by(Transaction.received_at, Transaction.id)).all())


def sale_conflicts(session: Session) -> list[SaleConflict]:
    """Second versions of stored sales, oldest first: each one an alarm for an operator."""
    return list(session.scalars(select(SaleConflict)
                                .order_by(SaleConflict.received_at, SaleConflict.id)).all())
