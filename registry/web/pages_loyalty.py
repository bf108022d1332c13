"""The operators' loyalty pages over registry.web.api_loyalty: the programme (earn rules, promotions, tiers,
settings), rewards and stock, vouchers and attendants. Forms post here and come back to the page (303).

Amounts typed in forms are decimals (1.5 points a litre, 1500.00 spent, 40.5 L) turned into whole units
here. Issuing vouchers answers their codes once: on the page that follows, or as the PDF of their printed
sheets (registry.voucher_print), built in memory and never stored. A PIN or card number typed for an
attendant is passed on and never put back into a page.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from sqlalchemy import select
from starlette.responses import Response

from contracts.errors import MissingComponent
from registry import voucher_print
from registry.attendants import ROLES
from registry.fleet.cards import MEDIA
from registry.models import Product, Station
from registry.vouchers import IssuedVoucher, group_code
from registry.web import api_loyalty as api
from registry.web.deps import Ctx, page_ctx
from registry.web.errors import BadInput
from registry.web.render import page, redirect

__all__ = ["router", "sheets_pdf", "shown", "units"]

router = APIRouter()
Page = Annotated[Ctx, Depends(page_ctx)]
Text = Annotated[str, Form()]
_DECIMAL = re.compile(r"(-?)([0-9]{1,12})(?:[.,]([0-9]+))?", re.ASCII)


def units(text: str, places: int, key: str) -> int:
    """A decimal typed in a form as whole units of 10**-places: units("1.5", 3, ...) == 1500.

    >>> units("1.5", 3, "points"), units("40,5", 2, "litres"), units("-2", 0, "delta")
    (1500, 4050, -2)
    """
    found = _DECIMAL.fullmatch(text.strip())
    if found is None or len(found[3] or "") > places:
        raise BadInput(f"{key}: a number with at most {places} decimals")
    part = str(found[3] or "").ljust(places, "0")
    value: int = int(found[2]) * 10 ** places + (int(part) if part else 0)
    return -value if found[1] else value


def shown(value: int, places: int) -> str:
    """Whole units of 10**-places as a decimal, exactly: shown(1500, 3) == "1.5".

    >>> shown(1500, 3), shown(2000, 3), shown(125, 3)
    ('1.5', '2', '0.125')
    """
    whole, part = divmod(value, 10 ** places)
    return f"{whole}.{part:0{places}d}".rstrip("0").rstrip(".") if places else str(value)


def _day(text: str, key: str) -> dt.date | None:
    if not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{key}: a date YYYY-MM-DD") from None


def _need_day(text: str, key: str) -> dt.date:
    day = _day(text, key)
    if day is None:
        raise BadInput(f"{key}: a date YYYY-MM-DD")
    return day


def _choices(ctx: Ctx) -> dict[str, Any]:
    """The products and stations forms offer."""
    return {"products": list(ctx.s.scalars(select(Product).order_by(Product.code))),
            "stations": list(ctx.s.scalars(select(Station).order_by(Station.id)))}


def sheets_pdf(made: list[IssuedVoucher], product_name: str) -> bytes:
    """The vouchers' printed sheets as one PDF, a page each (in memory: the codes are written nowhere)."""
    pages = [voucher_print.sheet(v, product_name) for v in made]
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:], resolution=voucher_print.DPI)
    return out.getvalue()


# -- the programme -------------------------------------------------------------------------------------------

@router.get("/loyalty", include_in_schema=False)
def programme_page(ctx: Page) -> Response:
    return page(ctx, "loyalty/programme.html", programme=api.programme(ctx), today=ctx.now.date(),
                decimal=shown, **_choices(ctx))


@router.post("/loyalty/rules", include_in_schema=False)
def rule_add(ctx: Page, product: Text, basis: Text, points: Text, starts_on: Text = "",
             ends_on: Text = "") -> Response:
    api.add_rule(ctx, api.RuleIn(product=product, basis=basis, milli_points=units(points, 3, "points"),
                                 starts_on=_day(starts_on, "from"), ends_on=_day(ends_on, "to")))
    return redirect("/loyalty")


@router.post("/loyalty/rules/{rule_id}/end", include_in_schema=False)
def rule_end(ctx: Page, rule_id: int, on: Text) -> Response:
    api.end_rule(ctx, rule_id, _need_day(on, "on"))
    return redirect("/loyalty")


@router.post("/loyalty/promotions", include_in_schema=False)
def promotion_add(ctx: Page, name: Text, position: Annotated[int, Form()], starts_on: Text, ends_on: Text,
                  product: Text = "*", stations: Text = "", multiplier_pct: Annotated[int, Form()] = 100,
                  bonus_points: Annotated[int, Form()] = 0, stop: Text = "") -> Response:
    api.add_promotion(ctx, api.PromoIn(name=name, position=position, product=product, stations=stations,
                                       starts_on=_need_day(starts_on, "from"),
                                       ends_on=_need_day(ends_on, "to"),
                                       multiplier_pct=multiplier_pct, bonus_points=bonus_points,
                                       stop=stop == "yes"))
    return redirect("/loyalty")


@router.post("/loyalty/promotions/{promo_id}/end", include_in_schema=False)
def promotion_end(ctx: Page, promo_id: int, on: Text) -> Response:
    api.end_promotion(ctx, promo_id, _need_day(on, "on"))
    return redirect("/loyalty")


@router.post("/loyalty/tiers", include_in_schema=False)
def tier_set(ctx: Page, name: Text, rank: Annotated[int, Form()], multiplier_pct: Annotated[int, Form()],
             min_spend: Text) -> Response:
    api.set_tier(ctx, name.strip(), api.TierIn(rank=rank, multiplier_pct=multiplier_pct,
                                               min_spend_cents=units(min_spend, 2, "min spend")))
    return redirect("/loyalty")


@router.post("/loyalty/settings", include_in_schema=False)
def setting_set(ctx: Page, key: Text, value: Annotated[int, Form()]) -> Response:
    api.set_setting(ctx, key, value)
    return redirect("/loyalty")


# -- rewards -------------------------------------------------------------------------------------------------

@router.get("/loyalty/rewards", include_in_schema=False)
def rewards_page(ctx: Page) -> Response:
    return page(ctx, "loyalty/rewards.html", rewards=api.list_rewards(ctx), **_choices(ctx))


@router.post("/loyalty/rewards", include_in_schema=False)
def reward_add(ctx: Page, name: Text, points: Annotated[int, Form()]) -> Response:
    api.add_reward(ctx, api.RewardIn(name=name, points=points))
    return redirect("/loyalty/rewards")


@router.post("/loyalty/rewards/{reward_id}/price", include_in_schema=False)
def reward_price(ctx: Page, reward_id: int, points: Annotated[int, Form()]) -> Response:
    api.price_reward(ctx, reward_id, points)
    return redirect("/loyalty/rewards")


@router.post("/loyalty/rewards/{reward_id}/withdraw", include_in_schema=False)
def reward_withdraw(ctx: Page, reward_id: int, reason: Text = "") -> Response:
    api.withdraw_reward(ctx, reward_id, reason)
    return redirect("/loyalty/rewards")


@router.post("/loyalty/rewards/{reward_id}/stock", include_in_schema=False)
def reward_stock(ctx: Page, reward_id: int, station: Text, how: Text, amount: Annotated[int, Form()],
                 reason: Text = "") -> Response:
    """how: "set" (the count) or "add" (goods in, or out when negative)."""
    body = (api.StockIn(quantity=amount) if how == "set"
            else api.StockIn(delta=amount, reason=reason))
    api.set_stock(ctx, reward_id, station, body)
    return redirect("/loyalty/rewards")


# -- vouchers ------------------------------------------------------------------------------------------------

@router.get("/loyalty/vouchers", include_in_schema=False)
def vouchers_page(ctx: Page, hint: str = "", batch: str = "", status: str = "") -> Response:
    found = api.list_vouchers(ctx, hint=hint, batch=batch, status=status, limit=200)
    return page(ctx, "loyalty/vouchers.html", vouchers=found, hint=hint, batch=batch, state=status,
                today=ctx.now.date(), **_choices(ctx))


@router.post("/loyalty/vouchers", include_in_schema=False)
def vouchers_issue(ctx: Page, product: Text, litres: Text, count: Annotated[int, Form()] = 1,
                   expires_on: Text = "", batch: Text = "", output: Text = "page") -> Response:
    """Issue, then answer the codes once: on a page, or (output=pdf) as the printed sheets' PDF."""
    body = api.IssueIn(product=product, volume_cl=units(litres, 2, "litres"), count=count,
                       expires_on=_day(expires_on, "expires"), batch=batch.strip())
    issued = api.issue_vouchers(ctx, body)
    named = ctx.s.get(Product, issued.product)
    product_name = named.name if named is not None else issued.product
    if output == "pdf":
        made = [IssuedVoucher(v.id, v.code, issued.product, issued.volume_cl, issued.expires_on, issued.batch)
                for v in issued.vouchers]
        try:
            pdf = sheets_pdf(made, product_name)
        except (MissingComponent, OSError):
            pdf = b""               # issued all the same: the codes go on the page instead, never lost
        if pdf:
            name = f"vouchers-{made[0].voucher_id:06d}-{made[-1].voucher_id:06d}.pdf"
            return Response(pdf, media_type="application/pdf",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    codes = [(v.id, group_code(v.code)) for v in issued.vouchers]
    return page(ctx, "loyalty/issued.html", issued=issued, codes=codes, product_name=product_name)


@router.post("/loyalty/vouchers/{voucher_id}/void", include_in_schema=False)
def voucher_void(ctx: Page, voucher_id: int, reason: Text = "") -> Response:
    api.void_voucher(ctx, voucher_id, reason)
    return redirect("/loyalty/vouchers")


# -- attendants ----------------------------------------------------------------------------------------------

@router.get("/loyalty/attendants", include_in_schema=False)
def attendants_page(ctx: Page, station: str = "", status: str = "") -> Response:
    return page(ctx, "loyalty/attendants.html", attendants=api.list_attendants(ctx, station=station,
                                                                               status=status),
                station=station, state=status, roles=ROLES, media=MEDIA, **_choices(ctx))


@router.post("/loyalty/attendants", include_in_schema=False)
def attendant_add(ctx: Page, attendant_id: Text, name: Text, role: Text = "attendant",
                  stations: Text = "") -> Response:
    api.add_attendant(ctx, api.AttendantIn(id=attendant_id, name=name, role=role, stations=stations))
    return redirect("/loyalty/attendants")


@router.post("/loyalty/attendants/{attendant_id}/pin", include_in_schema=False)
def attendant_pin(ctx: Page, attendant_id: str, pin: Text, again: Text) -> Response:
    api.attendant_pin(ctx, attendant_id, api.PinIn(pin=pin, again=again))
    return redirect("/loyalty/attendants")


@router.post("/loyalty/attendants/{attendant_id}/card", include_in_schema=False)
def attendant_card(ctx: Page, attendant_id: str, number: Text, medium: Text = "chip") -> Response:
    api.attendant_card(ctx, attendant_id, api.CardIn(number=number, medium=medium))
    return redirect("/loyalty/attendants")


@router.post("/loyalty/attendants/{attendant_id}/{action}", include_in_schema=False)
def attendant_state(ctx: Page, attendant_id: str, action: str, reason: Text = "") -> Response:
    api.attendant_state(ctx, attendant_id, action, reason)
    return redirect("/loyalty/attendants")
