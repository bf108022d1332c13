"""The fleet endpoints on money and rules (registry.web.api_fleet routes them): wallets, top-ups and
corrections, limits, time windows, vehicles, drivers, CSV import and export; and the access checks every
fleet endpoint starts with (operators only, a fleet account's objects only, each id through
registry.web.scope: one outside it is NotFound).

A top-up or correction carrying `key` books once however often it is sent: a form's one-time key makes a
double submit one movement.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from registry.fleet import admin, closing, ledger
from registry.fleet.statements import account_summary
from registry.fleet_models import Account, Card, Movement, Wallet
from registry.keys import RegistryKeys
from registry.web import fleet_csv, scope
from registry.web.deps import Ctx, need
from registry.web.errors import BadInput, NotFound
from registry.web.fleet_schemas import (
    AmountIn,
    DriverIn,
    DriverOut,
    ImportOut,
    LimitIn,
    MovementOut,
    OrderIn,
    ReasonIn,
    RowErrorOut,
    VehicleIn,
    VehicleOut,
    WalletIn,
    WalletOut,
    WindowIn,
    WindowOut,
)

__all__ = ["DAYS", "add_driver", "add_vehicle", "add_wallet", "add_window", "clear_limit", "clear_windows",
           "close_wallet", "correct", "export_csv", "fleet_account", "fleet_card", "hhmm", "import_csv",
           "minute", "operator", "order_wallets", "registry_keys", "set_limit", "topup", "wallet_for"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def operator(ctx: Ctx) -> None:
    need(ctx, "operator")


def fleet_account(ctx: Ctx, account_id: int) -> Account:
    account = scope.account_for(ctx, account_id)
    if account.kind != "fleet":
        raise NotFound("account")
    return account


def fleet_card(ctx: Ctx, card_id: int) -> Card:
    card = scope.card_for(ctx, card_id)
    if card.account_id is not None:
        fleet_account(ctx, card.account_id)
    return card


def hhmm(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def minute(text: str, what: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2) or int(minutes) > 59:
        raise BadInput(f"{what} must be HH:MM")
    return int(hours) * 60 + int(minutes)


def registry_keys(ctx: Ctx) -> RegistryKeys:
    if ctx.keys is None:
        raise BadInput("the registry's keys are not available to the back office: start it with the "
                       "registry's state directory")
    return ctx.keys


def wallet_for(ctx: Ctx, wallet_id: int) -> Wallet:
    operator(ctx)
    wallet = ctx.s.get(Wallet, wallet_id)
    if wallet is None:
        raise NotFound("wallet")
    fleet_account(ctx, wallet.account_id)
    return wallet


def add_wallet(ctx: Ctx, account_id: int, body: WalletIn) -> WalletOut:
    operator(ctx)
    a = fleet_account(ctx, account_id)
    w = admin.add_wallet(ctx.s, a.id, unit=body.unit, mode=body.mode, credit_limit=body.credit_limit,
                         products=body.products, stations=body.stations, expires_on=body.expires_on,
                         name=body.name, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return next(WalletOut(**vars(x)) for x in account_summary(ctx.s, a.id, ctx.now).wallets if x.id == w.id)


def order_wallets(ctx: Ctx, account_id: int, body: OrderIn) -> list[WalletOut]:
    operator(ctx)
    a = fleet_account(ctx, account_id)
    admin.set_wallet_order(ctx.s, a.id, body.wallet_ids, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return [WalletOut(**vars(x)) for x in account_summary(ctx.s, a.id, ctx.now).wallets]


def close_wallet(ctx: Ctx, wallet_id: int, body: ReasonIn) -> None:
    operator(ctx)
    wallet = wallet_for(ctx, wallet_id)
    closing.close_wallet(ctx.s, wallet.id, actor=ctx.actor, reason=body.reason, now=ctx.now)
    ctx.s.commit()


def movement_out(m: Movement) -> MovementOut:
    return MovementOut.model_validate(m, from_attributes=True)


def topup(ctx: Ctx, wallet_id: int, body: AmountIn) -> MovementOut:
    operator(ctx)
    w = wallet_for(ctx, wallet_id)
    m = admin.topup(ctx.s, w.id, body.amount, actor=ctx.actor, reason=body.reason, now=ctx.now,
                    key=body.key or None)
    ctx.s.commit()
    return movement_out(m)


def correct(ctx: Ctx, wallet_id: int, body: AmountIn) -> MovementOut:
    """registry.fleet.admin.correct, booked under "correction:<key>" when a key is given (once however
    often the form is sent); audited once, as admin.correct audits."""
    operator(ctx)
    reason = admin.need_reason(body.reason)
    if body.amount == 0 or abs(body.amount) > admin.MAX_AMOUNT:
        raise BadInput("amount must be non-zero")
    if body.key is not None and (not body.key.isprintable() or not 0 < len(body.key) <= admin.KEY_SIZE):
        raise BadInput(f"a key is 1 to {admin.KEY_SIZE} printable characters")
    w = wallet_for(ctx, wallet_id)
    ledger.lock_account(ctx.s, w.account_id)
    ctx.s.refresh(w)
    key = f"correction:{body.key or uuid.uuid4()}"
    again = ctx.s.scalar(select(Movement.id).where(Movement.key == key)) is not None
    m = ledger.correct(ctx.s, w, body.amount, key=key, at=ctx.now, actor=ctx.actor, reason=reason)
    if not again:
        admin.audit(ctx.s, actor=ctx.actor, action="wallet.correct", subject=f"wallet:{w.id}", now=ctx.now,
                    reason=reason, amount=body.amount, unit=w.unit, balance=m.balance_after, movement=m.id)
    ctx.s.commit()
    return movement_out(m)


def scope_of(ctx: Ctx, kind: str, ident: int) -> tuple[str, int]:
    if kind == "accounts":
        return "account", fleet_account(ctx, ident).id
    if kind == "cards":
        return "card", fleet_card(ctx, ident).id
    raise NotFound(kind)


def set_limit(ctx: Ctx, kind: str, ident: int, body: LimitIn) -> LimitIn:
    operator(ctx)
    where, ident = scope_of(ctx, kind, ident)
    admin.set_limit(ctx.s, where, ident, body.period, body.unit, body.maximum, actor=ctx.actor, now=ctx.now,
                    reason=body.reason)
    ctx.s.commit()
    return body


def clear_limit(ctx: Ctx, kind: str, ident: int, period: str, unit: str) -> bool:
    operator(ctx)
    where, ident = scope_of(ctx, kind, ident)
    gone = admin.clear_limit(ctx.s, where, ident, period, unit, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return gone


def add_window(ctx: Ctx, kind: str, ident: int, body: WindowIn) -> WindowOut:
    operator(ctx)
    where, ident = scope_of(ctx, kind, ident)
    if not body.days or not set(body.days) <= set(DAYS):
        raise BadInput(f"days must be some of {', '.join(DAYS)}")
    mask = sum(1 << DAYS.index(d) for d in set(body.days))
    admin.add_window(ctx.s, where, ident, mask, minute(body.start, "start"), minute(body.end, "end"),
                     actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return WindowOut(scope=where, scope_id=ident, days=[d for d in DAYS if d in body.days],
                     start=body.start.strip(), end=body.end.strip())


def clear_windows(ctx: Ctx, kind: str, ident: int) -> int:
    operator(ctx)
    where, ident = scope_of(ctx, kind, ident)
    gone = admin.clear_windows(ctx.s, where, ident, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return gone


def add_vehicle(ctx: Ctx, account_id: int, body: VehicleIn) -> VehicleOut:
    operator(ctx)
    v = admin.add_vehicle(ctx.s, fleet_account(ctx, account_id).id, body.number, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return VehicleOut(id=v.id, number=v.number, odometer_km=v.odometer_km)


def add_driver(ctx: Ctx, account_id: int, body: DriverIn) -> DriverOut:
    operator(ctx)
    d = admin.add_driver(ctx.s, fleet_account(ctx, account_id).id, body.code, name=body.name,
                         actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return DriverOut(id=d.id, code=d.code, name=d.name)


def export_csv(ctx: Ctx, what: str, customer_id: int | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of the customers or the cards (of one customer) in the 1C format."""
    operator(ctx)
    if customer_id is not None:
        scope.customer_for(ctx, customer_id)
    if what == "customers":
        return "customers.csv", fleet_csv.export_customers(ctx.s, ids=None if customer_id is None
                                                            else {customer_id})
    if what == "cards":
        name = f"cards-{customer_id}.csv" if customer_id else "cards.csv"
        return name, fleet_csv.export_cards(ctx.s, customer_id=customer_id)
    raise NotFound(what)


def import_csv(ctx: Ctx, what: str, data: bytes) -> ImportOut:
    """The file applied whole, or its rows' problems (nothing applied)."""
    operator(ctx)
    try:
        if what == "customers":
            done = fleet_csv.import_customers(ctx.s, data, actor=ctx.actor, now=ctx.now)
        elif what == "cards":
            done = fleet_csv.import_cards(ctx.s, registry_keys(ctx), data, actor=ctx.actor, now=ctx.now)
        else:
            raise NotFound(what)
    except fleet_csv.CsvRejected as exc:
        ctx.s.rollback()
        errors = [RowErrorOut(row=e.row, column=e.column, message=e.message) for e in exc.errors]
        return ImportOut(created=[], updated=[], unchanged=0, errors=errors)
    ctx.s.commit()
    return ImportOut(created=done.created, updated=done.updated, unchanged=done.unchanged, errors=[])
