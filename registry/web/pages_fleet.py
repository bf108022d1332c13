"""The operators' fleet pages (/fleet/...), rendered over the same endpoint functions as the API
(registry.web.api_fleet, registry.web.fleet_wallets): a form's fields become the API's request model, the
answer is the page's data. After a change the browser is sent to the page that shows it (303).

Amounts are typed as decimals (12.34 or 12,34) in the wallet's or limit's unit and sent on as hundredths
(cents, centilitres); a count of sales is a whole number. A card number or PIN typed in a form goes to the
issue or the reissue once and is never put back into a page.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import SecretStr
from starlette.responses import Response

from registry.fleet import admin, cards
from registry.web import api_fleet as api
from registry.web import fleet_csv
from registry.web import fleet_wallets as fw
from registry.web.api_fleet import csv_response
from registry.web.deps import Ctx, page_ctx
from registry.web.errors import BadInput, NotFound
from registry.web.fleet_schemas import (
    AccountIn,
    AmountIn,
    CustomerIn,
    DriverIn,
    ImportOut,
    IssueIn,
    LimitIn,
    OrderIn,
    ReasonIn,
    ReissueIn,
    VehicleIn,
    WalletIn,
    WindowIn,
)
from registry.web.pages_fleet_customer import parse_maximum
from registry.web.render import page, redirect

__all__ = ["hundredths", "router"]

router = APIRouter(include_in_schema=False)
Page = Annotated[Ctx, Depends(page_ctx)]
Text = Annotated[str, Form()]
_DECIMAL = re.compile(r"(-?)([0-9]{1,10})(?:[.,]([0-9]{1,2}))?", re.ASCII)
CHOICES = {"kinds": admin.KINDS, "media": cards.MEDIA, "units": admin.WALLET_UNITS, "modes": admin.MODES,
           "periods": admin.PERIODS, "limit_units": admin.UNITS, "days": fw.DAYS}


def hundredths(text: str, what: str = "amount") -> int:
    """A decimal typed in a form, in hundredths: "12.34" or "12,34" -> 1234, "-5" -> -500."""
    match = _DECIMAL.fullmatch(re.sub(r"\s", "", text))
    if match is None:
        raise BadInput(f"{what} must be a number with up to 2 decimals")
    sign, whole, part = match.groups()
    value = int(whole) * 100 + int((part or "0").ljust(2, "0"))
    return -value if sign else value


def _optional_id(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 9:
        raise BadInput("an id is a whole number")
    return int(text)


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError as exc:
        raise BadInput("a date is YYYY-MM-DD") from exc


def _back(kind: str, ident: int) -> Response:
    return redirect(f"/fleet/{kind}/{ident}")


@router.get("/fleet/customers")
def customers_page(ctx: Page, q: str = "") -> Response:
    return page(ctx, "fleet/customers.html", customers=api.list_customers(ctx, q), q=q, choices=CHOICES)


@router.post("/fleet/customers")
def customers_add(ctx: Page, name: Text, kind: Text = "company", tax_id: Text = "") -> Response:
    done = api.add_customer(ctx, CustomerIn(name=name, kind=kind, tax_id=tax_id))
    return _back("customers", done.id)


@router.get("/fleet/customers/{customer_id}")
def customer_page(ctx: Page, customer_id: int) -> Response:
    return page(ctx, "fleet/customer.html", view=api.show_customer(ctx, customer_id), choices=CHOICES)


@router.post("/fleet/customers/{customer_id}")
def customer_edit(ctx: Page, customer_id: int, name: Text, kind: Text = "company",
                  tax_id: Text = "") -> Response:
    api.edit_customer(ctx, customer_id, CustomerIn(name=name, kind=kind, tax_id=tax_id))
    return _back("customers", customer_id)


@router.post("/fleet/customers/{customer_id}/accounts")
def account_add(ctx: Page, customer_id: int, name: Text, timezone: Text = "UTC",
                prompts: Annotated[list[str] | None, Form()] = None) -> Response:
    done = api.add_account(ctx, customer_id, AccountIn(name=name, timezone=timezone.strip() or "UTC",
                                                       prompts=",".join(prompts or [])))
    return _back("accounts", done.id)


@router.get("/fleet/accounts/{account_id}")
def account_page(ctx: Page, account_id: int) -> Response:
    # one-time keys of this page's money forms: a second submit of the same form books nothing more
    return page(ctx, "fleet/account.html", view=api.show_account(ctx, account_id),
                form_key=secrets.token_urlsafe(12), choices=CHOICES)


@router.post("/fleet/accounts/{account_id}/close")
def account_close(ctx: Page, account_id: int, reason: Text) -> Response:
    api.close_account(ctx, account_id, ReasonIn(reason=reason))
    return _back("accounts", account_id)


@router.post("/fleet/accounts/{account_id}/cards")
def card_issue(ctx: Page, account_id: int, number: Text, expiry: Text, medium: Text = "chip", pin: Text = "",
               vehicle_id: Text = "", driver_id: Text = "", activate: Text = "") -> Response:
    done = api.issue_card(ctx, account_id, IssueIn(
        number=SecretStr(number), medium=medium, expiry=expiry, pin=SecretStr(pin) if pin.strip() else None,
        vehicle_id=_optional_id(vehicle_id), driver_id=_optional_id(driver_id), activate=bool(activate)))
    return _back("cards", done.id)


@router.get("/fleet/cards/{card_id}")
def card_page(ctx: Page, card_id: int) -> Response:
    view = api.show_card(ctx, card_id)
    moves = [x for x, move in api.MOVES.items() if view.card.status in cards.MOVES[move][0]]
    return page(ctx, "fleet/card.html", view=view, moves=moves, choices=CHOICES)


@router.post("/fleet/cards/{card_id}/move")
def card_move(ctx: Page, card_id: int, action: Text, reason: Text) -> Response:
    api.card_action(ctx, card_id, action, ReasonIn(reason=reason))
    return _back("cards", card_id)


@router.post("/fleet/cards/{card_id}/reissue")
def card_reissue(ctx: Page, card_id: int, number: Text, expiry: Text, reason: Text, medium: Text = "",
                 pin: Text = "", activate: Text = "") -> Response:
    done = api.reissue_card(ctx, card_id, ReissueIn(
        number=SecretStr(number), medium=medium or None, expiry=expiry, reason=reason,
        pin=SecretStr(pin) if pin.strip() else None, activate=bool(activate)))
    return _back("cards", done.id)


@router.post("/fleet/accounts/{account_id}/wallets")
def wallet_add(ctx: Page, account_id: int, unit: Text, mode: Text = "prepaid", credit_limit: Text = "0",
               products: Text = "", stations: Text = "", expires_on: Text = "", name: Text = "") -> Response:
    fw.add_wallet(ctx, account_id, WalletIn(
        unit=unit, mode=mode, credit_limit=hundredths(credit_limit or "0", "credit limit"), products=products,
        stations=stations, expires_on=_date(expires_on), name=name))
    return _back("accounts", account_id)


@router.post("/fleet/accounts/{account_id}/wallet-order")
def wallet_order(ctx: Page, account_id: int, order: Text) -> Response:
    ids = [_optional_id(x) for x in re.split(r"[\s,;]+", order.strip()) if x]
    fw.order_wallets(ctx, account_id, OrderIn(wallet_ids=[i for i in ids if i is not None]))
    return _back("accounts", account_id)


@router.post("/fleet/wallets/{wallet_id}/{what}")
def wallet_money(ctx: Page, wallet_id: int, what: str, reason: Text, amount: Text = "",
                 key: Text = "") -> Response:
    wallet = fw.wallet_for(ctx, wallet_id)
    if what == "close":
        fw.close_wallet(ctx, wallet_id, ReasonIn(reason=reason))
    elif what in ("topup", "correction"):
        body = AmountIn(amount=hundredths(amount), reason=reason, key=key.strip() or None)
        (fw.topup if what == "topup" else fw.correct)(ctx, wallet_id, body)
    else:
        raise NotFound("page")
    return _back("accounts", wallet.account_id)


def _kind(kind: str) -> str:
    if kind not in ("accounts", "cards"):
        raise NotFound("page")
    return kind


@router.post("/fleet/{kind}/{ident}/limits")
def limit_set(ctx: Page, kind: str, ident: int, period: Text, unit: Text, maximum: Text,
              reason: Text = "") -> Response:
    value = parse_maximum(ctx, maximum, unit)         # a count whole, money and litres to two decimals
    fw.set_limit(ctx, _kind(kind), ident, LimitIn(period=period, unit=unit, maximum=value, reason=reason))
    return _back(kind, ident)


@router.post("/fleet/{kind}/{ident}/limits/clear")
def limit_clear(ctx: Page, kind: str, ident: int, period: Text, unit: Text) -> Response:
    fw.clear_limit(ctx, _kind(kind), ident, period, unit)
    return _back(kind, ident)


@router.post("/fleet/{kind}/{ident}/windows")
def window_add(ctx: Page, kind: str, ident: int, start: Text, end: Text,
               days: Annotated[list[str] | None, Form()] = None) -> Response:
    fw.add_window(ctx, _kind(kind), ident, WindowIn(days=days or [], start=start, end=end))
    return _back(kind, ident)


@router.post("/fleet/{kind}/{ident}/windows/clear")
def windows_clear(ctx: Page, kind: str, ident: int) -> Response:
    fw.clear_windows(ctx, _kind(kind), ident)
    return _back(kind, ident)


@router.post("/fleet/accounts/{account_id}/vehicles")
def vehicle_add(ctx: Page, account_id: int, number: Text) -> Response:
    fw.add_vehicle(ctx, account_id, VehicleIn(number=number))
    return _back("accounts", account_id)


@router.post("/fleet/accounts/{account_id}/drivers")
def driver_add(ctx: Page, account_id: int, code: Text, name: Text = "") -> Response:
    fw.add_driver(ctx, account_id, DriverIn(code=code, name=name))
    return _back("accounts", account_id)


@router.get("/fleet/export/{what}.csv")
def export_file(ctx: Page, what: str, customer_id: int | None = None) -> Response:
    return csv_response(*fw.export_csv(ctx, what, customer_id))


@router.get("/fleet/import")
def import_page(ctx: Page) -> Response:
    fw.operator(ctx)
    return page(ctx, "fleet/import.html", result=None, what="", columns=_columns())


@router.post("/fleet/import/{what}")
def import_file(ctx: Page, what: str, file: Annotated[UploadFile, File()]) -> Response:
    result: ImportOut = fw.import_csv(ctx, what, file.file.read(fleet_csv.MAX_BYTES + 1))
    return page(ctx, "fleet/import.html", result=result, what=what, columns=_columns(),
                status=400 if result.errors else 200)


def _columns() -> dict[str, str]:
    return {"customers": ";".join(fleet_csv.CUSTOMER_COLUMNS), "cards": ";".join(fleet_csv.CARD_COLUMNS)}
