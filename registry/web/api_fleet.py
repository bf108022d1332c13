"""The operators' fleet API (/api/fleet/...): customers, accounts, cards and their life cycle, wallets,
limits, time windows, top-ups and corrections, vehicles and drivers, CSV import and export. Each endpoint
is a function of the context returning a pydantic model; the routes here and the pages
(registry.web.pages_fleet) call the same functions. Operators only; every id goes through registry.web.scope.

A card number or PIN sent here is used once (issue or reissue) and never answered, logged or kept in the
clear. A top-up or correction carrying `key` books once however often it is sent (a form's one-time key).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, UploadFile
from pydantic import SecretStr
from sqlalchemy import func, or_, select
from starlette.responses import Response

from registry.fleet import admin, cards, closing
from registry.fleet.statements import account_summary
from registry.fleet_models import Account, Card, Customer, Driver, Movement, TimeWindow, Vehicle
from registry.web import fleet_csv, scope
from registry.web import fleet_wallets as fw
from registry.web.deps import Ctx, api_ctx
from registry.web.errors import NotFound
from registry.web.fleet_schemas import (
    AccountIn,
    AccountOut,
    AccountView,
    AmountIn,
    CardOut,
    CardView,
    CustomerIn,
    CustomerOut,
    CustomerView,
    DriverIn,
    DriverOut,
    ImportOut,
    IssueIn,
    LimitIn,
    LimitOut,
    MovementOut,
    OrderIn,
    ReasonIn,
    ReissueIn,
    VehicleIn,
    VehicleOut,
    WalletIn,
    WalletOut,
    WindowIn,
    WindowOut,
)
from registry.web.fleet_wallets import fleet_account, fleet_card, operator, registry_keys

__all__ = ["MOVES", "add_account", "add_customer", "card_action", "close_account", "edit_customer",
           "issue_card", "list_customers", "reissue_card", "router", "show_account", "show_card",
           "show_customer"]

router = APIRouter(tags=["fleet"])
# what an operator does to a card -> registry.fleet.cards.MOVES
MOVES = {"activate": "activate", "block": "temp_block", "block_final": "block", "unblock": "unblock",
         "lost": "lost", "stolen": "stolen", "withdraw": "withdraw"}


def _customer_out(ctx: Ctx, c: Customer) -> CustomerOut:
    count = ctx.s.scalar(select(func.count()).where(Account.customer_id == c.id)) or 0
    return CustomerOut(id=c.id, name=c.name, kind=c.kind, tax_id=c.tax_id, created_at=c.created_at,
                       accounts=count)


def _account_out(ctx: Ctx, a: Account) -> AccountOut:
    count = ctx.s.scalar(select(func.count()).where(Card.account_id == a.id)) or 0
    return AccountOut(id=a.id, name=a.name, customer_id=a.customer_id, status=a.status, prompts=a.prompts,
                      timezone=a.timezone, cards=count)


def _card_out(ctx: Ctx, c: Card) -> CardOut:
    vehicle = ctx.s.get(Vehicle, c.vehicle_id) if c.vehicle_id is not None else None
    driver = ctx.s.get(Driver, c.driver_id) if c.driver_id is not None else None
    return CardOut(id=c.id, masked=c.masked, status=c.status, medium=c.medium, expiry=c.expiry,
                   account_id=c.account_id, vehicle=vehicle.number if vehicle else "",
                   driver=driver.code if driver else "", pin=bool(c.pin_verifier), pin_tries=c.pin_tries,
                   replaced_by=c.replaced_by, status_changed_at=c.status_changed_at)


def _windows(ctx: Ctx, account_id: int | None, card_ids: list[int]) -> list[WindowOut]:
    """The account's windows, then its cards' (one query each, however many cards)."""
    found = []
    for kind, ids in (("account", [] if account_id is None else [account_id]), ("card", card_ids)):
        if not ids:
            continue
        query = select(TimeWindow).where(TimeWindow.scope == kind, TimeWindow.scope_id.in_(ids))
        for w in ctx.s.scalars(query.order_by(TimeWindow.scope_id, TimeWindow.id)):
            days = [d for i, d in enumerate(fw.DAYS) if w.weekdays >> i & 1]
            found.append(WindowOut(scope=kind, scope_id=w.scope_id, days=days, start=fw.hhmm(w.start_minute),
                                   end=fw.hhmm(w.end_minute)))
    return found


def list_customers(ctx: Ctx, q: str = "") -> list[CustomerOut]:
    operator(ctx)
    query = select(Customer).order_by(Customer.name, Customer.id).limit(500)
    if q.strip():
        like = f"%{q.strip().lower()}%"
        query = query.where(or_(func.lower(Customer.name).like(like), func.lower(Customer.tax_id).like(like),
                                Customer.id == (int(q) if q.strip().isdigit() and len(q) < 10 else -1)))
    return [_customer_out(ctx, c) for c in ctx.s.scalars(query)]


def show_customer(ctx: Ctx, customer_id: int) -> CustomerView:
    operator(ctx)
    c = scope.customer_for(ctx, customer_id)
    accounts = ctx.s.scalars(select(Account).where(Account.customer_id == c.id, Account.kind == "fleet")
                             .order_by(Account.id))
    return CustomerView(customer=_customer_out(ctx, c), accounts=[_account_out(ctx, a) for a in accounts])


def add_customer(ctx: Ctx, body: CustomerIn) -> CustomerOut:
    operator(ctx)
    c = admin.create_customer(ctx.s, body.name, kind=body.kind, tax_id=body.tax_id, actor=ctx.actor,
                              now=ctx.now)
    ctx.s.commit()
    return _customer_out(ctx, c)


def edit_customer(ctx: Ctx, customer_id: int, body: CustomerIn) -> CustomerOut:
    operator(ctx)
    c = scope.customer_for(ctx, customer_id)
    fleet_csv.edit_customer(ctx.s, c.id, name=body.name, kind=body.kind, tax_id=body.tax_id, actor=ctx.actor,
                            now=ctx.now)
    ctx.s.commit()
    return _customer_out(ctx, c)


def add_account(ctx: Ctx, customer_id: int, body: AccountIn) -> AccountOut:
    operator(ctx)
    c = scope.customer_for(ctx, customer_id)
    a = admin.create_account(ctx.s, c.id, body.name, prompts=body.prompts, timezone=body.timezone,
                             actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _account_out(ctx, a)


def show_account(ctx: Ctx, account_id: int) -> AccountView:
    operator(ctx)
    a = fleet_account(ctx, account_id)
    sm = account_summary(ctx.s, a.id, ctx.now)
    card_rows = list(ctx.s.scalars(select(Card).where(Card.account_id == a.id).order_by(Card.id)))
    # vehicles and drivers first: each card's then comes from the session, not a query of its own
    vehicles = ctx.s.scalars(select(Vehicle).where(Vehicle.account_id == a.id).order_by(Vehicle.number)).all()
    drivers = ctx.s.scalars(select(Driver).where(Driver.account_id == a.id).order_by(Driver.code)).all()
    moves = ctx.s.scalars(select(Movement).where(Movement.wallet_id.in_([w.id for w in sm.wallets]))
                          .order_by(Movement.id.desc()).limit(30))
    customer = ctx.s.get(Customer, a.customer_id) if a.customer_id is not None else None
    return AccountView(
        account=_account_out(ctx, a), customer=customer.name if customer else "",
        wallets=[WalletOut(**vars(w)) for w in sm.wallets],
        limits=[LimitOut(**vars(x), remaining=x.remaining) for x in sm.limits],
        windows=_windows(ctx, a.id, [c.id for c in card_rows]),
        cards=[_card_out(ctx, c) for c in card_rows],
        vehicles=[VehicleOut(id=v.id, number=v.number, odometer_km=v.odometer_km) for v in vehicles],
        drivers=[DriverOut(id=d.id, code=d.code, name=d.name) for d in drivers],
        movements=[MovementOut.model_validate(m, from_attributes=True) for m in moves])


def close_account(ctx: Ctx, account_id: int, body: ReasonIn) -> AccountOut:
    operator(ctx)
    a = fleet_account(ctx, account_id)
    closing.close_account(ctx.s, a.id, actor=ctx.actor, reason=body.reason, now=ctx.now)
    ctx.s.commit()
    return _account_out(ctx, a)


def show_card(ctx: Ctx, card_id: int) -> CardView:
    operator(ctx)
    c = fleet_card(ctx, card_id)
    a = ctx.s.get(Account, c.account_id) if c.account_id is not None else None
    limits = [x for x in account_summary(ctx.s, a.id, ctx.now).limits
              if x.scope == "card" and x.scope_id == c.id] if a else []
    return CardView(card=_card_out(ctx, c), account=a.name if a else "",
                    limits=[LimitOut(**vars(x), remaining=x.remaining) for x in limits],
                    windows=_windows(ctx, None, [c.id]))


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None or not value.get_secret_value().strip() else value.get_secret_value().strip()


def issue_card(ctx: Ctx, account_id: int, body: IssueIn) -> CardOut:
    operator(ctx)
    a = fleet_account(ctx, account_id)
    number = body.number.get_secret_value()
    done = cards.issue_card(ctx.s, registry_keys(ctx), a.id, number, medium=body.medium,
                            expiry=body.expiry.strip(), pin=_secret(body.pin), vehicle_id=body.vehicle_id,
                            driver_id=body.driver_id, actor=ctx.actor, now=ctx.now, activate=body.activate)
    ctx.s.commit()
    return _card_out(ctx, fleet_card(ctx, done.id))


def card_action(ctx: Ctx, card_id: int, action: str, body: ReasonIn) -> CardOut:
    operator(ctx)
    if action not in MOVES:
        raise NotFound("action")
    c = fleet_card(ctx, card_id)
    cards.move(ctx.s, c.id, MOVES[action], actor=ctx.actor, reason=body.reason, now=ctx.now)
    ctx.s.commit()
    return _card_out(ctx, c)


def reissue_card(ctx: Ctx, card_id: int, body: ReissueIn) -> CardOut:
    operator(ctx)
    c = fleet_card(ctx, card_id)
    number = body.number.get_secret_value()
    done = cards.reissue(ctx.s, registry_keys(ctx), c.id, number, medium=body.medium or None,
                         expiry=body.expiry.strip(), pin=_secret(body.pin), actor=ctx.actor,
                         reason=body.reason, now=ctx.now, activate=body.activate)
    ctx.s.commit()
    return _card_out(ctx, fleet_card(ctx, done.id))


Api = Annotated[Ctx, Depends(api_ctx)]
Scope = Literal["accounts", "cards"]
Csv = Literal["customers", "cards"]
Move = Literal["activate", "block", "block_final", "unblock", "lost", "stolen", "withdraw"]     # MOVES


@router.get("/api/fleet/customers", response_model=list[CustomerOut])
def api_customers(ctx: Api, q: str = "") -> list[CustomerOut]:
    return list_customers(ctx, q)


@router.post("/api/fleet/customers", response_model=CustomerOut)
def api_add_customer(ctx: Api, body: CustomerIn) -> CustomerOut:
    return add_customer(ctx, body)


@router.get("/api/fleet/customers/{customer_id}", response_model=CustomerView)
def api_customer(ctx: Api, customer_id: int) -> CustomerView:
    return show_customer(ctx, customer_id)


@router.put("/api/fleet/customers/{customer_id}", response_model=CustomerOut)
def api_edit_customer(ctx: Api, customer_id: int, body: CustomerIn) -> CustomerOut:
    return edit_customer(ctx, customer_id, body)


@router.post("/api/fleet/customers/{customer_id}/accounts", response_model=AccountOut)
def api_add_account(ctx: Api, customer_id: int, body: AccountIn) -> AccountOut:
    return add_account(ctx, customer_id, body)


@router.get("/api/fleet/accounts/{account_id}", response_model=AccountView)
def api_account(ctx: Api, account_id: int) -> AccountView:
    return show_account(ctx, account_id)


@router.post("/api/fleet/accounts/{account_id}/close", response_model=AccountOut)
def api_close_account(ctx: Api, account_id: int, body: ReasonIn) -> AccountOut:
    return close_account(ctx, account_id, body)


@router.post("/api/fleet/accounts/{account_id}/cards", response_model=CardOut)
def api_issue_card(ctx: Api, account_id: int, body: IssueIn) -> CardOut:
    return issue_card(ctx, account_id, body)


@router.get("/api/fleet/cards/{card_id}", response_model=CardView)
def api_card(ctx: Api, card_id: int) -> CardView:
    return show_card(ctx, card_id)


@router.post("/api/fleet/cards/{card_id}/reissue", response_model=CardOut)
def api_reissue(ctx: Api, card_id: int, body: ReissueIn) -> CardOut:
    return reissue_card(ctx, card_id, body)


@router.post("/api/fleet/accounts/{account_id}/wallets", response_model=WalletOut)
def api_add_wallet(ctx: Api, account_id: int, body: WalletIn) -> WalletOut:
    return fw.add_wallet(ctx, account_id, body)


@router.put("/api/fleet/accounts/{account_id}/wallet-order", response_model=list[WalletOut])
def api_wallet_order(ctx: Api, account_id: int, body: OrderIn) -> list[WalletOut]:
    return fw.order_wallets(ctx, account_id, body)


@router.post("/api/fleet/wallets/{wallet_id}/close", status_code=204)
def api_close_wallet(ctx: Api, wallet_id: int, body: ReasonIn) -> None:
    fw.close_wallet(ctx, wallet_id, body)


@router.post("/api/fleet/wallets/{wallet_id}/topup", response_model=MovementOut)
def api_topup(ctx: Api, wallet_id: int, body: AmountIn) -> MovementOut:
    return fw.topup(ctx, wallet_id, body)


@router.post("/api/fleet/wallets/{wallet_id}/correction", response_model=MovementOut)
def api_correct(ctx: Api, wallet_id: int, body: AmountIn) -> MovementOut:
    return fw.correct(ctx, wallet_id, body)


@router.put("/api/fleet/{kind}/{ident}/limits", response_model=LimitIn)
def api_set_limit(ctx: Api, kind: Scope, ident: int, body: LimitIn) -> LimitIn:
    return fw.set_limit(ctx, kind, ident, body)


@router.delete("/api/fleet/{kind}/{ident}/limits/{period}/{unit}")
def api_clear_limit(ctx: Api, kind: Scope, ident: int, period: str, unit: str) -> dict[str, bool]:
    return {"removed": fw.clear_limit(ctx, kind, ident, period, unit)}


@router.post("/api/fleet/{kind}/{ident}/windows", response_model=WindowOut)
def api_add_window(ctx: Api, kind: Scope, ident: int, body: WindowIn) -> WindowOut:
    return fw.add_window(ctx, kind, ident, body)


@router.delete("/api/fleet/{kind}/{ident}/windows")
def api_clear_windows(ctx: Api, kind: Scope, ident: int) -> dict[str, int]:
    return {"removed": fw.clear_windows(ctx, kind, ident)}


@router.post("/api/fleet/accounts/{account_id}/vehicles", response_model=VehicleOut)
def api_add_vehicle(ctx: Api, account_id: int, body: VehicleIn) -> VehicleOut:
    return fw.add_vehicle(ctx, account_id, body)


@router.post("/api/fleet/accounts/{account_id}/drivers", response_model=DriverOut)
def api_add_driver(ctx: Api, account_id: int, body: DriverIn) -> DriverOut:
    return fw.add_driver(ctx, account_id, body)


def csv_response(name: str, data: bytes) -> Response:
    return Response(data, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/api/fleet/export/{what}.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the 1C-style CSV file"}})
def api_export(ctx: Api, what: Csv, customer_id: int | None = None) -> Response:
    return csv_response(*fw.export_csv(ctx, what, customer_id))


@router.post("/api/fleet/import/{what}", response_model=ImportOut,
             responses={400: {"model": ImportOut, "description": "refused rows: nothing imported"}})
def api_import(ctx: Api, what: Csv, file: Annotated[UploadFile, File()], response: Response) -> ImportOut:
    done = fw.import_csv(ctx, what, file.file.read(fleet_csv.MAX_BYTES + 1))
    if done.errors:
        response.status_code = 400
    return done


# last: its {action} would take the paths of the routes above
@router.post("/api/fleet/cards/{card_id}/{action}", response_model=CardOut)
def api_card_action(ctx: Api, card_id: int, action: Move, body: ReasonIn) -> CardOut:
    return card_action(ctx, card_id, action, body)
