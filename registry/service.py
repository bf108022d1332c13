"""Registry decisions: authorize a fleet card for a pump, and store a completed sale exactly once.

A sale names its card program ("kind"). One that carries an auth_id settles against the registry
authorization it was made on; one without is stored for reports only (a bank sale is settled by the
acquirer). A program the registry authorizes itself (REGISTRY_PROGRAMS) must carry one: a sale of it
without is stored flagged, never billed, so that a terminal cannot make one pass for an unchecked sale.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from contracts.messages import MAX_PIN_TRIES, SaleAckReason, parse_timestamp
from registry import vouchers
from registry.checks import overrun_cl, sale_problems
from registry.fleet.authorize import AUTH_TTL, MAX_FILL_CL, authorize
from registry.fleet.legacy import wallet_usage_cl
from registry.fleet.settle import Settled, is_offline, settle_offline, settle_online
from registry.keys import RegistryKeys
from registry.loyalty import earnsale
from registry.models import Account, Authorization, Device, Nozzle, SaleConflict, Transaction
from registry.voids import VOIDED

__all__ = ["AUTH_TTL", "FLAG_REFUSED", "MAX_FILL_CL", "MAX_PIN_TRIES", "REGISTRY_FLAGS", "REGISTRY_PROGRAMS",
           "authorize", "held_sales", "record_sale", "record_sales", "sale_conflicts", "terminal_flags",
           "wallet_usage_cl"]

log = logging.getLogger(__name__)

# Card programs whose sales the registry authorizes (authorize() below): each sale of them needs an auth_id.
REGISTRY_PROGRAMS = frozenset({"fleet"})
# What a fleet sale may show and still be booked (flagged): its figures against the registry's, not where
# or when it was made.
BOOKED_ANYWAY = frozenset({"price_mismatch"})
# A sale's flag the registry sets itself and a terminal may not send: dropped from what a terminal sent, and
# the sale flagged FLAG_REFUSED. Voided (registry.voids) above all: a sale sent "voided" would be debited
# yet never counted, and an operator's void of it would find it done. The others are the registry's checks
# (registry.checks, the authorization here, registry.fleet.settle and offline_checks, registry.vouchers);
# "over_authorized" is not one: a terminal flags a pump run past its preset too. "card_<status>" (settle)
# is matched by its prefix. tests/test_ingest.py checks this list against the registry's code.
FLAG_REFUSED = "flag_refused"
REGISTRY_FLAGS = frozenset({
    VOIDED, FLAG_REFUSED, "voucher_not_redeemed",
    "unknown_terminal", "inactive_terminal", "wrong_station", "finished_in_future", "finished_too_long_ago",
    "volume_over_ceiling", "unknown_nozzle", "product_mismatch", "price_mismatch", "amount_mismatch",
    "unknown_authorization", "unexpected_authorization", "authorization_reused",
    "authorization_expired", "preset_overrun", "product_not_allowed", "overdrawn",
    "over_offline_limit", "over_limit", "outside_time_window"})


def terminal_flags(sent: list[str]) -> list[str]:
    """The flags a terminal sent that the registry keeps: its own (REGISTRY_FLAGS) are dropped, and
    FLAG_REFUSED added in their place so that an operator sees the sale."""
    kept = [f for f in sent if f not in REGISTRY_FLAGS and not f.startswith("card_")]
    return kept + [FLAG_REFUSED] if len(kept) < len(sent) else kept


def _settled_authorization(session: Session, sale: dict[str, Any], flags: list[str]) -> Authorization | None:
    """The registry's authorization a sale settles against, or None; what looks wrong is added to flags."""
    if sale["auth_id"] is None:
        if sale["kind"] in REGISTRY_PROGRAMS and not is_offline(sale):
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
    if sale["volume_cl"] > auth.allowed_cl + overrun_cl(auth.allowed_cl):
        flags.append("over_authorized")         # far past its preset: held (a small overrun is booked)
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


def _stage(session: Session, sale: dict[str, Any], now: dt.datetime, alarms: list[dict[str, Any]],
           batch: _Batch | None = None, keys: RegistryKeys | None = None) -> tuple[dict[str, Any], list[str]]:
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
    fleet = Settled()
    # a sale of another program on a fleet authorization is held (unexpected_authorization): its holds end too
    if sale["kind"] in REGISTRY_PROGRAMS or auth is not None:
        # a fleet sale the registry can trust but for its figures (a price that changed, a pump past its
        # preset) is booked as dispensed and flagged: the fuel was taken, and the account must pay it
        untrusted = bool(set(problems) - BOOKED_ANYWAY) and not nothing
        if auth is not None:
            fleet = settle_online(session, sale, auth, held=untrusted, now=now)
        elif is_offline(sale):
            fleet = settle_offline(session, keys, sale, device, now, held=untrusted)
        booked = fleet.wallet_id is not None
        problems += fleet.problems
        held = (untrusted or bool(fleet.problems)) and not booked
    row = {
        "sale_id": sale["sale_id"], "seq": sale.get("seq"), "kind": sale["kind"], "auth_id": sale["auth_id"],
        "card_id": fleet.card_id or (auth.card_id if auth else None),
        "wallet_id": fleet.wallet_id or (auth.wallet_id if auth else None),
        "account_id": fleet.account_id, "vehicle_id": fleet.vehicle_id, "driver_id": fleet.driver_id,
        "odometer_km": fleet.odometer_km,
        "device_id": sale["terminal"], "station_id": sale["station"], "pump": sale["pump"],
        "nozzle": sale["nozzle"], "product": sale["product"], "volume_cl": sale["volume_cl"],
        "amount_cents": sale["amount_cents"], "price_milli": sale["price_milli"],
        "card_masked": sale["card_masked"], "finished_at": parse_timestamp(sale["finished_at"]),
        "received_at": now, "recovered": sale["recovered"],
        "flags": ",".join(dict.fromkeys([*terminal_flags(sale["flags"]), *fleet.flags, *problems])),
        "held": held}
    if "voucher" in sale and sale["volume_cl"] > 0 and not vouchers.spend(
            session, sale["voucher"], terminal=sale["terminal"], sale_id=sale["sale_id"]):
        row["flags"] = ",".join(filter(None, (row["flags"], "voucher_not_redeemed")))   # for an operator
    if batch:
        batch.rows.append(row)            # inserted with the batch's other rows, in one statement
        batch.stored[sale["sale_id"]] = Transaction(**row)   # the same sale again in this batch: its repeat
    else:
        session.add(Transaction(**row))
    if not held:                          # points for a loyalty card shown or a linked paying card
        earnsale.on_sale(session, sale, Transaction(**row), device, keys, now)
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


def record_sale(session: Session, sale: dict[str, Any], now: dt.datetime,
                keys: RegistryKeys | None = None) -> dict[str, Any]:
    """Store a sale once, keyed by its UUID. An identical repeat is a duplicate; a repeat with other
    content a conflict, kept apart (SaleConflict) and rejected.

    A sale with an auth_id completes the registry authorization it was made on. One without (a bank
    sale, settled by the acquirer) is stored for station reports only; see the module docstring for a
    program the registry authorizes. A sale that fails a check (registry.checks, the authorization) is
    stored held: flagged, acknowledged with reason "held", never counted.
    """
    alarms: list[dict[str, Any]] = []
    ack, problems = _stage(session, sale, now, alarms, keys=keys)
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


def record_sales(session: Session, sales: list[dict[str, Any]], now: dt.datetime,
                 keys: RegistryKeys | None = None) -> list[dict[str, Any] | None]:
    """Several sales in one transaction (one commit): the answers of record_sale, in order, given only once
    all are committed. When the batch fails to commit (another writer, a bad row), each sale is recorded on
    its own; one that cannot be stored answers None, to be left unacknowledged (its terminal sends it again).
    """
    alarms: list[dict[str, Any]] = []
    try:
        with session.no_autoflush:
            _lock_accounts(session, sales)
            batch = _Batch(session, sales)
            staged = [_stage(session, sale, now, alarms, batch, keys) for sale in sales]
        if batch.rows:
            session.execute(insert(Transaction), batch.rows)     # one executemany, no row read back
        session.commit()
    except SQLAlchemyError:
        session.rollback()
        return [_alone(session, sale, now, keys) for sale in sales]
    _raise(alarms)
    for sale, (ack, problems) in zip(sales, staged, strict=True):
        _announce(sale, ack, problems)
    return [ack for ack, _ in staged]


def _lock_accounts(session: Session, sales: list[dict[str, Any]]) -> None:
    """The accounts whose authorizations the batch settles, locked before anything is read: on SQLite a
    write first takes the write lock (a read first could find its snapshot stale when it comes to write); on
    PostgreSQL the rows in id order, so that two registry processes' batches never wait on each other in a
    circle. registry.fleet.settle takes each account's lock again (already held)."""
    auths = [sale["auth_id"] for sale in sales
             if sale["auth_id"] is not None and sale["kind"] in REGISTRY_PROGRAMS]
    if not auths:
        return
    accounts = select(Authorization.account_id).where(Authorization.id.in_(auths),
                                                      Authorization.account_id.is_not(None))
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Account).where(Account.id.in_(accounts))
                        .values(auth_seq=Account.auth_seq + 1).execution_options(synchronize_session=False))
    else:
        session.execute(select(Account.id).where(Account.id.in_(accounts)).order_by(Account.id)
                        .with_for_update())


def _alone(session: Session, sale: dict[str, Any], now: dt.datetime,
           keys: RegistryKeys | None) -> dict[str, Any] | None:
    try:
        return record_sale(session, sale, now, keys)
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
